"""The label bank's disk cache: the same bank back, a new one when a map or the code
changes, no cache for in-memory volumes, and a bank even where the cache is unusable."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from subct.io.readers import load_volume
from subct.synth import bank_cache
from subct.synth.label_maps import LabelBank


def _same_bank(first: LabelBank, second: LabelBank) -> None:
    assert np.array_equal(first.label_values, second.label_values)
    if first.map_probabilities is None:
        assert second.map_probabilities is None
    else:
        assert second.map_probabilities is not None
        assert np.allclose(first.map_probabilities, second.map_probabilities)
    for a, b in zip(first.maps, second.maps, strict=True):
        assert a.indices.dtype == b.indices.dtype and torch.equal(a.indices, b.indices)
        assert np.array_equal(a.affine, b.affine) and a.name == b.name
        assert np.array_equal(a.target_centroid_mm, b.target_centroid_mm)
        assert np.array_equal(a.head_centroid_mm, b.head_centroid_mm)
        assert a.unlabelled == b.unlabelled


@pytest.fixture()
def maps(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A whole head and a copy of one paper mask (which a test may rewrite)."""
    head = shared_data / "label_maps" / "synthseg" / "training_seg_01.nii.gz"
    paper = tmp_path / "1BA001.nii.gz"
    shutil.copy(shared_data / "label_maps" / "ct_subcortical_paper" / "1BA001.nii.gz", paper)
    return head, paper


def test_a_cached_bank_comes_back_identical(maps: tuple[Path, Path], tmp_path: Path) -> None:
    head, paper = maps
    cache = tmp_path / "banks"
    built = LabelBank([head, paper], background=[head], subcortical_share=0.5, cache=cache)
    folders = list(cache.iterdir())
    assert len(folders) == 1 and (folders[0] / "bank.json").is_file()
    plain = LabelBank([head, paper], background=[head], subcortical_share=0.5)
    _same_bank(plain, built)
    # the key names the files themselves (a copy elsewhere is another bank)
    head_copy = tmp_path / "head.nii.gz"
    shutil.copy(head, head_copy)
    assert bank_cache.bank_key([head, paper], [head]) != bank_cache.bank_key(
        [head_copy, paper], [head_copy])
    cached = LabelBank([head, paper], background=[head], subcortical_share=0.5, cache=cache)
    _same_bank(plain, cached)
    assert len(list(cache.iterdir())) == 1


def test_a_changed_map_or_unreadable_cache_builds_again(maps: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    head, paper = maps
    cache = tmp_path / "banks"
    before = LabelBank([head, paper], background=[head], cache=cache)
    key = bank_cache.bank_key([head, paper], [head])
    image = nib.load(paper)
    labels = np.asarray(image.dataobj).copy()
    labels[labels == labels.max()] = 0  # one class gone
    nib.save(nib.Nifti1Image(labels, image.affine), paper)
    assert bank_cache.bank_key([head, paper], [head]) != key
    after = LabelBank([head, paper], background=[head], cache=cache)
    assert not torch.equal(before.maps[1].indices, after.maps[1].indices) or not \
        np.array_equal(before.label_values, after.label_values)
    assert len(list(cache.iterdir())) == 2
    # a damaged entry is rebuilt, not trusted
    folder = cache / str(bank_cache.bank_key([head, paper], [head]))
    (folder / "map0001.zlib").write_bytes(b"not zlib")
    assert bank_cache.load_bank(folder) is None
    _same_bank(after, LabelBank([head, paper], background=[head], cache=cache))


def test_volumes_in_memory_are_not_cached_and_a_bad_cache_is_no_error(
        maps: tuple[Path, Path], tmp_path: Path) -> None:
    head, paper = maps
    cache = tmp_path / "banks"
    LabelBank([load_volume(head)], cache=cache)
    assert not cache.exists()
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    bank = LabelBank([head], cache=blocked / "banks")  # cannot be written: built anyway
    assert len(bank) == 1 and bank.maps[0].indices.numel() > 0
