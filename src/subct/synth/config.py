"""Typed configuration of the synthetic-image generator, with the papers' defaults.

Every knob of :class:`subct.synth.SynthGenerator` lives here so that one object (or
one YAML/dict block of a training configuration) fixes the whole generative model.
Defaults follow SynthSeg (Billot et al. 2023, section 3.1 and its public training
defaults) for the spatial, generic-contrast and resolution parts, and published
head-CT attenuation values for the CT priors (Hounsfield units, HU).

Ranges are ``(low, high)`` tuples of a uniform distribution unless said otherwise.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from subct.config import StrictConfig
from subct.model.plan import DEFAULT_HU_WINDOW
from subct.synth.tissues import CT_TISSUE_HU, TISSUES

Range = tuple[float, float]


_Strict = StrictConfig


class SpatialConfig(_Strict):
    """Random affine + diffeomorphic deformation, flip and crop placement (SynthSeg 3.1.1)."""

    rotation_deg: float = Field(default=15.0, ge=0, description="rotations ~ U(-b, b) deg")
    scaling: float = Field(default=0.2, ge=0, lt=1, description="scalings ~ U(1-b, 1+b), per axis")
    shearing: float = Field(default=0.012, ge=0, lt=0.5, description="shears ~ U(-b, b), per pair")
    translation_mm: float | tuple[float, float, float] = Field(
        default=10.0,
        description=("crop centre moved by U(-b, b) mm from the anchor: one b for all axes "
                     "or (b_x, b_y, b_z). Wide ranges train a network for sliding-window "
                     "inference, whose windows sit anywhere in the deep-brain box"),
    )
    nonlinear_std_max_mm: float = Field(
        default=4.0, ge=0, description="b_nonlin: SVF std σ ~ U(0, b) mm on the coarse grid"
    )
    nonlinear_spacing_mm: float = Field(
        default=25.6, gt=1,
        description="spacing of the SVF control points (SynthSeg: 10 over 256 mm)",
    )
    integration_steps: int = Field(default=7, ge=0, le=12, description="scaling-and-squaring steps")
    integration_downsample: int = Field(
        default=8, ge=1, description="SVF integrated on the output grid / this factor"
    )
    flip_probability: float = Field(default=0.5, ge=0, le=1, description="L/R mirror + label swap")
    pitch_extra_deg: float = Field(
        default=0.0, ge=0, le=45,
        description="extra head pitch (rotation about x) ~ U(-b, b) deg on top of "
                    "rotation_deg: clinical heads are often tilted by up to 25°")
    anchor: Literal["targets", "head"] = Field(
        default="targets",
        description="crop centre anchor: centroid of the target structures or of the head",
    )

    @field_validator("translation_mm")
    @classmethod
    def _non_negative_translation(
            cls, value: float | tuple[float, float, float]) -> float | tuple[float, float, float]:
        values = (value,) if isinstance(value, (int, float)) else value
        if any(v < 0 for v in values):
            raise ValueError("translation ranges must be >= 0 mm")
        return value

    @property
    def translation_range_mm(self) -> tuple[float, float, float]:
        """Half-width (mm) of the uniform crop-centre translation along x, y, z."""
        value = self.translation_mm
        if isinstance(value, (int, float)):
            return (float(value),) * 3
        return (float(value[0]), float(value[1]), float(value[2]))


class GenericIntensityConfig(_Strict):
    """Fully randomised Gaussian mixture contrast (SynthSeg 3.1.2–3.1.3), arbitrary units."""

    mean_range: Range = (0.0, 255.0)
    std_range: Range = (0.0, 35.0)
    bias_std_max: float = Field(default=0.5, ge=0, description="b_B: bias log-field std ~ U(0, b)")
    bias_grid: tuple[int, int, int] = (4, 4, 4)
    gamma_std: float = Field(default=0.4, ge=0, description="σ_γ of the log-gamma exponent")


class TissuePrior(_Strict):
    """Attenuation prior of one tissue in HU.

    Per sample the tissue mean is drawn from ``U(mean - spread, mean + spread)`` and its
    texture standard deviation (HU) from ``texture_std``.
    """

    mean_hu: float
    spread_hu: float = Field(ge=0)
    texture_std: Range


def default_tissue_priors() -> dict[str, TissuePrior]:
    """Head-CT attenuation priors (non-contrast CT, 120 kVp), in HU.

    Means from :data:`subct.synth.tissues.CT_TISSUE_HU`, the one CT tissue table.
    """

    def prior(tissue: str, spread: float, texture: Range) -> tuple[str, TissuePrior]:
        return tissue, TissuePrior(mean_hu=CT_TISSUE_HU[tissue], spread_hu=spread,
                                   texture_std=texture)

    return dict([
        prior("air", 10.0, (2.0, 10.0)),
        prior("internal_air", 60.0, (10.0, 40.0)),
        prior("fat", 20.0, (3.0, 12.0)),
        prior("soft_tissue", 15.0, (3.0, 12.0)),
        prior("scalp", 30.0, (3.0, 15.0)),
        prior("csf", 4.0, (1.0, 3.0)),
        prior("white_matter", 3.0, (1.0, 3.0)),
        prior("white_matter_lesion", 4.0, (1.0, 3.0)),
        prior("grey_matter", 3.0, (1.0, 3.0)),
        prior("deep_grey", 4.0, (1.0, 3.0)),
        prior("brainstem", 3.0, (1.0, 3.0)),
        prior("blood", 8.0, (1.0, 4.0)),
        prior("eye", 5.0, (1.0, 4.0)),
        prior("cancellous_bone", 150.0, (20.0, 60.0)),
        prior("cortical_bone", 250.0, (20.0, 80.0)),
    ])


class CTNoiseConfig(_Strict):
    """Projection-domain CT noise: forward projection, Poisson counts, FBP (per slice)."""

    probability: float = Field(default=0.0, ge=0, le=1, description="chance of noise")
    photons_per_ray_range: Range = Field(
        default=(2e5, 5e6), description="incident photons per ray and mm of slice, log-uniform"
    )
    n_angles: int = Field(default=90, ge=8, description="projection angles over 180 degrees")
    water_attenuation_per_mm: float = Field(default=0.0195, gt=0, description="μ of water (1/mm)")


class CTIntensityConfig(_Strict):
    """CT physics: per-tissue HU priors, texture, optional noise, HU window."""

    tissues: dict[str, TissuePrior] = Field(default_factory=default_tissue_priors)
    label_jitter_hu: float = Field(
        default=2.0, ge=0, description="label mean = tissue mean + U(-b, b) HU"
    )
    texture_smooth_fraction: Range = Field(
        default=(0.0, 0.7), description="share of texture variance that is spatially smooth"
    )
    shading_std_max_hu: float = Field(
        default=3.0, ge=0, description="additive low-frequency shading, std ~ U(0, b) HU"
    )
    brain_scale_range: Range = Field(
        default=(1.0, 1.0),
        description="per sample, brain tissue means (CSF to blood) × U(a, b) around 30 HU: "
                    "a scanner's calibration and kVp change grey/white contrast")
    brain_offset_hu: Range = Field(
        default=(0.0, 0.0), description="per sample, brain tissue means + U(a, b) HU")
    texture_scale_range: Range = Field(
        default=(1.0, 1.0), description="per sample, every tissue's texture std × U(a, b)")
    noise: CTNoiseConfig = Field(default_factory=CTNoiseConfig)
    window: Range = Field(
        default=DEFAULT_HU_WINDOW, description="HU window of the normalisation (as inference)"
    )

    @model_validator(mode="after")
    def _known_tissues(self) -> CTIntensityConfig:
        missing = set(TISSUES) - set(self.tissues)
        if missing:
            raise ValueError(f"tissue priors missing for: {', '.join(sorted(missing))}")
        return self


class ResolutionConfig(_Strict):
    """Slice spacing/thickness simulation (SynthSeg 3.1.4)."""

    probability: float = Field(default=0.9, ge=0, le=1)
    spacing_range_mm: Range = Field(default=(1.0, 7.0), description="r_spac ~ U(a, b) mm")
    axis_probabilities: tuple[float, float, float] = Field(
        default=(0.15, 0.15, 0.7),
        description="chance of each acquisition axis (RAS x sagittal, y coronal, z axial)",
    )
    thickness_alpha_range: Range = Field(
        default=(0.95, 1.05), description="α: random deviation from the nominal slice profile"
    )

    @field_validator("axis_probabilities")
    @classmethod
    def _normalised(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        total = sum(value)
        if total <= 0 or min(value) < 0:
            raise ValueError("axis probabilities must be non-negative and not all zero")
        return (value[0] / total, value[1] / total, value[2] / total)


class InfarctConfig(_Strict):
    """Old infarcts / encephalomalacia (cortical-subcortical, or beside the ventricles)."""

    probability: float = Field(default=0.0, ge=0, le=1)
    count: tuple[int, int] = (1, 3)
    radius_mm: Range = (4.0, 20.0)
    hu: Range = Field(default=(0.0, 20.0), description="lesion HU ~ U(a, b)")
    csf_core_below_hu: float = Field(
        default=12.0, description="lesions darker than this replace tissue: target "
                                  "structures inside become CSF (not the structure)")


class WhiteMatterHypodensityConfig(_Strict):
    """Small-vessel disease: patchy periventricular/deep white-matter hypodensity."""

    probability: float = Field(default=0.0, ge=0, le=1)
    extent: Range = Field(default=(0.05, 0.35), description="fraction of white matter")
    drop_hu: Range = Field(default=(3.0, 10.0), description="HU below normal white matter")


class MorphologyConfig(_Strict):
    """A label-map growth (atrophy, hydrocephalus): dilation by U{a..b} voxels (mm)."""

    probability: float = Field(default=0.0, ge=0, le=1)
    voxels: tuple[int, int] = (1, 4)


class HaemorrhageConfig(_Strict):
    """Acute blood: intraparenchymal (incl. basal ganglia, thalamus), intraventricular,
    subdural and subarachnoid; the anatomy underneath keeps its label."""

    intraparenchymal_probability: float = Field(default=0.0, ge=0, le=1)
    intraventricular_probability: float = Field(default=0.0, ge=0, le=1)
    subdural_probability: float = Field(default=0.0, ge=0, le=1)
    subarachnoid_probability: float = Field(default=0.0, ge=0, le=1)
    radius_mm: Range = (3.0, 15.0)
    hu: Range = (50.0, 90.0)
    subdural_mm: tuple[int, int] = (3, 12)


class CalcificationConfig(_Strict):
    """Physiological and pathological calcification, 100–400 HU; labels unchanged."""

    pallidum_probability: float = Field(default=0.0, ge=0, le=1)
    pallidum_fraction: Range = Field(default=(0.05, 0.6), description="speckle density")
    choroid_plexus_probability: float = Field(default=0.0, ge=0, le=1)
    pineal_probability: float = Field(default=0.0, ge=0, le=1)
    falx_probability: float = Field(default=0.0, ge=0, le=1)
    hu: Range = (100.0, 400.0)


class PathologyConfig(_Strict):
    """Clinical pathology (:mod:`subct.synth.pathology`); every effect off by default."""

    infarct: InfarctConfig = Field(default_factory=InfarctConfig)
    white_matter_hypodensity: WhiteMatterHypodensityConfig = Field(
        default_factory=WhiteMatterHypodensityConfig)
    ventricle_enlargement: MorphologyConfig = Field(
        default_factory=lambda: MorphologyConfig(voxels=(1, 6)))
    sulcal_widening: MorphologyConfig = Field(
        default_factory=lambda: MorphologyConfig(voxels=(1, 3)))
    haemorrhage: HaemorrhageConfig = Field(default_factory=HaemorrhageConfig)
    calcification: CalcificationConfig = Field(default_factory=CalcificationConfig)

    @classmethod
    def clinical(cls) -> PathologyConfig:
        """Probabilities for training on clinical (elderly, injured) head CT."""
        return cls(
            infarct=InfarctConfig(probability=0.25),
            white_matter_hypodensity=WhiteMatterHypodensityConfig(probability=0.3),
            ventricle_enlargement=MorphologyConfig(probability=0.35, voxels=(1, 6)),
            sulcal_widening=MorphologyConfig(probability=0.35, voxels=(1, 3)),
            haemorrhage=HaemorrhageConfig(
                intraparenchymal_probability=0.12, intraventricular_probability=0.06,
                subdural_probability=0.08, subarachnoid_probability=0.06),
            calcification=CalcificationConfig(
                pallidum_probability=0.25, choroid_plexus_probability=0.4,
                pineal_probability=0.4, falx_probability=0.15),
        )

    def only(self, kinds: list[str]) -> PathologyConfig:
        """A copy with the named kinds certain (probability 1) and all others off.

        Kinds: ``infarct``, ``white_matter_hypodensity``, ``ventricle_enlargement``,
        ``sulcal_widening``, ``haemorrhage``, ``calcification`` (see ``PATHOLOGY_KINDS``).
        """
        unknown = set(kinds) - set(PATHOLOGY_KINDS)
        if unknown:
            raise ValueError(f"unknown pathology kind(s) {', '.join(sorted(unknown))}; "
                             f"choose from {', '.join(PATHOLOGY_KINDS)}")
        result = PathologyConfig()
        for kind in kinds:
            current = getattr(self, kind)
            update = {name: 1.0 for name in type(current).model_fields
                      if name.endswith("probability")}
            setattr(result, kind, current.model_copy(update=update))
        return result


#: Pathology kinds that ``subct synth --pathology`` accepts.
PATHOLOGY_KINDS: tuple[str, ...] = (
    "infarct", "white_matter_hypodensity", "ventricle_enlargement", "sulcal_widening",
    "haemorrhage", "calcification",
)


class ScannerConfig(_Strict):
    """Clinical scanner realism on the final HU image (:mod:`subct.synth.pathology`)."""

    noise_probability: float = Field(default=0.0, ge=0, le=1)
    noise_std_hu: Range = Field(default=(3.0, 15.0), description="clinical noise σ (HU)")
    noise_correlation_mm: Range = Field(default=(0.0, 1.2),
                                        description="Gaussian σ of the noise texture (mm)")
    kernel_probability: float = Field(default=0.0, ge=0, le=1,
                                      description="soft or sharp reconstruction kernel")
    soft_kernel_sigma_mm: Range = (0.4, 1.2)
    sharp_kernel_amount: Range = (0.3, 1.0)
    streak_probability: float = Field(default=0.0, ge=0, le=1,
                                      description="beam-hardening streaks near the skull base")
    streak_hu: Range = (10.0, 60.0)
    partial_fov_probability: float = Field(default=0.0, ge=0, le=1,
                                           description="skull top or neck not scanned")
    partial_fov_mm: tuple[int, int] = (10, 45)

    @classmethod
    def clinical(cls) -> ScannerConfig:
        """Probabilities for training on clinical scanners."""
        return cls(noise_probability=0.6, kernel_probability=0.5, streak_probability=0.25,
                   partial_fov_probability=0.1)


class SynthConfig(_Strict):
    """All parameters of the synthetic training-image generator.

    ``mode="ct"`` draws Hounsfield units from tissue priors and returns the image
    already windowed and normalised exactly as inference does
    (:func:`subct.model.preprocessing.ct_window_normalise`); ``mode="generic"`` draws a
    fully random Gaussian-mixture contrast in [0, 1] (SynthSeg).
    """

    mode: Literal["ct", "generic"] = "ct"
    output_shape: tuple[int, int, int] = (160, 160, 160)
    target_scheme: Literal["canonical", "merged", "paper7"] = "canonical"
    spatial: SpatialConfig = Field(default_factory=SpatialConfig)
    generic: GenericIntensityConfig = Field(default_factory=GenericIntensityConfig)
    ct: CTIntensityConfig = Field(default_factory=CTIntensityConfig)
    resolution: ResolutionConfig = Field(default_factory=ResolutionConfig)
    pathology: PathologyConfig = Field(default_factory=PathologyConfig)
    scanner: ScannerConfig = Field(default_factory=ScannerConfig)
    drop_extracerebral_probability: float = Field(
        default=0.1, ge=0, le=1, description="chance of a skull-stripped look (labels ≥ 500 → air)"
    )
    drop_structure_contrast_probability: float = Field(
        default=0.05, ge=0, le=1,
        description="per target structure: take the intensity of its host tissue instead",
    )

    @field_validator("output_shape")
    @classmethod
    def _positive_shape(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(value) < 8:
            raise ValueError(f"output_shape {value} is too small (each side ≥ 8 voxels)")
        return value

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> SynthConfig:
        """Build from a plain dict (e.g. the ``synth:`` block of a training YAML)."""
        return cls.model_validate(values or {})

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-serialisable dict (tuples become lists)."""
        return self.model_dump(mode="json")

    def without_randomness(self) -> SynthConfig:
        """A copy with spatial, resolution, noise and dropping augmentations switched off.

        Useful for checks: the image then shows the label map with only the intensity
        model applied (GMM or tissue HU plus texture).
        """
        copy = self.model_copy(deep=True)
        copy.spatial = SpatialConfig(
            rotation_deg=0.0, scaling=0.0, shearing=0.0, translation_mm=0.0,
            nonlinear_std_max_mm=0.0, flip_probability=0.0, anchor=self.spatial.anchor,
        )
        copy.resolution = self.resolution.model_copy(update={"probability": 0.0})
        copy.ct = self.ct.model_copy(
            update={"noise": self.ct.noise.model_copy(update={"probability": 0.0}),
                    "shading_std_max_hu": 0.0}
        )
        copy.generic = self.generic.model_copy(update={"bias_std_max": 0.0, "gamma_std": 0.0})
        copy.pathology = PathologyConfig()
        copy.scanner = ScannerConfig()
        copy.drop_extracerebral_probability = 0.0
        copy.drop_structure_contrast_probability = 0.0
        return copy
