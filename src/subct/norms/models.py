"""Normative volumes: where a structure's volume lies among healthy people of the same age
and sex.

The expectations are CentileBrain's sex-specific normative models of subcortical volume
(Ge et al., Lancet Digital Health 2024; the ENIGMA Lifespan Working Group's 37 407 healthy
people aged 3–90 years, FreeSurfer volumes from MRI): for each of 14 structures, a
multivariable fractional polynomial of age, ``E[V] = b0 + Σ b_i x^p_i (log x)^k_i`` with
``x = age / 100`` (years), and the root-mean-square residual of the training cohort
(mm³). A case's z-score is ``(V − E[V]) / RMSE`` (CentileBrain's own definition) and its
percentile ``100 Φ(z)``, Φ the normal distribution function. The parameters are carried
from the published models by ``scripts/extract_centilebrain_norms.R`` into
``subct/data/norms/centilebrain_subcortical.json``; ``tests/norms`` checks the predictions
against R's on the original objects.

What the figures do not cover, and why it matters on CT:

- Lateral ventricles, brainstem and intracranial volume have no CentileBrain model; they
  come from the braincharts lifespan models (:mod:`subct.norms.braincharts`, the site
  marginalised), and :func:`normative_sources` lists both sources.
- Head size: the ICV-adjusted CentileBrain models are not used — applied to the
  repository's own demo data they predict about half the volumes (z ≈ +6 everywhere) —
  so the percentiles are adjusted for age and sex only; a large or small head moves them.
- The norms are FreeSurfer volumes on 1 mm T1 MRI. subct's volumes are measured on CT by a
  network trained on FreeSurfer-style labels; their systematic difference from FreeSurfer
  on the same person is not known here, so a percentile is a position against an MRI
  cohort, not a diagnosis, and an extreme one may be a segmentation error (check QC).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal, Protocol

Sex = Literal["female", "male"]

#: Ages the normative cohorts cover (years; CentileBrain 3–90, braincharts 2–100: the
#: common range); outside them no percentile is given.
NORM_AGE_RANGE_YEARS = (3.0, 90.0)
#: The key of the intracranial volume among the normative models' structures.
ICV_KEY = "intracranial_volume"
#: The normative band drawn in the report and written to ``qc.json``: 2.5th–97.5th
#: percentile, i.e. the expectation ± 1.96 RMSE.
BAND_PERCENTILES = (2.5, 97.5)
_BAND_Z = 1.959963984540054
#: Where the parameters live inside the package.
NORMS_RESOURCE = ("subct", "data/norms/centilebrain_subcortical.json")


class NormModel(Protocol):
    """What every normative model of one structure and sex offers (volumes in mm³)."""

    @property
    def cohort_size(self) -> int: ...

    def expected_mm3(self, age_years: float) -> float: ...

    def z_score(self, volume_mm3: float, age_years: float) -> float: ...

    def percentile(self, volume_mm3: float, age_years: float) -> float: ...

    def band_mm3(self, age_years: float) -> tuple[float, float]: ...


@dataclass(frozen=True)
class FractionalPolynomial:
    """One structure's normative model for one sex.

    Attributes:
        intercept: b0 (mm³).
        terms: (power p, log power k, coefficient b) of each term ``b x^p (log x)^k``.
        rmse_mm3: root-mean-square residual of the training cohort (mm³).
        cohort_size: people the model was fitted on.
        age_scale_years: x = age / this.
    """

    intercept: float
    terms: tuple[tuple[float, float, float], ...]
    rmse_mm3: float
    cohort_size: int
    age_scale_years: float = 100.0

    def expected_mm3(self, age_years: float) -> float:
        """The cohort's mean volume at this age (mm³)."""
        x = age_years / self.age_scale_years
        value = self.intercept
        for power, log_power, coefficient in self.terms:
            value += coefficient * x ** power * math.log(x) ** log_power
        return value

    def z_score(self, volume_mm3: float, age_years: float) -> float:
        """(volume − expectation) / RMSE."""
        return (volume_mm3 - self.expected_mm3(age_years)) / self.rmse_mm3

    def percentile(self, volume_mm3: float, age_years: float) -> float:
        """100 Φ(z): the share (%) of the cohort below this volume."""
        return percentile_of(self.z_score(volume_mm3, age_years))

    def band_mm3(self, age_years: float) -> tuple[float, float]:
        """The 2.5th and 97.5th percentile volumes at this age (mm³)."""
        centre = self.expected_mm3(age_years)
        return (centre - _BAND_Z * self.rmse_mm3, centre + _BAND_Z * self.rmse_mm3)


def percentile_of(z: float) -> float:
    """100 Φ(z): the share (%) of the normative cohort below a z-score."""
    return 50.0 * (1.0 + math.erf(z / math.sqrt(2.0)))


@dataclass(frozen=True)
class NormativeSource:
    """A published set of normative models: what they are and one model per sex and
    structure (canonical FreeSurfer names)."""

    name: str
    citation: str
    repository: str
    commit: str
    models: dict[str, dict[str, NormModel]]

    @property
    def structures(self) -> tuple[str, ...]:
        """Structures with a model (the same for both sexes)."""
        return tuple(self.models["female"])

    def model(self, sex: Sex, structure: str) -> NormModel | None:
        """The model of ``structure`` for ``sex`` (None when the source has none)."""
        return self.models[sex].get(structure)


def _model_from_json(entry: dict[str, Any], age_scale: float) -> FractionalPolynomial:
    return FractionalPolynomial(
        intercept=float(entry["intercept"]),
        terms=tuple((float(t["power"]), float(t["log_power"]), float(t["coefficient"]))
                    for t in entry["terms"]),
        rmse_mm3=float(entry["rmse_mm3"]), cohort_size=int(entry["n"]),
        age_scale_years=age_scale)


@cache
def centilebrain_norms() -> NormativeSource:
    """CentileBrain's subcortical models, read once from the package data."""
    package, name = NORMS_RESOURCE
    data = json.loads(resources.files(package).joinpath(name).read_text(encoding="utf-8"))
    scale = float(data["age_scale_years"])
    source = data["source"]
    return NormativeSource(
        name=str(source["name"]), citation=str(source["citation"]),
        repository=str(source["repository"]), commit=str(source["commit"]),
        models={sex: {structure: _model_from_json(entry, scale)
                      for structure, entry in structures.items()}
                for sex, structures in data["models"].items()})


@cache
def braincharts_norms() -> NormativeSource:
    """The braincharts lifespan models of the lateral ventricles, brainstem and ICV."""
    # lazy: scipy's interpolate/special load only when a percentile is computed
    from subct.norms.braincharts import SiteMixtureModel, braincharts_regressions

    regressions, source = braincharts_regressions()
    return NormativeSource(
        name=str(source["name"]), citation=str(source["citation"]),
        repository=str(source["repository"]), commit=str(source["commit"]),
        models={sex: {name: SiteMixtureModel(regression, sex)
                      for name, regression in regressions.items()}
                for sex in ("female", "male")})


def normative_sources() -> tuple[NormativeSource, ...]:
    """Every source, first match wins: CentileBrain (14 structures), braincharts
    (lateral ventricles, brainstem, ICV)."""
    return (centilebrain_norms(), braincharts_norms())


def find_model(sex: Sex, structure: str) -> tuple[NormModel, NormativeSource] | None:
    """The model of ``structure`` (or :data:`ICV_KEY`) for ``sex`` and its source."""
    for source in normative_sources():
        model = source.model(sex, structure)
        if model is not None:
            return model, source
    return None
