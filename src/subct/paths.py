"""Where subct finds data that is not part of the package.

``SUBCT_SHARED_DATA`` points at the shared data folder (real label maps, CTs, MRI
networks) used by tests and benchmarks; by default it is ``../shared/data`` next to
the repository checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """Return the shared data folder (may not exist on a user's machine)."""
    configured = os.environ.get("SUBCT_SHARED_DATA")
    if configured:
        return Path(configured).expanduser().resolve()
    return (REPOSITORY_ROOT.parent / "shared" / "data").resolve()


#: The ensemble label-transfer paper's repository, whose 180 CT-space subcortical label
#: maps :func:`paper_masks_dir` expects (a clone of it, or a copy of its two mask folders).
PAPER_MASKS_REPOSITORY = "SCSE-Biomedical-Computing-Group/CT-Subcortical-Segmentation"


def paper_masks_dir() -> Path:
    """The folder holding the ensemble paper's 180 CT-space subcortical label maps.

    ``SUBCT_PAPER_MASKS`` if set, else ``../data/paper_masks`` beside the checkout. The
    layout is the paper repository's own (:data:`PAPER_MASKS_REPOSITORY`):
    ``subcortical_segmentation_dataset/masks/<id>.nii.gz`` (all 180) and
    ``segmentation_models_training/data/masks/{train,val,test}/<id>.nii.gz`` (the
    paper's split: 126 / 27 / 27). The maps are not part of subct: they are read from
    there, never copied into the repository (``scripts/get_paper_masks.sh`` fills it).
    """
    configured = os.environ.get("SUBCT_PAPER_MASKS")
    if configured:
        return Path(configured).expanduser().resolve()
    return (REPOSITORY_ROOT.parent / "data" / "paper_masks").resolve()


#: The paper's split of its 180 maps: split folder → number of maps.
PAPER_SPLIT_SIZES = {"train": 126, "val": 27, "test": 27}


def paper_split_maps(split: str) -> list[Path]:
    """The paper's ``split`` maps (``train``, ``val`` or ``test``) under
    :func:`paper_masks_dir`, sorted by name. Raises FileNotFoundError, naming the folder,
    when the split is incomplete (a partial copy would change every figure drawn from it)."""
    if split not in PAPER_SPLIT_SIZES:
        raise ValueError(f"unknown paper split {split!r}: one of {sorted(PAPER_SPLIT_SIZES)}")
    folder = paper_masks_dir() / "segmentation_models_training" / "data" / "masks" / split
    paths = sorted(folder.glob("*.nii.gz"))
    expected = PAPER_SPLIT_SIZES[split]
    if len(paths) != expected:
        raise FileNotFoundError(f"{folder}: expected the paper's {expected} {split} maps, "
                                f"found {len(paths)} (run scripts/get_paper_masks.sh)")
    return paths


#: Environment variable naming the folder of derived files (ONNX graphs, label banks).
CACHE_ENV = "SUBCT_CACHE_DIR"


def cache_dir() -> Path:
    """Where derived files are cached (ONNX graphs of checkpoints, training label banks):
    ``SUBCT_CACHE_DIR`` or ``$XDG_CACHE_HOME/subct`` (default ``~/.cache/subct``). Every
    file there can be deleted; it is made again when needed."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "subct"
