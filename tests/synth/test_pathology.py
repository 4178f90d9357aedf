"""Pathology and scanner realism in ``subct.synth`` (:mod:`subct.synth.pathology`).

Each effect is drawn with certainty on a real whole-head label map and compared with the
clean sample of the same seed (all other randomness off, so the two differ only by the
effect): where the image changed, how much, and whether the labels follow SynthSeg's
rule (anatomy underneath, except where CSF replaces tissue)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from subct.synth import SynthConfig, SynthGenerator
from subct.synth.config import PathologyConfig, ScannerConfig
from subct.synth.label_maps import LabelBank

SHAPE = (96, 96, 96)
VENTRICLES, PALLIDUM = (4, 43), (13, 52)
WHITE_MATTER, CORTEX, CSF = (2, 41), (3, 42), (24,)


@pytest.fixture(scope="module")
def bank(shared_data: Path) -> LabelBank:
    return LabelBank([shared_data / "label_maps" / "synthseg" / "training_seg_01.nii.gz"])


def _pair(bank: LabelBank, pathology: PathologyConfig | None = None,
          scanner: ScannerConfig | None = None, seed: int = 5) -> tuple:  # type: ignore[type-arg]
    """(clean, changed) samples of one seed; only the effect differs."""
    clean_config = SynthConfig(output_shape=SHAPE).without_randomness()
    changed_config = clean_config.model_copy(deep=True)
    if pathology is not None:
        changed_config.pathology = pathology
    if scanner is not None:
        changed_config.scanner = scanner
    clean = SynthGenerator(bank, clean_config, seed=seed).sample(0)
    changed = SynthGenerator(bank, changed_config, seed=seed).sample(0)
    return clean, changed


def _in(labels: torch.Tensor, group: tuple[int, ...]) -> torch.Tensor:
    return torch.isin(labels, torch.tensor(group, dtype=labels.dtype))


def test_infarct_core_becomes_csf_and_the_rest_keeps_its_anatomy(bank: LabelBank) -> None:
    config = PathologyConfig().only(["infarct"])
    config.infarct = config.infarct.model_copy(update={"hu": (0.0, 8.0), "count": (3, 3),
                                                       "radius_mm": (8.0, 12.0)})
    clean, sick = _pair(bank, config)
    changed = (sick.hu - clean.hu).abs() > 0.5
    assert changed.sum() > 500
    assert float(sick.hu[changed].median()) < 12.0  # CSF-like, not brain (25-45 HU)
    assert bool((clean.labels_fs[changed] != 0).all())  # inside the head
    relabelled = sick.target != clean.target
    assert bool((sick.target[relabelled] == 0).all())  # destroyed structures -> background
    assert bool((relabelled & ~changed).sum() == 0)  # only inside the lesion
    assert any(kind.startswith("infarct") for kind in sick.parameters["pathology"])


def test_white_matter_hypodensity_only_darkens_white_matter(bank: LabelBank) -> None:
    clean, sick = _pair(bank, PathologyConfig().only(["white_matter_hypodensity"]))
    difference = sick.hu - clean.hu
    changed = difference.abs() > 0.5
    assert changed.sum() > 1000
    assert bool(_in(clean.labels_fs[changed], WHITE_MATTER).all())
    assert float(difference[changed].max()) >= -10.5 and float(difference[changed].max()) <= -3
    assert torch.equal(sick.target, clean.target)


def test_ventricle_enlargement_grows_the_ventricles_into_white_matter(bank: LabelBank) -> None:
    clean, sick = _pair(bank, PathologyConfig().only(["ventricle_enlargement"]))
    before, after = _in(clean.labels_fs, VENTRICLES), _in(sick.labels_fs, VENTRICLES)
    assert after.sum() > 1.1 * before.sum() and bool((before & ~after).sum() == 0)
    grown = after & ~before
    assert bool(_in(clean.labels_fs[grown], WHITE_MATTER + CORTEX).all())
    other_targets = (clean.target > 0) & ~before
    assert torch.equal(sick.target[other_targets], clean.target[other_targets])


def test_sulcal_widening_turns_cortex_into_csf(bank: LabelBank) -> None:
    clean, sick = _pair(bank, PathologyConfig().only(["sulcal_widening"]))
    assert _in(sick.labels_fs, CSF).sum() > _in(clean.labels_fs, CSF).sum()
    assert _in(sick.labels_fs, CORTEX).sum() < _in(clean.labels_fs, CORTEX).sum()
    assert torch.equal(sick.target, clean.target)  # no target structure touched


def test_haemorrhage_is_dense_and_labelled_as_the_anatomy_underneath(bank: LabelBank) -> None:
    clean, sick = _pair(bank, PathologyConfig().only(["haemorrhage"]))
    changed = (sick.hu - clean.hu).abs() > 0.5
    assert changed.sum() > 200
    assert float((sick.hu[changed] > 40).float().mean()) > 0.5  # acute blood 50-90 HU
    assert torch.equal(sick.target, clean.target)
    kinds = set(sick.parameters["pathology"])
    assert {"haemorrhage_intraparenchymal", "haemorrhage_intraventricular",
            "haemorrhage_subdural", "haemorrhage_subarachnoid"} <= kinds


def test_calcified_pallidum_stays_pallidum(bank: LabelBank) -> None:
    clean, sick = _pair(bank, PathologyConfig().only(["calcification"]))
    pallidum = _in(clean.labels_fs, PALLIDUM)
    assert int(((sick.hu > 100) & pallidum).sum()) > 10
    assert torch.equal(sick.target, clean.target)
    assert {"calcification_pallidum", "calcification_choroid_plexus",
            "calcification_pineal", "calcification_falx"} <= set(sick.parameters["pathology"])


def test_scanner_noise_kernel_streaks_and_partial_field_of_view(bank: LabelBank) -> None:
    scanner = ScannerConfig(noise_probability=1.0, noise_std_hu=(12.0, 12.0),
                            partial_fov_probability=1.0, partial_fov_mm=(20, 20),
                            streak_probability=1.0)
    clean, noisy = _pair(bank, scanner=scanner)
    cut = noisy.hu == -1024.0
    slabs = (cut.reshape(-1, SHAPE[2]).all(dim=0))
    assert int(slabs.sum()) == 20 and bool(slabs[:20].all() or slabs[-20:].all())
    assert bool((noisy.target[cut] == 0).all())  # nothing is labelled outside the FOV
    inside = ~cut & (clean.labels_fs == 2)
    assert float((noisy.hu - clean.hu)[inside].std()) > 8.0
    assert len(noisy.parameters["scanner"]) == 3


def test_pitch_widens_the_rotation_about_x() -> None:
    from subct.synth.config import SpatialConfig
    from subct.synth.spatial import random_affine_matrix

    rng = np.random.default_rng(0)
    tilted = SpatialConfig(rotation_deg=0.0, scaling=0.0, shearing=0.0, pitch_extra_deg=25.0)
    angles = [np.degrees(np.arctan2(m[2, 1], m[1, 1]))
              for m in (random_affine_matrix(tilted, rng) for _ in range(200))]
    assert max(np.abs(angles)) > 20.0 and max(np.abs(angles)) <= 25.0


def test_only_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="unknown pathology"):
        PathologyConfig().only(["tumour"])


def test_cli_pathology_mosaic(shared_data: Path, tmp_path: Path) -> None:
    from subct.cli import main

    label_map = shared_data / "label_maps" / "synthseg" / "training_seg_02.nii.gz"
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(label_map), "-o", str(tmp_path / "out"), "-n", "1", "--seed", "1",
              "--shape", "64", "64", "64", "--pathology", "infarct,calcification", "--scanner"])
    assert exit_info.value.code == 0
    assert (tmp_path / "out" / "synth_mosaic.png").stat().st_size > 5_000
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(label_map), "-o", str(tmp_path / "bad"), "--pathology", "tumour"])
    assert exit_info.value.code == 2


def test_lesion_mask_marks_exactly_what_the_lesions_changed(bank: LabelBank) -> None:
    config = PathologyConfig().only(["infarct", "haemorrhage"])
    clean, sick = _pair(bank, config)
    assert clean.lesion_mask is None  # no lesion drawn: no mask
    assert sick.lesion_mask is not None and sick.lesion_mask.shape == sick.hu.shape
    changed = (sick.hu - clean.hu).abs() > 0.5
    assert int(sick.lesion_mask.sum()) > 500
    assert bool((changed & ~sick.lesion_mask).sum() == 0)  # every change is in the mask
