"""Options of ``subct segment`` for one case (:class:`InferenceConfig`) and the constants
they default to: the deep-brain crop's size and offset and the ``--fast`` note.

The steps these options steer are described in :mod:`subct.inference.pipeline`.
"""

from __future__ import annotations

from typing import Any

from subct.config import StrictConfig
from subct.errors import SubctConfigError
from subct.labels.schemes import (
    get_scheme,
)
from subct.model.runtime import (
    Backend,
    Precision,
    requested_backend,
    requested_precision,
)

#: The progress name of the first step of every case (``on_step``): a case starts.
FIRST_STEP = "checking input"


def parse_device(name: str) -> str:
    """Validate a device name: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (Apple
    silicon GPUs through PyTorch's Metal backend).

    Raises:
        SubctConfigError: any other name.
    """
    head, _, index = name.partition(":")
    if name in ("auto", "cpu", "cuda", "mps") or (head == "cuda" and index.isdigit()):
        return name
    raise SubctConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")

#: Size (x, y, z, mm) of the RAS box cropped around the deep brain. Measured on the 20
#: SynthSeg label maps: the 17 structures span x −40..41, y −74..56, z −80..35 mm
#: around the intracranial centroid; the box adds ≥ 12 mm margin on every side.
DEFAULT_CROP_SIZE_MM: tuple[float, float, float] = (112.0, 160.0, 144.0)


#: Box centre relative to the intracranial centroid (RAS, mm): the structures sit
#: slightly posterior and well inferior of it (brainstem down to the foramen magnum).
DEFAULT_CROP_OFFSET_MM: tuple[float, float, float] = (0.0, -9.0, -22.0)


#: QC note of runs without left/right TTA (``--fast``), from
#: ``benchmarks/bench_fast_mode.py`` on the real head CTs.
NO_TTA_NOTE = ("run without left/right test-time augmentation (--fast): on real head CTs "
               "such labels agreed with the default run at mean self-Dice 0.92-0.94 (small "
               "structures down to 0.88); use the default settings for study volumes")




class InferenceConfig(StrictConfig):
    """Options of one segmentation run (the ``subct segment`` flags).

    Attributes:
        tta: average the prediction with the left/right mirrored one (``--no-tta`` off).
        mc_dropout_samples: Monte-Carlo dropout passes for QC (``--qc N``; 0 = none).
        scheme: label scheme of the written labels: ``canonical`` (17 FreeSurfer IDs),
            ``merged`` or ``paper7``.
        device: ``auto`` (CUDA, or MPS on a Mac, when available), ``cpu``, ``cuda``,
            ``cuda:N`` or ``mps``.
        threads: CPU threads of the network engine (``None``: the cores this process
            may use).
        precision: ``auto`` (bf16 autocast on CPUs with native bf16, fp32 on other
            CPUs, AMP on CUDA), ``fp32`` or ``bf16``; ``None`` reads
            ``SUBCT_PRECISION`` (default ``auto``). See :mod:`subct.model.runtime`.
        backend: network engine: ``auto`` (OpenVINO on CPU, PyTorch on GPU),
            ``openvino``, ``onnxruntime`` or ``torch``; ``None`` reads
            ``SUBCT_BACKEND``.
        sliding_window_overlap: overlap fraction of sliding windows (only used when
            the box is larger than both the training patch and
            ``max_single_pass_voxels``). 0.5 (48 windows of 64³ over the default box,
            Gaussian-weighted) scored +0.001–0.002 mean Dice over 0.25 (18 windows) on
            the validation maps and +0.005–0.012 on the held-out maps, for ≈ 2.7× the
            network time. ``--fast`` keeps it (see :meth:`fast`).
        max_single_pass_voxels: boxes up to this many voxels go through the network in
            one pass even when larger than the training patch. Default 0: the box is
            always covered by sliding windows of the *training* patch size, because
            instance normalisation makes a network trained on 64³ patches see different
            feature statistics on a whole 112×160×144 box; on held-out synthetic heads
            windows gave +0.15 mean Dice over one pass with the phase-2 weights and
            +0.05 with the shipped ones
            (``benchmarks/bench_shipped_model.py --single-pass``). A single pass is
            faster (1.05 s for the 1 mm box on 2 cores) and can be chosen for networks
            trained on whole boxes.
        mask_below_window: no structure in voxels at or below the lower end of the HU
            window (air and fat, ≤ −100 HU by default): none of the 17 structures can be
            there, and a network trained on brain-centred patches otherwise sometimes
            labels air outside the head as ventricle (CSF-like darkness).
        largest_component: keep only the largest connected component of each structure.
        component_min_fraction: with ``largest_component``, also keep components with at
            least this fraction of the largest component's voxels (1.0: only the largest).
            0.1 keeps a lateral ventricle that the network split into two parts (demo
            CT: right ventricle Dice 0.31 → 0.43) and changed nothing on the validation
            heads (0.827 / 0.817 either way), where stray islands are far smaller.
        inpaint_dense_foci: show the network small dense foci inside the skull
            (calcification, contrast; > 100 HU) as the tissue around them
            (:mod:`subct.inference.dense`); QC and statistics read the original HU.
        inpaint_blood: show the network blood-like regions inside the skull (acute
            haemorrhage, 55–100 HU, ≥ 0.5 cm³; the regions the ``hyperdense_lesion``
            warning reports) filled in from the tissue around them, so that the
            structure a haematoma lies in is not cut out of its label; the structures
            next to it stay flagged. QC and statistics read the original HU.
        denoise: smooth the network's input when the brain's noise is above
            :data:`subct.inference.denoise.NOISE_TARGET_HU` (thin-slice, low-dose CT);
            quiet scans are untouched.
        align_pitch: turn the crop about the left-right axis so that the head's pitch
            matches the pose of the model's training data, when the model records it
            (the shipped model does; pitched rescans then give the same labels).
        calibrate_volumes: apply the model's volume calibration (its per-structure
            factors on the softmax before the argmax, ``class_scales`` of the checkpoint
            or the registry; ``--no-calibration`` off): the shipped network labels the
            accumbens 30–60 % too large on every validation head, see
            ``benchmarks/tune_class_scales.py``. The kept posteriors are the calibrated
            ones.
        keep_posteriors: also return the softmax map on the crop grid.
        crop_size_mm: deep-brain box size (x, y, z) in mm.
        crop_offset_mm: box centre relative to the intracranial centroid, RAS mm.
        hu_offset: value subtracted from the stored intensities to get HU; ``None``
            detects HU+1024 storage automatically.
        force: segment even an input that fails the head-CT gate (not a head CT, no
            orientation, deep brain outside the field of view); the QC flags remain.
        assume_orientation: axis codes (``RAS``, ``LPS``, ``LIA``…) of a file that
            records no orientation (NIfTI qform/sform code 0, NRRD without space
            directions): voxel axis i, j, k point to the first, second, third letter.
            Without it such files are refused, because left and right cannot be told.
    """

    tta: bool = True
    mc_dropout_samples: int = 0
    scheme: str = "canonical"
    device: str = "auto"
    threads: int | None = None
    precision: Precision | None = None
    backend: Backend | None = None
    sliding_window_overlap: float = 0.5
    max_single_pass_voxels: int = 0
    mask_below_window: bool = True
    largest_component: bool = True
    component_min_fraction: float = 0.1
    inpaint_dense_foci: bool = True
    inpaint_blood: bool = True
    denoise: bool = True
    align_pitch: bool = True
    calibrate_volumes: bool = True
    keep_posteriors: bool = False
    crop_size_mm: tuple[float, float, float] = DEFAULT_CROP_SIZE_MM
    crop_offset_mm: tuple[float, float, float] = DEFAULT_CROP_OFFSET_MM
    hu_offset: float | None = None
    force: bool = False
    assume_orientation: str | None = None

    def model_post_init(self, context: Any, /) -> None:
        get_scheme(self.scheme)  # raises for an unknown name
        if self.mc_dropout_samples < 0 or self.mc_dropout_samples == 1:
            raise SubctConfigError("--mc-samples needs 0 (off) or at least 2 Monte-Carlo samples")
        parse_device(self.device)
        requested_precision(self.precision)
        requested_backend(self.backend)
        if not 0.0 <= self.sliding_window_overlap < 1.0:
            raise SubctConfigError("sliding-window overlap must be in [0, 1)")
        if not 0.0 < self.component_min_fraction <= 1.0:
            raise SubctConfigError("component_min_fraction must be in (0, 1]")
        if self.threads is not None and self.threads < 1:
            raise SubctConfigError("--threads must be at least 1")
        if self.assume_orientation is not None:
            codes = self.assume_orientation.upper()
            axes = {"L": "x", "R": "x", "A": "y", "P": "y", "S": "z", "I": "z"}
            if len(codes) != 3 or any(c not in axes for c in codes) or \
                    len({axes[c] for c in codes}) != 3:
                raise SubctConfigError(f"--assume-orientation {self.assume_orientation!r}: "
                                       "give three axis codes, one of L/R, A/P and S/I "
                                       "each (e.g. RAS, LPS, LIA)")

    @classmethod
    def fast(cls, **overrides: Any) -> InferenceConfig:
        """Lighter settings (``--fast``): no left/right TTA, window overlap kept at 0.5.

        Half the network time. Chosen on the real head CTs
        (``benchmarks/bench_fast_mode.py``): of the settings that halve the cost, this
        one agrees best with the default run (mean self-Dice 0.92–0.94, worst structure
        0.88), where dropping the overlap instead (the old ``--fast``) split the
        brainstem (self-Dice 0.56). It does not reach 0.95; the run is flagged
        ``no_tta`` (info) in the QC so that its volumes are not mistaken for default
        ones.
        """
        settings: dict[str, Any] = {"tta": False, "sliding_window_overlap": 0.5}
        settings.update(overrides)
        return cls(**settings)
