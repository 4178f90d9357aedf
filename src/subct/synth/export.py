"""Writing synthetic samples to disk: NIfTI image/label pairs and a PNG mosaic."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from subct.errors import SubctInputError
from subct.image.volume import Volume
from subct.io.writers import save_volume
from subct.synth.config import SynthConfig
from subct.synth.generator import SynthGenerator
from subct.synth.label_maps import LabelMapSource
from subct.synth.mosaic import save_mosaic

#: Samples shown in the mosaic at most (one row each).
MOSAIC_ROWS = 8


@dataclass
class SynthExportResult:
    """What :func:`write_synthetic_samples` wrote."""

    image_paths: list[Path] = field(default_factory=list)
    label_paths: list[Path] = field(default_factory=list)
    mosaic_path: Path | None = None


def output_names(count: int) -> list[str]:
    """The files :func:`write_synthetic_samples` writes for ``count`` samples."""
    names = [f"synth_{index:04d}_{kind}.nii.gz" for index in range(count)
             for kind in ("image", "labels")]
    return [*names, "synth_mosaic.png"]


def _refuse_overwriting_inputs(output_dir: Path, count: int,
                               sources: Sequence[LabelMapSource | None]) -> None:
    """Refuse, before any work, an output file that is one of the input label maps."""
    inputs = {Path(source).resolve() for source in sources if isinstance(source, str | Path)}
    for name in output_names(count):
        if (output_dir / name).resolve() in inputs:
            raise SubctInputError(output_dir / name, "is an input label map and would be "
                                                     "overwritten by the samples; choose "
                                                     "another output folder")


def write_synthetic_samples(
    label_maps: Sequence[LabelMapSource],
    output_dir: str | Path,
    count: int,
    config: SynthConfig | None = None,
    seed: int | None = None,
    background: LabelMapSource | None = None,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> SynthExportResult:
    """Generate ``count`` samples and write them to ``output_dir``.

    Files: ``synth_NNNN_image.nii.gz`` (CT mode: Hounsfield units as int16, so it
    opens like a real CT; generic mode: float32 in [0, 1]),
    ``synth_NNNN_labels.nii.gz`` (FreeSurfer IDs of every label, int16) and
    ``synth_mosaic.png`` (three orthogonal slices of the first samples). All writes
    are atomic; the output grid is 1 mm RAS.
    """
    config = config if config is not None else SynthConfig()
    output_dir = Path(output_dir)
    _refuse_overwriting_inputs(output_dir, count, [*label_maps, background])
    output_dir.mkdir(parents=True, exist_ok=True)
    generator = SynthGenerator(label_maps, config, device=device, seed=seed,
                               background=background)
    result = SynthExportResult()
    shown_images: list[np.ndarray] = []
    shown_labels: list[np.ndarray] = []
    for index in range(count):
        sample = generator.sample()
        labels = sample.labels_fs.cpu().numpy().astype(np.int16)
        if sample.hu is not None:
            image = np.clip(np.rint(sample.hu.cpu().numpy()), -1024, 3071).astype(np.int16)
        else:
            image = sample.image[0].cpu().numpy().astype(np.float32)
        stem = output_dir / f"synth_{index:04d}"
        result.image_paths.append(
            save_volume(Volume(image, sample.affine), f"{stem}_image.nii.gz"))
        result.label_paths.append(
            save_volume(Volume(labels, sample.affine), f"{stem}_labels.nii.gz"))
        if index < MOSAIC_ROWS:
            shown_images.append(sample.image[0].cpu().numpy())
            shown_labels.append(labels)
        if progress is not None:
            progress(index + 1)
    if shown_images:
        result.mosaic_path = save_mosaic(
            shown_images, shown_labels, output_dir / "synth_mosaic.png",
            titles=[f"synth_{i:04d}" for i in range(len(shown_images))],
        )
    return result
