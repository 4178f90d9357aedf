"""LabelBank over partially labelled maps (the paper's CT masks) and several heads.

The real CT-space masks of ``../shared/data/label_maps/ct_subcortical_paper`` annotate
seven merged classes; after splitting into left/right FreeSurfer IDs they lack the
amygdalae (18/54) and accumbens areas (26/58), whose voxels must then be left out of the
loss rather than taught as background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from subct.errors import SubctInputError
from subct.labels.schemes import labels_to_indices
from subct.synth import SynthConfig, SynthGenerator
from subct.synth.label_maps import LabelBank


@pytest.fixture(scope="module")
def bank(shared_data: Path) -> LabelBank:
    heads = [shared_data / "label_maps" / "synthseg" / f"training_seg_0{k}.nii.gz"
             for k in (1, 2)]
    papers = [shared_data / "label_maps" / "ct_subcortical_paper" / name
              for name in ("1BA001.nii.gz", "1BA005.nii.gz")]
    return LabelBank([heads[0], *papers], background=heads, subcortical_share=0.8)


def test_partial_maps_record_their_unlabelled_structures(bank: LabelBank) -> None:
    assert bank.maps[0].unlabelled == ()
    for stored in bank.maps[1:]:
        assert set(stored.unlabelled) == {18, 54, 26, 58}
        present = set(bank.label_values[np.unique(stored.indices.numpy())].tolist())
        assert {10, 49, 12, 51, 16} <= present
    # the two paper maps went into different heads (k mod 2), so their surroundings differ
    assert bank.maps[1].indices.shape != bank.maps[2].indices.shape


def test_draw_gives_the_subcortical_maps_their_share(bank: LabelBank) -> None:
    assert bank.map_probabilities is not None
    assert np.allclose(bank.map_probabilities, [0.2, 0.4, 0.4])
    rng = np.random.default_rng(0)
    draws = np.bincount([bank.draw(rng) for _ in range(4000)], minlength=3) / 4000
    assert abs(draws[0] - 0.2) < 0.03 and abs(draws[1] - 0.4) < 0.03


def test_share_outside_zero_one_is_refused(shared_data: Path) -> None:
    heads = shared_data / "label_maps" / "synthseg" / "training_seg_01.nii.gz"
    paper = shared_data / "label_maps" / "ct_subcortical_paper" / "1BA001.nii.gz"
    with pytest.raises(SubctInputError, match="share"):
        LabelBank([heads, paper], background=heads, subcortical_share=1.5)


def test_samples_of_partial_maps_mark_missing_classes_unlabelled(bank: LabelBank) -> None:
    generator = SynthGenerator(bank, SynthConfig(output_shape=(48, 48, 48)), seed=1)
    whole = generator.sample(map_index=0)
    assert whole.labelled is not None and bool(whole.labelled.all())
    partial = generator.sample(map_index=1)
    assert partial.labelled is not None
    missing = labels_to_indices(np.asarray([18, 54, 26, 58]), generator.config.target_scheme)
    assert not partial.labelled[torch.as_tensor(missing)].any()
    assert int(partial.labelled.sum()) == partial.labelled.numel() - 4
    # no voxel of an unlabelled structure is taught as that structure
    assert not np.isin(partial.target.numpy(), missing).any()
