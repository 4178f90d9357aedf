"""Lateral ventricles, brainstem and intracranial volume against the braincharts lifespan
models (Rutherford et al., eLife 2022; 58 836 people from 82 sites, FreeSurfer on MRI).

Each measure is a PCNtoolkit warped Bayesian linear regression: in a SinhArcsinh-warped
space ``w = sinh(b asinh(V) − a)`` the volume is normal with mean ``φ(x)·m`` and variance
``σ²_noise + φ(x)ᵀ A⁻¹ φ(x)``, where ``φ`` holds an intercept, age (years), sex (0 female,
1 male), 82 site dummies and 7 cubic B-spline functions of age (knots −5…110 years). A
clinical CT comes from none of those sites and from no site with healthy controls to
calibrate on (the authors' transfer procedure needs them), so subct treats the site as
unknown: the normative distribution is the equal-weight mixture of the 82 site-specific
distributions. The percentile is the mixture's distribution function at the volume, the
z-score ``Φ⁻¹(percentile)``, the expected volume the mixture's median and the band its
2.5th–97.5th percentiles. Between-site differences (scanner, FreeSurfer version) thereby
widen the band (ICV: 0.13 between-site SD against 0.22 within, in warped units).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.interpolate import BSpline
from scipy.special import ndtr, ndtri

#: Package data written by ``scripts/extract_braincharts_norms.py``.
BRAINCHARTS_RESOURCE = ("subct", "data/norms/braincharts_lifespan_57k")
#: Sex codes of the models' design matrix.
SEX_CODE = {"female": 0.0, "male": 1.0}


@dataclass(frozen=True)
class WarpedRegression:
    """One measure's model (both sexes; :class:`SiteMixtureModel` binds a sex).

    Attributes:
        weights: posterior mean weights (92).
        covariance: posterior covariance of the weights (92 × 92).
        noise_variance: σ²_noise in warped units.
        epsilon, log_b: the SinhArcsinh warp's parameters (a = −ε b, b = exp(log_b)).
        knots: the padded B-spline knot vector (years); degree 3.
        sites: number of training sites (dummy columns after intercept, age, sex).
        cohort_size: people the model was fitted on.
    """

    weights: NDArray[np.float64]
    covariance: NDArray[np.float64]
    noise_variance: float
    epsilon: float
    log_b: float
    knots: NDArray[np.float64]
    sites: int
    cohort_size: int

    def warp(self, volume_mm3: NDArray[np.float64] | float) -> Any:
        """Volume (mm³) → warped units."""
        b = math.exp(self.log_b)
        return np.sinh(b * np.arcsinh(volume_mm3) + self.epsilon * b)

    def unwarp(self, warped: NDArray[np.float64] | float) -> Any:
        """Warped units → volume (mm³)."""
        b = math.exp(self.log_b)
        return np.sinh((np.arcsinh(warped) - self.epsilon * b) / b)

    def design(self, age_years: float, sex: str) -> NDArray[np.float64]:
        """One row per site: the design vector of this age and sex at each site."""
        count = len(self.knots) - 4
        spline = np.array([BSpline(self.knots, np.eye(count)[i], 3, extrapolate=False)(age_years)
                           for i in range(count)])
        rows = np.zeros((self.sites, 3 + self.sites + count))
        rows[:, :3] = (1.0, age_years, SEX_CODE[sex])
        rows[:, 3:3 + self.sites] = np.eye(self.sites)
        rows[:, 3 + self.sites:] = np.nan_to_num(spline)
        return rows

    def site_moments(self, age_years: float, sex: str
                     ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Predictive mean and variance (warped units) at each training site, as
        PCNtoolkit's ``BLR.predict``."""
        rows = self.design(age_years, sex)
        means = rows @ self.weights
        variances = self.noise_variance + np.einsum("ij,jk,ik->i", rows, self.covariance, rows)
        return means, variances


@dataclass(frozen=True)
class SiteMixtureModel:
    """A measure's normative distribution for one sex, the site unknown (module doc)."""

    regression: WarpedRegression
    sex: str

    @property
    def cohort_size(self) -> int:
        return self.regression.cohort_size

    def _cdf(self, warped: float, age_years: float) -> float:
        means, variances = self.regression.site_moments(age_years, self.sex)
        return float(np.mean(ndtr((warped - means) / np.sqrt(variances))))

    def percentile(self, volume_mm3: float, age_years: float) -> float:
        """Share (%) of the cohort (all sites pooled equally) below this volume."""
        return 100.0 * self._cdf(float(self.regression.warp(volume_mm3)), age_years)

    def z_score(self, volume_mm3: float, age_years: float) -> float:
        """Φ⁻¹ of the percentile (the mixture is not normal; this keeps z and
        percentile consistent)."""
        share = min(max(self.percentile(volume_mm3, age_years) / 100.0, 1e-12), 1 - 1e-12)
        return float(ndtri(share))

    def quantile_mm3(self, share: float, age_years: float) -> float:
        """The volume (mm³) below which ``share`` (0–1) of the cohort lies (bisection in
        warped units)."""
        means, variances = self.regression.site_moments(age_years, self.sex)
        spread = float(np.sqrt(variances.max()))
        low, high = float(means.min()) - 10 * spread, float(means.max()) + 10 * spread
        for _ in range(60):
            middle = 0.5 * (low + high)
            if np.mean(ndtr((middle - means) / np.sqrt(variances))) < share:
                low = middle
            else:
                high = middle
        return float(self.regression.unwarp(0.5 * (low + high)))

    def expected_mm3(self, age_years: float) -> float:
        """The cohort's median volume at this age (mm³)."""
        return self.quantile_mm3(0.5, age_years)

    def band_mm3(self, age_years: float) -> tuple[float, float]:
        """The 2.5th and 97.5th percentile volumes at this age (mm³)."""
        return self.quantile_mm3(0.025, age_years), self.quantile_mm3(0.975, age_years)


@cache
def braincharts_regressions() -> tuple[dict[str, WarpedRegression], dict[str, Any]]:
    """The models (subct name → :class:`WarpedRegression`) and the source metadata."""
    package, stem = BRAINCHARTS_RESOURCE
    folder = resources.files(package)
    metadata = json.loads(folder.joinpath(f"{stem}.json").read_text(encoding="utf-8"))
    with folder.joinpath(f"{stem}.npz").open("rb") as stream:
        arrays = dict(np.load(stream))
    spline = metadata["bspline"]
    first, last = (float(v) for v in spline["knots_years"])
    inner = np.linspace(first, last, int(spline["knot_count"]))
    degree = int(spline["degree"])
    knots = np.concatenate([[inner[0]] * degree, inner, [inner[-1]] * degree])
    models = {}
    for name, facts in metadata["measures"].items():
        hyp = arrays[f"{name}/hyp"]
        models[name] = WarpedRegression(
            weights=arrays[f"{name}/weights"], covariance=arrays[f"{name}/covariance"],
            noise_variance=float(math.exp(2 * hyp[2]) / math.exp(hyp[0])),
            epsilon=float(hyp[1]), log_b=float(hyp[2]), knots=knots,
            sites=int(metadata["sites"]), cohort_size=int(facts["cohort_size"]))
    return models, metadata["source"]
