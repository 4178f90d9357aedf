"""MeshNet port: layer list → network, weights load, and accuracy on the real fsaverage T1.

Dice floor. The port runs the real brainchop ``model18cls`` network on FreeSurfer's
fsaverage T1 and compares it with fsaverage's own ``aseg.mgz``. Measured with this port:
mean Dice 0.78 over the 9 left/right-merged structures (0.66 accumbens … 0.90
brainstem; ``benchmarks/bench_fsaverage_ensemble.py``). A mistake in the port (wrong
axis order, no percentile scaling, wrong activation, misordered layers) collapses the
overlap to near zero, while fsaverage being an average brain, and aseg being another
method's output, keeps even a faithful port below ~0.85. Floors: mean ≥ 0.70 over the 17
left/right-split structures (also checks the mid-sagittal split) and ≥ 0.45 for each one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from subct.errors import SubctInputError
from subct.image.volume import Volume
from subct.io.readers import load_volume
from subct.labels.convert import convert_to_canonical
from subct.labels.schemes import CANONICAL_LABELS
from subct.transfer.meshnet import MeshNetRunConfig, MeshNetSegmenter, conform, percentile_scale
from subct.transfer.meshnet_network import (
    MESHNET_MODEL_FOLDERS,
    MeshNet,
    load_meshnet,
    read_model_spec,
)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


def test_layer_list_builds_the_documented_network(tmp_path: Path) -> None:
    spec_file = tmp_path / "model.json"
    spec_file.write_text(
        '{"bnorm": false, "elu": true, "dropout_p": 0, "bias": true, "layers": ['
        '{"in_channels": 1, "out_channels": 4, "kernel_size": 3, "padding": 1, "dilation": 1},'
        '{"in_channels": 4, "out_channels": 4, "kernel_size": 3, "padding": 2, "dilation": 2},'
        '{"in_channels": 4, "out_channels": 3, "kernel_size": 1, "padding": 0, "dilation": 1}]}'
    )
    spec = read_model_spec(spec_file)
    assert spec.n_classes == 3 and spec.receptive_halo_voxels == 3
    network = MeshNet(spec)
    kinds = [type(m).__name__ for m in network.model]
    assert kinds == ["Conv3d", "ELU", "Conv3d", "ELU", "Conv3d"]
    assert network.model[2].dilation == (2, 2, 2)
    out = network(torch.zeros(1, 1, 9, 9, 9))
    assert out.shape == (1, 3, 9, 9, 9)


def test_bad_model_json_is_reported(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text('{"layers": [{"in_channels": 1}]}')
    with pytest.raises(SubctInputError, match="layer list"):
        read_model_spec(tmp_path / "model.json")
    (tmp_path / "model.json").write_text(
        '{"layers": [{"in_channels": 1, "out_channels": 4, "kernel_size": 3, "padding": 1},'
        '{"in_channels": 5, "out_channels": 2, "kernel_size": 1, "padding": 0}]}'
    )
    with pytest.raises(SubctInputError, match="do not chain"):
        read_model_spec(tmp_path / "model.json")


@pytest.mark.shared_data
@pytest.mark.parametrize("folder", sorted(MESHNET_MODEL_FOLDERS.values()))
def test_real_models_load_strictly(shared_data: Path, folder: str) -> None:
    network = load_meshnet(shared_data / "mri_models" / "meshnet" / folder)
    assert network.spec.n_classes in (18, 104)
    # Σ dilations: 1+2+4+8+16+8+4+2+1 = 46 (18-class), 1+2+2+4+4+8+8+16 = 45 (104-class)
    assert network.spec.receptive_halo_voxels == (45 if "104" in folder else 46)


def test_percentile_scale_and_conform_geometry() -> None:
    values = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    scaled = percentile_scale(values)
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    assert np.isclose(scaled.ravel()[500], (500 - 19.98) / (979.02 - 19.98), atol=1e-4)
    # A 2 mm RAS volume is resampled onto 256³ 1 mm LIA centred on the same point.
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-30.0, -20.0, 10.0)
    small = Volume(np.ones((30, 30, 30), dtype=np.float32), affine)
    conformed = conform(small)
    assert conformed.shape == (256, 256, 256) and conformed.orientation == "LIA"
    centre_in = affine[:3, :3] @ np.full(3, 14.5) + affine[:3, 3]
    centre_out = conformed.affine[:3, :3] @ np.full(3, 128.0) + conformed.affine[:3, 3]
    assert np.allclose(centre_in, centre_out)
    assert conformed.array[128, 128, 128] == pytest.approx(1.0)
    assert conformed.array[0, 0, 0] == 0.0


@pytest.fixture(scope="session")
def fsaverage_meshnet18(shared_data: Path) -> tuple[Volume, np.ndarray]:
    """meshnet-18 labels of the fsaverage T1 around the subcortical structures (~30 s)."""
    t1 = load_volume(shared_data / "mri" / "fsaverage" / "T1.mgz")
    aseg = load_volume(shared_data / "mri" / "fsaverage" / "aseg.mgz")
    reference = convert_to_canonical(aseg.array.astype(np.int32), "aseg")
    # Label only the box around the 17 structures (+ 3 voxels): exact inside, 2× faster.
    found = np.nonzero(reference)
    region = tuple(slice(int(i.min()) - 3, int(i.max()) + 4) for i in found)
    segmenter = MeshNetSegmenter(
        name="meshnet-18", model_dir=shared_data / "mri_models" / "meshnet" / "model18cls",
        run=MeshNetRunConfig(region=region),
    )
    labels = segmenter.segment(t1)
    assert segmenter.last_plane is not None and segmenter.last_plane.method == "mirror"
    return labels, reference


@pytest.mark.shared_data
def test_meshnet18_port_matches_fsaverage_aseg(
    fsaverage_meshnet18: tuple[Volume, np.ndarray],
) -> None:
    labels, reference = fsaverage_meshnet18
    assert labels.array.dtype == np.int16 and labels.shape == reference.shape
    assert set(np.unique(labels.array)) <= {0, *CANONICAL_LABELS}
    dice = {label: _dice(labels.array == label, reference == label)
            for label in CANONICAL_LABELS}
    assert np.mean(list(dice.values())) >= 0.70, dice
    assert min(dice.values()) >= 0.45, dice


@pytest.mark.shared_data
def test_meshnet_left_right_split_is_on_the_correct_side(
    fsaverage_meshnet18: tuple[Volume, np.ndarray],
) -> None:
    labels, _ = fsaverage_meshnet18
    # fsaverage is LIA: voxel axis 0 runs to the Left, x_world = 128 - i.
    left_thalamus_i = np.nonzero(labels.array == 10)[0].mean()
    right_thalamus_i = np.nonzero(labels.array == 49)[0].mean()
    assert left_thalamus_i > 128 > right_thalamus_i


def test_labels_come_back_onto_the_mri_grid() -> None:
    from subct.transfer.meshnet import classes_to_mri_grid

    # A 2 mm RAS "MRI": conformed to 256³ 1 mm LIA, then labels go back by nearest
    # neighbour. Label = which octant of world space a voxel is in, so exact except
    # on the planes where a 1 mm and a 2 mm voxel straddle the boundary.
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-39.0, -29.0, -19.0)
    mri = Volume(np.ones((40, 30, 20), dtype=np.float32), affine)
    conformed = conform(mri)

    def octant(volume_affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        i, j, k = np.ogrid[: shape[0], : shape[1], : shape[2]]
        result = np.zeros(shape, dtype=np.int16)
        for axis, bit in ((0, 1), (1, 2), (2, 4)):
            row = volume_affine[axis]
            world = row[0] * i + row[1] * j + row[2] * k + row[3]
            result += np.where(world > 0.5, bit, 0).astype(np.int16)
        return result

    back = classes_to_mri_grid(octant(conformed.affine, conformed.shape), conformed, mri)
    assert back.shape == mri.shape
    assert np.array_equal(back, octant(mri.affine, mri.shape))
