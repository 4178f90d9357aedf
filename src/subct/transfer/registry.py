"""Which MRI segmenters exist, by name, and running one on a file.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from subct.errors import SubctConfigError, SubctInputError
from subct.io.readers import load_volume
from subct.io.writers import save_volume

if TYPE_CHECKING:  # torch (meshnet) is heavy: import it only when a MeshNet runs
    pass
from subct.transfer.atlas import AtlasSegmenter
from subct.transfer.external import EXTERNAL_TOOLS, CommandTemplateSegmenter, ExternalToolSegmenter
from subct.transfer.meshnet import MeshNetSegmenter
from subct.transfer.segmenter import Segmenter

BUILTIN_SEGMENTERS: tuple[str, ...] = (
    "meshnet-subcortical", "meshnet-18", "meshnet-104", "atlas-ho",
)


EXTERNAL_SEGMENTERS: tuple[str, ...] = (*EXTERNAL_TOOLS, "quicknat")


def available_segmenters() -> dict[str, str]:
    """Registry names → one-line descriptions (built-ins first, then external tools)."""
    described = {
        "meshnet-subcortical": "MeshNet 30-channel subcortical model (built-in, brainchop)",
        "meshnet-18": "MeshNet 21-channel 18-class model (built-in, brainchop)",
        "meshnet-104": "MeshNet 104-class aparc+aseg model (built-in, brainchop; EXPERIMENTAL: "
                       "does not reproduce on fsaverage yet, see docs/benchmarks.md)",
        "atlas-ho": "Harvard-Oxford subcortical atlas registered to the MRI (built-in)",
    }
    for name, spec in EXTERNAL_TOOLS.items():
        installed = "installed" if shutil.which(spec.executable) else "not installed; use --from"
        described[name] = f"{name} via `{spec.executable}` ({installed})"
    described["quicknat"] = "QuickNAT via a command template (option command=) or --from"
    return described


def get_segmenter(name: str, **options: Any) -> Segmenter:
    """Build a segmenter by registry name.

    Options (by kind): external tools ``from_file``, ``threads``, ``work_dir``,
    ``timeout_s``; ``quicknat`` ``command``, ``from_file``, ``label_convention``;
    MeshNet ``model_dir``, ``midline``, ``run`` (:class:`subct.transfer.meshnet.MeshNetRunConfig`);
    ``atlas-ho`` ``transform``, ``min_probability_percent``, ``registration``.

    Raises:
        SubctConfigError: unknown name or option.
    """
    key = name.strip().lower()
    if "from_file" in options and options["from_file"] is not None:
        options["from_file"] = Path(options["from_file"])
    try:
        if key in EXTERNAL_TOOLS:
            return ExternalToolSegmenter(spec=EXTERNAL_TOOLS[key], **options)
        if key == "quicknat":
            return CommandTemplateSegmenter(**options)
        if key.startswith("meshnet"):
            if key not in ("meshnet-subcortical", "meshnet-18", "meshnet-104"):
                raise SubctConfigError(f"unknown MeshNet model {name!r}")
            return MeshNetSegmenter(name=key, **options)
        if key in ("atlas-ho", "harvard-oxford"):
            return AtlasSegmenter(**options)
    except TypeError as error:
        raise SubctConfigError(f"bad option for segmenter {name!r}: {error}") from error
    raise SubctConfigError(
        f"unknown segmenter {name!r}; available: {', '.join(available_segmenters())}"
    )


def segment_file(mri_path: str | Path, output_path: str | Path, tool: str,
                 **options: Any) -> Path:
    """Segment the MRI file ``mri_path`` with ``tool`` and write the labels atomically.

    The output (int16 canonical FreeSurfer IDs) is on the MRI's grid; its format follows
    the suffix (``.nii.gz``, ``.mgz``...). ``options`` go to :func:`get_segmenter`
    (e.g. ``from_file`` for a precomputed output).

    Raises:
        SubctInputError: unreadable MRI, or an output path equal to an input.
    """
    mri_path, output_path = Path(mri_path), Path(output_path)
    inputs = [mri_path] + ([Path(options["from_file"])] if options.get("from_file") else [])
    if any(output_path.resolve() == path.resolve() for path in inputs):
        raise SubctInputError(output_path, "refusing to overwrite an input file")
    segmenter = get_segmenter(tool, **options)
    labels = segmenter.segment(load_volume(mri_path))
    return save_volume(labels, output_path, dtype=np.int16)
