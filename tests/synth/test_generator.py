"""Tests of the synthetic training-image engine (subct.synth) on small volumes.

Most tests use a small whole-head phantom (64³, 1 mm) built here with real label IDs:
scalp, skull, CSF, white matter and cortex split at the midline, asymmetric left/right
deep structures (so a flip is detectable), eyes and sinuses. One test per topic runs
on a real SynthSeg training map from ``../shared/data``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subct.image.volume import Volume
from subct.io.readers import load_volume
from subct.io.writers import save_volume
from subct.labels.schemes import LR_SWAP, labels_to_indices
from subct.synth import SynthConfig, SyntheticDataset, SynthGenerator
from subct.synth.config import ResolutionConfig, SpatialConfig
from subct.synth.ct import ParallelBeamProjector, ct_noise_hu
from subct.synth.resolution import AcquisitionResolution, simulate_resolution
from subct.synth.spatial import jacobian_determinant, random_affine_matrix, random_displacement_mm
from subct.synth.tissues import CANCELLOUS_LABEL, left_right_partner

SIDE = 64
BRAIN_LABELS = (2, 3, 41, 42, 4, 43, 10, 49, 12, 51, 16, 24)


def make_phantom() -> Volume:
    """A 64³ 1 mm whole-head label phantom in RAS (x: left → right), FreeSurfer IDs."""
    grid = np.mgrid[0:SIDE, 0:SIDE, 0:SIDE].astype(np.float64) - (SIDE - 1) / 2.0
    x, y, z = grid
    radius = np.sqrt(x**2 + (y / 1.15) ** 2 + z**2)
    labels = np.zeros((SIDE,) * 3, dtype=np.int16)
    labels[radius < 30] = 511  # scalp
    labels[radius < 28] = 515  # skull (3-4 voxels: cancellous inside after the split)
    labels[radius < 24.5] = 24  # CSF
    labels[(radius < 23) & (x < 0)] = 3  # left cortex
    labels[(radius < 23) & (x >= 0)] = 42
    labels[(radius < 20) & (x < 0)] = 2  # left white matter
    labels[(radius < 20) & (x >= 0)] = 41

    def ball(cx: float, cy: float, cz: float, r: float) -> np.ndarray:
        return np.asarray((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 < r**2)

    labels[ball(-9, 4, 3, 6)] = 12  # left putamen: larger than the right one
    labels[ball(9, 4, 3, 4)] = 51
    labels[ball(-4, -6, 2, 4)] = 10  # thalami
    labels[ball(4, -6, 2, 4)] = 49
    labels[ball(-4, 6, 9, 3)] = 4  # lateral ventricles
    labels[ball(4, 6, 9, 3)] = 43
    labels[ball(0, -6, -12, 4)] = 16  # brainstem
    labels[ball(-12, 31, -6, 4)] = 506  # eyes
    labels[ball(12, 31, -6, 4)] = 506
    labels[ball(0, 26, -16, 4)] = 516  # sinus (air)
    affine = np.eye(4)
    affine[:3, 3] = -(SIDE - 1) / 2.0
    return Volume(labels, affine, description="phantom")


@pytest.fixture(scope="module")
def phantom() -> Volume:
    return make_phantom()


def quiet(config: SynthConfig) -> SynthConfig:
    """Undeformed, noise-free, full-resolution version of ``config``."""
    return config.without_randomness()


def test_config_from_dict_round_trip_and_rejects_unknown_keys() -> None:
    config = SynthConfig.from_dict(
        {"mode": "generic", "output_shape": [96, 96, 80], "spatial": {"rotation_deg": 5},
         "ct": {"noise": {"probability": 0.3}}}
    )
    assert config.output_shape == (96, 96, 80)
    assert config.spatial.rotation_deg == 5 and config.spatial.scaling == 0.2
    assert SynthConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError):
        SynthConfig.from_dict({"spatial": {"rotaton_deg": 5}})
    with pytest.raises(ValueError):
        SynthConfig.from_dict({"output_shape": [4, 4, 4]})


def test_sample_shapes_types_and_target_scheme(phantom: Volume) -> None:
    config = SynthConfig(output_shape=(48, 40, 32), target_scheme="merged")
    sample = SynthGenerator([phantom], config, seed=3).sample()
    assert sample.image.shape == (1, 48, 40, 32) and sample.image.dtype == torch.float32
    assert sample.target.shape == (48, 40, 32) and sample.target.dtype == torch.int64
    assert sample.labels_fs.dtype == torch.int16 and sample.hu is not None
    assert float(sample.image.min()) >= 0.0 and float(sample.image.max()) <= 1.0
    expected = labels_to_indices(sample.labels_fs.numpy(), "merged")
    assert np.array_equal(sample.target.numpy(), expected)
    assert int(sample.target.max()) <= 9


def test_undeformed_sample_overlays_the_input_map(phantom: Volume) -> None:
    """With no augmentation, the output grid (its affine) reads the input map exactly."""
    config = quiet(SynthConfig(output_shape=(40, 40, 40)))
    sample = SynthGenerator([phantom], config, seed=0).sample()
    labels = sample.labels_fs.numpy()
    voxel_of_world = np.linalg.inv(phantom.affine) @ sample.affine
    index = np.indices(labels.shape).reshape(3, -1)
    source = np.rint(voxel_of_world[:3, :3] @ index + voxel_of_world[:3, 3:4]).astype(int)
    expected = phantom.array[source[0], source[1], source[2]].reshape(labels.shape)
    expected = np.where(expected == 515, labels, expected)  # skull split into 515/599
    assert np.array_equal(labels, expected)
    assert (labels == CANCELLOUS_LABEL).any()


def test_per_axis_translation_moves_the_crop_centre_within_its_range(phantom: Volume) -> None:
    """``translation_mm=(bx, by, bz)``: crop centres spread over ±b per axis, no further."""
    config = quiet(SynthConfig(output_shape=(16, 16, 16)))
    config.spatial = SpatialConfig(rotation_deg=0, scaling=0, shearing=0,
                                   translation_mm=(0.0, 12.0, 3.0), nonlinear_std_max_mm=0,
                                   flip_probability=0)
    generator = SynthGenerator([phantom], config, seed=5)
    anchor = generator.bank.maps[0].target_centroid_mm
    offsets = np.array([np.asarray(generator.sample().parameters["centre_mm"]) - anchor
                        for _ in range(40)])
    assert np.allclose(offsets[:, 0], 0.0)
    assert np.abs(offsets[:, 1]).max() <= 12.0 and np.abs(offsets[:, 1]).max() > 8.0
    assert np.abs(offsets[:, 2]).max() <= 3.0 and np.abs(offsets[:, 2]).max() > 1.5
    assert SpatialConfig(translation_mm=7.0).translation_range_mm == (7.0, 7.0, 7.0)
    with pytest.raises(ValueError, match=">= 0 mm"):
        SpatialConfig(translation_mm=(1.0, -1.0, 0.0))


def test_ct_image_is_aligned_with_labels_and_sampled_means(phantom: Volume) -> None:
    config = quiet(SynthConfig(output_shape=(56, 56, 56)))
    sample = SynthGenerator([phantom], config, seed=1).sample()
    assert sample.hu is not None
    hu, labels = sample.hu.numpy(), sample.labels_fs.numpy()
    means = sample.parameters["label_means"]
    for label in (2, 41, 3, 42, 12, 51, 10, 49, 16, 24, 506, 511):
        region = labels == label
        assert region.sum() > 50
        assert abs(hu[region].mean() - means[label]) < 1.5, label


def test_generic_image_is_aligned_with_sampled_gmm_means(phantom: Volume) -> None:
    config = quiet(SynthConfig(mode="generic", output_shape=(56, 56, 56)))
    sample = SynthGenerator([phantom], config, seed=2).sample()
    assert sample.hu is None
    image, labels = sample.image[0].numpy(), sample.labels_fs.numpy()
    drawn, measured = [], []
    for label in (0, 2, 3, 12, 10, 16, 24, 511, 515, 506):
        region = labels == label
        drawn.append(sample.parameters["label_means"][label])
        measured.append(image[region].mean())
    # min-max rescaling is linear: measured = a·drawn + b for every label
    slope, intercept = np.polyfit(drawn, measured, 1)
    residual = np.abs(np.asarray(measured) - (slope * np.asarray(drawn) + intercept))
    assert slope > 0 and residual.max() < 0.02


def test_left_right_flip_mirrors_and_swaps_labels(phantom: Volume) -> None:
    base = SynthConfig(output_shape=(48, 48, 48))
    # random affine on; no non-linear field, so that both draws are exact mirror images
    straight = SynthGenerator([phantom], base.model_copy(update={"spatial": SpatialConfig(
        flip_probability=0.0, nonlinear_std_max_mm=0.0)}), seed=5).sample()
    flipped = SynthGenerator([phantom], base.model_copy(update={"spatial": SpatialConfig(
        flip_probability=1.0, nonlinear_std_max_mm=0.0)}), seed=5).sample()
    swapped = np.vectorize(left_right_partner)(straight.labels_fs.numpy()[::-1])
    assert np.array_equal(flipped.labels_fs.numpy(), swapped)
    # the big left putamen (12) is mirrored to the right and becomes right putamen (51)
    before, after = straight.labels_fs.numpy(), flipped.labels_fs.numpy()
    assert (after == 51).sum() == (before == 12).sum() > (before == 51).sum()
    centre = (48 - 1) / 2.0
    assert np.argwhere(after == 51)[:, 0].mean() > centre > np.argwhere(after == 12)[:, 0].mean()
    for left, right in ((10, 49), (4, 43), (2, 41)):
        assert (after == left).sum() == (before == right).sum()
    assert LR_SWAP[12] == 51
    # the image follows the swapped labels: each region shows its own label's intensity
    config = quiet(base)
    config.spatial = SpatialConfig(flip_probability=1.0, nonlinear_std_max_mm=0.0)
    config.ct.label_jitter_hu = 20.0  # left and right means far apart
    mirrored = SynthGenerator([phantom], config, seed=8).sample()
    assert mirrored.parameters["flip"] and mirrored.hu is not None
    labels, hu = mirrored.labels_fs.numpy(), mirrored.hu.numpy()
    for label in (12, 51, 10, 49, 2, 41):
        assert abs(hu[labels == label].mean() - mirrored.parameters["label_means"][label]) < 1.5


def test_ct_priors_put_tissues_in_their_hu_ranges(shared_data) -> None:
    label_map = shared_data / "label_maps" / "synthseg" / "training_seg_01.nii.gz"
    config = quiet(SynthConfig(output_shape=(96, 96, 96), drop_structure_contrast_probability=0))
    config.spatial = SpatialConfig(
        rotation_deg=0, scaling=0, shearing=0, translation_mm=0, nonlinear_std_max_mm=0,
        flip_probability=0, anchor="head")
    generator = SynthGenerator([label_map], config, seed=7)
    for _ in range(2):
        sample = generator.sample()
        assert sample.hu is not None
        hu, labels = sample.hu.numpy(), sample.labels_fs.numpy()
        brain = np.isin(labels, [2, 3, 41, 42, 10, 11, 12, 13, 49, 50, 51, 52, 16, 17, 53])
        low, high = np.percentile(hu[brain], [0.5, 99.5])
        assert low >= 0.0 and high <= 80.0
        bone = np.isin(labels, [515, CANCELLOUS_LABEL])
        assert bone.sum() > 1000 and np.percentile(hu[bone], 1) > 300.0
        air = labels == 0
        assert abs(np.median(hu[air]) + 1000.0) < 20.0


def test_same_seed_same_sample_and_different_seed_differs(phantom: Volume) -> None:
    config = SynthConfig(output_shape=(32, 32, 32))
    first = SynthGenerator([phantom], config, seed=11).sample()
    second = SynthGenerator([phantom], config, seed=11).sample()
    other = SynthGenerator([phantom], config, seed=12).sample()
    assert torch.equal(first.image, second.image) and torch.equal(first.target, second.target)
    assert not torch.equal(first.image, other.image)


def test_deformation_is_invertible_for_the_default_bounds() -> None:
    """Largest SVF std of the default bounds at the default 160³ crop: det J > 0."""
    config = SpatialConfig()
    shape = SynthConfig().output_shape
    for seed in range(3):
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        displacement = random_displacement_mm(
            shape, config, rng, generator, torch.device("cpu"),
            std_mm=config.nonlinear_std_max_mm)
        assert displacement is not None and displacement.shape == (3, *shape)
        assert float(displacement.abs().max()) > 1.0  # it does deform
        determinant = jacobian_determinant(displacement)
        assert float(determinant.min()) > 0.0
        assert np.linalg.det(random_affine_matrix(config, rng)) > 0.0


def test_resolution_simulation_blurs_only_the_acquisition_axis() -> None:
    volume = torch.zeros(40, 40, 40)
    volume[:, :, 20:] = 1.0
    volume[20:, :, :] += 1.0
    low = simulate_resolution(volume, AcquisitionResolution(2, 5.0, 5.0, 1.0))
    # the edge across axis 2 now spans several voxels; the one across axis 0 is untouched
    profile_z = low[5, 5, :].numpy()
    assert ((profile_z > 0.05) & (profile_z < 0.95)).sum() >= 4
    assert torch.allclose(low[:, 5, 5] - low[:, 5, 5].min(), volume[:, 5, 5], atol=1e-5)


def test_resolution_simulation_lowers_resolution_in_samples(phantom: Volume) -> None:
    axial = ResolutionConfig(probability=1.0, spacing_range_mm=(5.0, 5.0),
                             axis_probabilities=(0.0, 0.0, 1.0))
    config = quiet(SynthConfig(output_shape=(48, 48, 48)))
    sharp = SynthGenerator([phantom], config, seed=4).sample()
    config.resolution = axial
    thick = SynthGenerator([phantom], config, seed=4).sample()

    def roughness(hu: torch.Tensor | None, axis: int) -> float:
        """Mean squared voxel-to-voxel HU difference: high-frequency energy along ``axis``."""
        assert hu is not None
        return float((hu.diff(dim=axis) ** 2).mean())

    assert roughness(sharp.hu, 2) / roughness(sharp.hu, 0) > 0.7
    assert roughness(thick.hu, 2) / roughness(thick.hu, 0) < 0.4
    assert thick.parameters["acquisition"]["axis"] == 2


def test_projector_reconstructs_and_noise_falls_with_dose() -> None:
    projector = ParallelBeamProjector(48, 48, 60, torch.device("cpu"))
    y, x = np.mgrid[:48, :48] - 23.5
    phantom = torch.tensor(((x / 20) ** 2 + (y / 17) ** 2 < 1).astype(np.float32))[None]
    reconstruction = projector.filtered_back_projection(projector.project(phantom))[0]
    interior = torch.tensor((x / 16) ** 2 + (y / 13) ** 2 < 1)
    assert float((reconstruction[interior] - 1.0).abs().mean()) < 0.05
    hu = torch.where(phantom > 0, 30.0, -1000.0).repeat(6, 1, 1)
    config = SynthConfig().ct.noise
    generator = torch.Generator().manual_seed(0)
    low_dose = ct_noise_hu(hu, 1e5, config, generator)[:, interior].std()
    high_dose = ct_noise_hu(hu, 4e5, config, generator)[:, interior].std()
    assert 1.6 < float(low_dose / high_dose) < 2.5  # quantum noise ∝ 1/sqrt(dose)


def test_ct_noise_in_samples_is_reproducible_and_adds_noise(phantom: Volume) -> None:
    config = quiet(SynthConfig(output_shape=(32, 32, 32)))
    clean = SynthGenerator([phantom], config, seed=9).sample()
    config.ct.noise.probability = 1.0
    noisy = SynthGenerator([phantom], config, seed=9).sample()
    again = SynthGenerator([phantom], config, seed=9).sample()
    assert noisy.parameters["ct_noise"] and torch.equal(noisy.image, again.image)
    assert clean.hu is not None and noisy.hu is not None
    brain = torch.isin(clean.labels_fs, torch.tensor([2, 41]))
    assert float(noisy.hu[brain].std()) > 1.5 * float(clean.hu[brain].std())


def test_dataset_splits_work_across_workers_reproducibly(phantom: Volume) -> None:
    config = SynthConfig(output_shape=(24, 24, 24))
    dataset = SyntheticDataset([phantom], config, seed=3, samples_per_epoch=5)

    def run() -> list[torch.Tensor]:
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)
        return [item["image"] for item in loader]

    first, second = run(), run()
    assert len(first) == 5 and first[0].shape == (1, 24, 24, 24)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], first[1])  # the two workers draw different samples
    dataset.set_epoch(1)
    assert not torch.equal(run()[0], first[0])
    in_process = SyntheticDataset([phantom], config, seed=3, samples_per_epoch=1)
    single, again = next(iter(in_process)), next(iter(in_process))
    assert single["label"].dtype == torch.int64
    assert not torch.equal(single["image"], again["image"])  # each pass draws anew


def test_subcortical_only_map_needs_a_background(phantom: Volume) -> None:
    from subct.errors import SubctInputError

    only_targets = phantom.with_array(np.where(np.isin(phantom.array, [12, 51, 10, 49]),
                                               phantom.array, 0).astype(np.int16))
    with pytest.raises(SubctInputError, match="background"):
        SynthGenerator([only_targets], SynthConfig(output_shape=(16, 16, 16)))


def test_cli_writes_pairs_and_mosaic(tmp_path, phantom: Volume, capsys) -> None:
    from subct.cli import main

    source = save_volume(phantom.reoriented("LIA"), tmp_path / "phantom_lia.nii.gz")
    output = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(source), "-o", str(output), "-n", "2", "--seed", "0",
              "--shape", "32", "32", "32"])
    assert exit_info.value.code == 0
    image = load_volume(output / "synth_0001_image.nii.gz")
    labels = load_volume(output / "synth_0001_labels.nii.gz")
    assert image.shape == labels.shape == (32, 32, 32)
    assert image.array.dtype == np.int16 and image.array.min() < -500  # HU with air
    assert np.isin(labels.array, [12, 51]).any()
    assert np.allclose(image.affine, labels.affine)
    assert (output / "synth_mosaic.png").stat().st_size > 10_000
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(tmp_path / "missing.nii.gz"), "-o", str(output)])
    assert exit_info.value.code == 2
    assert "missing.nii.gz" in capsys.readouterr().err


def test_subcortical_only_map_is_embedded_in_a_background_head(phantom: Volume) -> None:
    from subct.labels.schemes import to_scheme
    from subct.synth.background import embed_in_head

    targets = np.where(np.isin(phantom.array, [4, 43, 10, 49, 12, 51, 16]), phantom.array, 0)
    seven_class = to_scheme(targets, "paper7")
    assert set(np.unique(seven_class)) == {0, 1, 2, 4, 7}
    moved = phantom.affine.copy()
    moved[:3, 3] += (7.0, -5.0, 3.0)  # same structures, stored in another world position
    labels, affine = embed_in_head(seven_class, moved, phantom.array, phantom.affine)
    assert np.array_equal(affine, phantom.affine)
    for label in (12, 51, 10, 49, 16):
        truth, found = phantom.array == label, labels == label
        dice = 2 * (truth & found).sum() / (truth.sum() + found.sum())
        assert dice > 0.8, (label, dice)
    assert (labels == 515).sum() == (phantom.array == 515).sum()  # head kept around them
    sub = Volume(seven_class.astype(np.int16), moved, description="seven-class map")
    sample = SynthGenerator([sub], quiet(SynthConfig(output_shape=(40, 40, 40))), seed=0,
                            background=phantom).sample()
    assert {12, 51, 16, 515}.issubset(set(np.unique(sample.labels_fs.numpy()).tolist()))


def test_contrast_and_extracerebral_dropping(phantom: Volume) -> None:
    config = quiet(SynthConfig(output_shape=(48, 48, 48)))
    config.drop_structure_contrast_probability = 1.0
    config.drop_extracerebral_probability = 1.0
    sample = SynthGenerator([phantom], config, seed=6).sample()
    means = sample.parameters["label_means"]
    assert means[12] == means[2] and means[51] == means[41] and means[10] == means[2]
    assert set(sample.parameters["contrast_dropped"]) >= {12, 51, 10, 49, 4, 43}
    labels = sample.labels_fs.numpy()
    assert labels.max() < 500 and sample.parameters["skull_stripped"]
    assert sample.hu is not None
    assert float(sample.hu[torch.from_numpy(labels == 0)].max()) < -900.0  # skull → air
    # targets keep their labels even when their contrast is dropped
    assert (sample.target > 0).any()


def test_cli_reads_a_yaml_config_and_rejects_bad_settings(tmp_path, phantom: Volume,
                                                          capsys) -> None:
    from subct.cli import main

    source = save_volume(phantom, tmp_path / "phantom.nii.gz")
    config_file = tmp_path / "train.yaml"
    config_file.write_text("synth:\n  mode: generic\n  spatial: {flip_probability: 0}\n")
    output = tmp_path / "generic"
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(source), "-o", str(output), "-n", "1", "--shape", "24", "24", "24",
              "--config", str(config_file)])
    assert exit_info.value.code == 0
    image = load_volume(output / "synth_0000_image.nii.gz")
    assert image.array.dtype == np.float32 and 0.0 <= image.array.min() < image.array.max() <= 1
    config_file.write_text("synth:\n  spatial: {rotation_deg: -3}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(source), "-o", str(output), "--config", str(config_file)])
    assert exit_info.value.code == 2
    assert "spatial.rotation_deg" in capsys.readouterr().err
