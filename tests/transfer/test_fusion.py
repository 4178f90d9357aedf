"""Fusion rules on hand-built voxel cases (each column of a 1×1×N volume is one case)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from subct.errors import SubctConfigError, SubctInputError
from subct.transfer.fusion import fuse


def _maps(*columns: tuple[int, ...]) -> list[np.ndarray]:
    """Voxel cases → M label maps: ``columns[v][j]`` is segmenter j's label at voxel v."""
    table = np.array(columns, dtype=np.int16).T  # (M, voxels)
    return [row.reshape(1, 1, -1) for row in table]


def _flat(array: np.ndarray) -> list[float]:
    return [float(v) for v in array.ravel()]


# Voxel cases for three segmenters (labels: 10 thalamus, 11 caudate, 12 putamen).
CASES_3 = _maps(
    (10, 10, 10),  # unanimous structure
    (0, 0, 0),  # unanimous background
    (10, 10, 0),  # 2 vs background
    (10, 10, 11),  # 2 vs another structure
    (10, 11, 12),  # three-way tie -> background
    (0, 0, 10),  # majority is background
)


def test_consensus_keeps_only_unanimous_structures() -> None:
    result = fuse(CASES_3, "consensus")
    assert _flat(result.labels) == [10, 0, 0, 0, 0, 0]
    # agreement = fraction agreeing with the fused label (background here)
    assert _flat(result.agreement) == pytest.approx([1, 1, 1 / 3, 0, 0, 2 / 3])


def test_majority_takes_most_votes_and_ties_go_to_background() -> None:
    result = fuse(CASES_3, "majority")
    assert _flat(result.labels) == [10, 0, 10, 10, 0, 0]
    assert _flat(result.agreement) == pytest.approx([1, 1, 2 / 3, 2 / 3, 0, 2 / 3])


def test_majority_ties_between_structure_and_background_and_between_structures() -> None:
    maps = _maps(
        (10, 10, 0, 0),  # 2 structure vs 2 background: tie -> background
        (10, 10, 11, 11),  # 2 vs 2 structures: tie -> background
        (10, 10, 11, 0),  # 2 vs 1 vs 1: structure wins
        (10, 11, 12, 0),  # four-way tie
        (0, 0, 11, 11),  # background vs structure tie, background first
    )
    assert _flat(fuse(maps, "majority").labels) == [0, 0, 10, 0, 0]


def test_single_map_is_returned_unchanged_by_every_method() -> None:
    labels = np.array([[[0, 4, 43, 16]]], dtype=np.int16)
    for method in ("consensus", "majority", "staple"):
        assert _flat(fuse([labels], method).labels) == [0, 4, 43, 16]
    assert _flat(fuse([labels], "weighted", weights=[0.5]).labels) == [0, 4, 43, 16]


def test_weighted_per_segmenter_breaks_the_majority() -> None:
    maps = _maps((10, 10, 11), (10, 0, 0), (11, 12, 0))
    # segmenter 2 is trusted 3x as much as the others combined-ish
    result = fuse(maps, "weighted", weights=[1.0, 1.0, 2.5])
    assert _flat(result.labels) == [11, 0, 0]
    # equal weights reproduce majority voting, ties included
    assert _flat(fuse(maps, "weighted", weights=[1, 1, 1]).labels) == _flat(
        fuse(maps, "majority").labels
    )


def test_weighted_ties_go_to_background_with_float_weights() -> None:
    maps = _maps((10, 11, 11), (10, 0, 0))
    # 0.3 (label 10) vs 0.1 + 0.2 (label 11): a tie up to floating point -> background
    result = fuse(maps, "weighted", weights=[0.3, 0.1, 0.2])
    assert _flat(result.labels) == [0, 0]


def test_weighted_per_structure_weights() -> None:
    # Segmenter 0 is good at thalamus (10), segmenter 1 at caudate (11).
    weights = [{0: 1.0, 10: 0.9, 11: 0.2}, {0: 1.0, 10: 0.2, 11: 0.9}]
    maps = _maps((10, 11), (11, 10), (10, 0), (0, 11))
    result = fuse(maps, "weighted", weights=weights)
    # voxel 0: 10 gets 0.9, 11 gets 0.9 -> tie -> background
    # voxel 1: 11 from seg0 (0.2) vs 10 from seg1 (0.2) -> tie -> background
    # voxel 2: 10 (0.9) vs background (1.0) -> background
    # voxel 3: background (1.0) vs 11 (0.9) -> background
    assert _flat(result.labels) == [0, 0, 0, 0]
    strong = [{0: 0.5, 10: 0.9, 11: 0.2}, {0: 0.5, 10: 0.2, 11: 0.9}]
    assert _flat(fuse(maps, "weighted", weights=strong).labels) == [0, 0, 10, 11]


def test_weighted_zero_weight_label_cannot_win_even_when_unanimous() -> None:
    maps = _maps((10, 10), (11, 11))
    result = fuse(maps, "weighted", weights=[{10: 0.0, 11: 1.0}, {10: 0.0, 11: 1.0}])
    assert _flat(result.labels) == [0, 11]


def test_staple_recovers_truth_from_one_noisy_rater() -> None:
    rng = np.random.default_rng(0)
    truth = np.zeros((12, 12, 12), dtype=np.int16)
    truth[2:6, 2:10, 2:10] = 10
    truth[6:10, 2:10, 2:10] = 11
    maps = []
    for noise in (0.02, 0.05, 0.35):  # the third segmenter is bad
        noisy = truth.copy()
        flip = rng.random(truth.shape) < noise
        noisy[flip] = rng.choice(np.array([0, 10, 11], dtype=np.int16), int(flip.sum()))
        maps.append(noisy)
    staple = fuse(maps, "staple")
    accuracy = float((staple.labels == truth).mean())
    assert accuracy > 0.98
    assert staple.labels.dtype == np.int16
    # STAPLE keeps unanimous voxels
    unanimous = (maps[0] == maps[1]) & (maps[1] == maps[2])
    assert np.array_equal(staple.labels[unanimous], maps[0][unanimous])


def test_staple_on_all_background_is_background() -> None:
    empty = np.zeros((3, 3, 3), dtype=np.int16)
    result = fuse([empty, empty], "staple")
    assert not result.labels.any()
    assert np.all(result.agreement == 1.0)


def test_labels_keep_their_values_and_dtype() -> None:
    maps = _maps((43, 43, 43), (58, 58, 0))
    result = fuse(maps, "majority")
    assert result.labels.dtype == np.int16
    assert result.agreement.dtype == np.float32
    assert _flat(result.labels) == [43, 58]
    assert result.mean_agreement_in_structures == pytest.approx((1 + 2 / 3) / 2)


def test_bad_inputs_raise_clear_errors() -> None:
    a = np.zeros((2, 2, 2), dtype=np.int16)
    with pytest.raises(SubctInputError, match="shape"):
        fuse([a, np.zeros((2, 2, 3), dtype=np.int16)])
    with pytest.raises(SubctInputError, match="no label maps"):
        fuse([])
    with pytest.raises(SubctInputError, match="non-integer"):
        fuse([a, np.full((2, 2, 2), 0.5)])
    with pytest.raises(SubctInputError, match="outside"):
        fuse([a, np.full((2, 2, 2), -1)])
    with pytest.raises(SubctConfigError, match="unknown fusion method"):
        fuse([a], "vote")
    with pytest.raises(SubctConfigError, match="needs weights"):
        fuse([a, a], "weighted")
    with pytest.raises(SubctConfigError, match="one per map"):
        fuse([a, a], "weighted", weights=[1.0])
    with pytest.raises(SubctConfigError, match=">= 0"):
        fuse([a, a], "weighted", weights=[1.0, -1.0])
    with pytest.raises(SubctConfigError, match="only used"):
        fuse([a, a], "majority", weights=[1.0, 1.0])


# ------------------------------------------------------------------ files API and CLI


def _write_maps(folder: Path) -> list[Path]:
    from subct.image.volume import Volume
    from subct.io.writers import save_volume

    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    paths = []
    for index, row in enumerate(np.array(CASES_3_TABLE, dtype=np.int16).T):
        volume = Volume(row.reshape(2, 2, 2), affine)
        paths.append(save_volume(volume, folder / f"m{index}.nii.gz"))
    return paths


CASES_3_TABLE = [(10, 10, 10), (0, 0, 0), (10, 10, 0), (10, 10, 11), (10, 11, 12), (0, 0, 10),
                 (11, 11, 11), (0, 0, 0)]


def test_fuse_command_writes_labels_and_agreement(tmp_path: Path) -> None:
    from subct.cli import main
    from subct.io.readers import load_volume

    paths = _write_maps(tmp_path)
    out, agreement = tmp_path / "fused.nii.gz", tmp_path / "agree.nii.gz"
    with pytest.raises(SystemExit) as exited:
        main(["fuse", *map(str, paths), "-o", str(out), "--method", "majority",
              "--agreement", str(agreement)])
    assert exited.value.code == 0
    assert _flat(load_volume(out).array) == [10, 0, 10, 10, 0, 0, 11, 0]
    expected_agreement = [1, 1, 2 / 3, 2 / 3, 0, 2 / 3, 1, 1]
    assert _flat(load_volume(agreement).array) == pytest.approx(expected_agreement)
    weights = tmp_path / "w.json"
    weights.write_text('[{"0": 1, "10": 0.4, "11": 1}, {"0": 1, "10": 0.4, "11": 1}, '
                       '{"0": 1, "11": 1, "12": 1}]')
    with pytest.raises(SystemExit) as exited:
        main(["fuse", *map(str, paths), "-o", str(out), "--method", "weighted",
              "--weights", str(weights)])
    assert exited.value.code == 0
    # voxel 3: 10 gets 0.8, 11 gets 1 -> 11; voxel 2: 10 (0.8) vs bg (1) -> bg
    assert _flat(load_volume(out).array) == [10, 0, 0, 11, 0, 0, 11, 0]


def test_fuse_command_errors_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from subct.cli import main
    from subct.image.volume import Volume
    from subct.io.writers import save_volume

    paths = _write_maps(tmp_path)
    odd = save_volume(Volume(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4)),
                      tmp_path / "odd.nii.gz")
    for argv in (
        ["fuse", str(paths[0]), str(odd), "-o", str(tmp_path / "f.nii.gz")],
        ["fuse", *map(str, paths), "-o", str(paths[0])],
        ["fuse", *map(str, paths), "-o", str(tmp_path / "f.nii.gz"), "--method", "vote"],
        ["fuse", *map(str, paths), "-o", str(tmp_path / "f.nii.gz"), "--method", "weighted",
         "--weights", "1,1"],
    ):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
        if odd.name in argv[2]:
            assert odd.name in err  # the message names the offending file


def test_leave_one_out_weights_penalise_the_outlier() -> None:
    from subct.transfer.fusion import leave_one_out_weights

    good = np.zeros((6, 6, 6), dtype=np.int16)
    good[1:5, 1:5, 1:5] = 10
    shifted = np.roll(good, 2, axis=0)  # the outlier
    weights = leave_one_out_weights([good, good.copy(), good.copy(), shifted], [10])
    assert weights[0][10] == pytest.approx(1.0) and weights[0][0] == 1.0
    assert weights[3][10] == pytest.approx(0.5)  # 2 of 4 slabs overlap
    with pytest.raises(SubctInputError, match="at least 3"):
        leave_one_out_weights([good, good], [10])


def test_staple_pattern_em_matches_simpleitk_filter() -> None:
    from subct.transfer.staple import _staple_simpleitk

    rng = np.random.default_rng(3)
    truth = np.zeros((14, 14, 14), dtype=np.int16)
    truth[2:7, 2:12, 2:12] = 10
    truth[7:12, 2:12, 2:12] = 11
    truth[5:9, 5:9, 5:9] = 12
    for _ in range(3):
        maps = []
        for noise in rng.uniform(0.01, 0.4, size=4):
            noisy = truth.copy()
            flip = rng.random(truth.shape) < noise
            noisy[flip] = rng.choice(np.array([0, 10, 11, 12], dtype=np.int16), int(flip.sum()))
            maps.append(noisy)
        ours = fuse(maps, "staple").labels
        reference = _staple_simpleitk(maps, 50)
        assert np.array_equal(ours, reference)
