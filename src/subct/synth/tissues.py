"""Which tissue each label of a whole-head label map stands for.

The SynthSeg training maps use FreeSurfer IDs inside the brain and IDs 502–530 for
the head around it. The extra-cerebral IDs are not named in the data set, so their
tissue was identified from anatomy (position, size, symmetry and neighbours in
``training_seg_01``): 506 two eyeballs; 507 the bulk of non-brain soft tissue
(muscle, face, neck); 511 the scalp/skin surface layer; 515 the skull; 516 the
paranasal sinuses and airways (bilateral maxillary sinuses, sphenoid); 509 the nasal
cavity open to the outside; 514 large vessels/venous sinuses; 508 orbital fat around
the eyes; 530 optic nerves; 512 the spinal cord below the brainstem; 502 a bilateral
structure of the lower face (treated as soft tissue; its identity is uncertain).

The skull label (515) carries no cortical/cancellous split; :data:`CANCELLOUS_LABEL`
is added at load time for skull voxels more than 1 mm inside the bone (diploë and
skull base), see :func:`subct.synth.label_maps.split_skull`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the tables are read by configs that must not pay for torch
    import torch

#: Tissue names used by the CT priors (:func:`subct.synth.config.default_tissue_priors`).
TISSUES: tuple[str, ...] = (
    "air", "internal_air", "fat", "soft_tissue", "scalp", "csf", "white_matter",
    "white_matter_lesion", "grey_matter", "deep_grey", "brainstem", "blood", "eye",
    "cancellous_bone", "cortical_bone",
)

#: Typical non-contrast head-CT attenuation of each tissue (HU, 120 kVp): the one CT
#: tissue table of subct. The synthesis priors are centred on it
#: (:func:`subct.synth.config.default_tissue_priors` adds spreads and textures) and the
#: pseudo-CT from T1 + aseg (:mod:`subct.synth.pseudo_ct`) paints with it. Brain values
#: from the usual radiology ranges (CSF 0–15, white matter 20–30, grey matter 35–45,
#: blood 40–60); bone, fat and air from standard CT tables.
CT_TISSUE_HU: dict[str, float] = {
    "air": -1000.0, "internal_air": -900.0, "fat": -90.0, "soft_tissue": 45.0,
    "scalp": 20.0, "csf": 8.0, "white_matter": 27.0, "white_matter_lesion": 20.0,
    "grey_matter": 38.0, "deep_grey": 36.0, "brainstem": 31.0, "blood": 50.0, "eye": 12.0,
    "cancellous_bone": 650.0, "cortical_bone": 1300.0,
}

#: Label of the skull (SynthSeg extra-cerebral ID) and the synthetic ID of its interior.
SKULL_LABEL = 515
CANCELLOUS_LABEL = 599

#: Labels ≥ this value lie outside the brain (dropped for a skull-stripped look).
EXTRACEREBRAL_START = 500

_TISSUE_LABELS: dict[str, tuple[int, ...]] = {
    "air": (0,),
    "internal_air": (509, 516),
    "fat": (508,),
    "soft_tissue": (502, 507, 530),
    "scalp": (511,),
    "csf": (4, 5, 14, 15, 24, 31, 43, 44, 63, 72),
    "white_matter": (2, 7, 41, 46, 85, 512),
    "white_matter_lesion": (25, 57, 77),
    "grey_matter": (3, 8, 42, 47, 136, 137, 163, 164),
    "deep_grey": (10, 11, 12, 13, 17, 18, 26, 28, 49, 50, 51, 52, 53, 54, 58, 60),
    "brainstem": (16,),
    "blood": (30, 62, 514),
    "eye": (506,),
    "cancellous_bone": (CANCELLOUS_LABEL,),
    "cortical_bone": (SKULL_LABEL,),
}

#: FreeSurfer ID → tissue name.
TISSUE_OF_LABEL: dict[int, str] = {
    label: tissue for tissue, labels in _TISSUE_LABELS.items() for label in labels
}

#: Every left/right pair of FreeSurfer IDs present in whole-head maps (left first).
FREESURFER_LEFT_RIGHT_PAIRS: tuple[tuple[int, int], ...] = (
    (2, 41), (3, 42), (4, 43), (5, 44), (7, 46), (8, 47), (10, 49), (11, 50), (12, 51),
    (13, 52), (17, 53), (18, 54), (25, 57), (26, 58), (28, 60), (30, 62), (31, 63),
    (136, 163), (137, 164),
)

#: Target structure → label whose intensity it takes when its contrast is dropped.
CONTRAST_HOST: dict[int, int] = {
    4: 2, 43: 41, 10: 2, 49: 41, 11: 2, 50: 41, 12: 2, 51: 41, 13: 2, 52: 41,
    17: 3, 53: 42, 18: 3, 54: 42, 26: 2, 58: 41, 16: 7,
}


def tissue_of(label: int) -> str:
    """Tissue of a FreeSurfer/extra-cerebral label; unknown labels get a plausible default.

    Unknown IDs ≥ 500 are treated as soft tissue, unknown brain IDs as grey matter.
    """
    if label in TISSUE_OF_LABEL:
        return TISSUE_OF_LABEL[label]
    return "soft_tissue" if label >= EXTRACEREBRAL_START else "grey_matter"


def left_right_partner(label: int) -> int:
    """The mirror-image label (left ↔ right); midline and unpaired labels map to themselves."""
    for left, right in FREESURFER_LEFT_RIGHT_PAIRS:
        if label == left:
            return right
        if label == right:
            return left
    return label


def generic_class_of(label: int) -> int:
    """GMM class of a label in generic mode: left and right share one class (SynthSeg)."""
    return min(label, left_right_partner(label))


def lookup(table: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``table[labels]`` for an int64 label volume, via the faster ``index_select``."""
    return table.index_select(0, labels.reshape(-1)).view(labels.shape)
