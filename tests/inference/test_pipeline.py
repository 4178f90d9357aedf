"""Inference pipeline: geometry back to the input grid, flip TTA symmetry, brain locator,
LCC, MC-dropout QC, model resolution. Uses a tiny randomly initialised UNet saved as a
real checkpoint: these tests check plumbing and geometry, not accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from subct.errors import SubctConfigError, SubctInputError
from subct.image.intracranial import locate_intracranial
from subct.image.volume import Volume
from subct.inference.config import InferenceConfig
from subct.inference.crop import CropGrid, crop_grid, labels_to_native, resample_to_crop
from subct.inference.model import SegmentationModel, load_model
from subct.inference.pipeline import segment, segment_volume
from subct.inference.postprocess import keep_largest_components
from subct.io.hounsfield import detect_hu_offset
from subct.labels.schemes import LR_SWAP, lr_swap_permutation, scheme_labels
from subct.model.checkpoint import CheckpointMetadata, save_checkpoint
from subct.model.networks import build_network
from subct.model.registry import resolve_model_path
from tests.support.phantom import analytic_head_phantom


def make_checkpoint(path: Path, dropout: float = 0.2, seed: int = 0,
                    reference_pitch_deg: float | None = None,
                    class_scales: dict[str, float] | None = None) -> Path:
    """A tiny 3-level UNet with random weights, 2 mm spacing, saved as a checkpoint."""
    torch.manual_seed(seed)
    kwargs = {"in_channels": 1, "out_channels": 18, "channels": [4, 8, 16], "dropout": dropout}
    network = build_network("unet3d", **kwargs)
    metadata = CheckpointMetadata(network_name="unet3d", network_kwargs=kwargs,
                                  spacing_mm=(2.0, 2.0, 2.0), patch_size=(64, 96, 96),
                                  hu_window=(-100.0, 200.0),
                                  reference_pitch_deg=reference_pitch_deg,
                                  class_scales=class_scales or {})
    return save_checkpoint(path, network, metadata)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> SegmentationModel:
    path = make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")
    return load_model(path, "cpu")


@pytest.fixture(scope="module")
def phantom() -> Volume:
    return analytic_head_phantom(spacing_mm=2.0).ct


def test_locator_finds_brain_centre_and_icv(phantom: Volume) -> None:
    location = locate_intracranial(phantom)
    assert location.method == "skull"
    np.testing.assert_allclose(location.centroid_ras_mm, [0.0, 0.0, 0.0], atol=3.0)
    brain_mm3 = 4.0 / 3.0 * np.pi * 64 * 79 * 74
    assert location.intracranial_volume_mm3 is not None
    assert abs(location.intracranial_volume_mm3 - brain_mm3) / brain_mm3 < 0.12
    assert 25.0 <= location.histogram["brain_hu_mode"] <= 40.0


def test_hu_offset_detected_for_unsigned_ct(phantom: Volume) -> None:
    shifted = phantom.with_array((phantom.array.astype(np.int32) + 1024).astype(np.uint16))
    assert detect_hu_offset(shifted) == 1024.0
    assert detect_hu_offset(phantom) == 0.0
    location = locate_intracranial(shifted, hu_offset=1024.0)
    np.testing.assert_allclose(location.centroid_ras_mm, [0.0, 0.0, 0.0], atol=3.0)


def test_crop_resampling_follows_world_coordinates(phantom: Volume) -> None:
    grid = crop_grid(np.array([0.0, 0.0, 0.0]), (1.0, 1.0, 1.0), (40.0, 40.0, 40.0), 8)
    crop = resample_to_crop(phantom, grid)
    centre = tuple(n // 2 for n in grid.shape)
    assert 20.0 < crop[centre] < 45.0  # brain at the world origin
    lia = phantom.reoriented("LIA")
    np.testing.assert_allclose(resample_to_crop(lia, grid), crop, atol=1e-3)
    far = crop_grid(np.array([500.0, 0.0, 0.0]), (1.0, 1.0, 1.0), (16.0, 16.0, 16.0), 8)
    assert np.all(resample_to_crop(phantom, far) == -1024.0)


def _oblique(volume: Volume, degrees: float) -> Volume:
    angle = np.deg2rad(degrees)
    rotation = np.eye(4)
    rotation[:3, :3] = [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0],
                        [0.0, 0.0, 1.0]]
    return Volume(volume.array, rotation @ volume.affine)


def test_labels_to_native_keeps_world_position_on_oblique_fine_grid() -> None:
    grid = crop_grid(np.array([10.0, -5.0, 3.0]), (2.0, 2.0, 2.0), (64.0, 64.0, 64.0), 8)
    centre_world = np.array([14.0, -9.0, 7.0])
    index = np.indices(grid.shape).reshape(3, -1).T
    world = index @ grid.affine[:3, :3].T + grid.affine[:3, 3]
    sphere = (np.linalg.norm(world - centre_world, axis=1) <= 12.0).reshape(grid.shape)
    crop_labels = np.where(sphere, 3, 0)
    native_affine = np.diag([0.7, 0.7, 1.3, 1.0])
    native_affine[:3, 3] = [-40.0, -50.0, -40.0]
    native = _oblique(Volume(np.zeros((140, 130, 70), np.int16), native_affine), 17.0)
    result = labels_to_native(crop_labels, grid, native.geometry, num_classes=4)
    assert result.shape == native.shape
    voxels = np.argwhere(result == 3)
    world_native = voxels @ native.affine[:3, :3].T + native.affine[:3, 3]
    np.testing.assert_allclose(world_native.mean(axis=0), centre_world, atol=0.5)
    volume = len(voxels) * native.voxel_volume_mm3
    assert abs(volume - 4.0 / 3.0 * np.pi * 12.0**3) / (4.0 / 3.0 * np.pi * 12.0**3) < 0.08


@pytest.mark.parametrize("axcodes", ["RAS", "LIA", "LPS", "oblique"])
def test_output_has_input_grid(tiny_model: SegmentationModel, phantom: Volume,
                               axcodes: str) -> None:
    image = _oblique(phantom, 12.0) if axcodes == "oblique" else phantom.reoriented(axcodes)
    result = segment_volume(image, tiny_model, InferenceConfig(tta=False))
    assert result.labels.shape == image.shape
    np.testing.assert_array_equal(result.labels.affine, image.affine)
    assert set(np.unique(result.labels.array)) <= {0, *scheme_labels("canonical")}
    assert (result.labels.array > 0).any()
    total = sum(result.volumes_mm3.values())
    assert total == pytest.approx((result.labels.array > 0).sum() * image.voxel_volume_mm3)


def test_reoriented_input_gives_same_labels(tiny_model: SegmentationModel,
                                            phantom: Volume) -> None:
    ras = segment_volume(phantom, tiny_model, InferenceConfig(tta=False)).labels
    lia_input = phantom.reoriented("LIA")
    lia = segment_volume(lia_input, tiny_model, InferenceConfig(tta=False)).labels
    back = lia.reoriented("RAS")
    np.testing.assert_array_equal(back.affine, ras.affine)
    agreement = np.mean(back.array == ras.array)
    assert agreement > 0.999


def test_flipped_input_gives_flipped_and_swapped_labels(tiny_model: SegmentationModel) -> None:
    # The phantom grid is centred on x = 0 with an odd number of columns, so reversing
    # the array's x axis mirrors the head in world space. 1.7 mm voxels avoid exact
    # half-voxel ties with the 2 mm crop grid (those are decided by float noise).
    phantom = analytic_head_phantom(spacing_mm=1.7).ct
    config = InferenceConfig(tta=True, precision="fp32")
    original = segment_volume(phantom, tiny_model, config).labels.array
    mirrored = segment_volume(phantom.with_array(phantom.array[::-1].copy()), tiny_model,
                              config).labels.array
    expected = np.vectorize(LR_SWAP.get)(original[::-1])
    assert (original > 0).sum() > 100
    assert np.mean(mirrored == expected) > 0.999
    lateral = [v for v in np.unique(original) if v not in (0, 16)]
    assert lateral, "random network should produce some lateralised labels"


def test_lr_swap_permutation_swaps_channels() -> None:
    permutation = lr_swap_permutation("canonical")
    values = (0, *scheme_labels("canonical"))
    assert [values[p] for p in permutation] == [LR_SWAP[v] for v in values]
    assert lr_swap_permutation("merged") == list(range(10))


def test_keep_largest_components_removes_islands() -> None:
    labels = np.zeros((20, 20, 20), np.int64)
    labels[2:8, 2:8, 2:8] = 1
    labels[15:17, 15:17, 15:17] = 1
    labels[10:12, 2:4, 2:4] = 2
    kept = keep_largest_components(labels, 3)
    assert (kept == 1).sum() == 216
    assert (kept == 2).sum() == 8
    assert kept[16, 16, 16] == 0
    # a second part with >= min_fraction of the largest one's voxels is kept too
    labels[9:13, 9:13, 9:13] = 1  # 64 voxels = 30 % of 216; the 8-voxel island is 4 %
    kept = keep_largest_components(labels, 3, min_fraction=0.1)
    assert (kept == 1).sum() == 216 + 64 and kept[16, 16, 16] == 0
    assert (keep_largest_components(labels, 3) == 1).sum() == 216
    with pytest.raises(SubctConfigError, match="component_min_fraction"):
        InferenceConfig(component_min_fraction=0.0)


def test_mc_dropout_qc_and_scheme(tiny_model: SegmentationModel, phantom: Volume) -> None:
    result = segment_volume(phantom, tiny_model, InferenceConfig(
        tta=False, mc_dropout_samples=3, scheme="merged"))
    mc = result.qc.mc_dropout
    assert mc is not None and mc.samples == 3
    assert mc.cv_percent and all(value >= 0.0 for value in mc.cv_percent.values())
    assert mc.mean_cv_percent == pytest.approx(np.mean(list(mc.cv_percent.values())))
    assert mc.uncertain == [n for n, cv in mc.cv_percent.items() if cv > mc.threshold_percent]
    assert mc.warn == bool(mc.uncertain)
    assert set(np.unique(result.labels.array)) <= {0, 4, 10, 11, 12, 13, 16, 17, 18, 26}
    assert "Thalamus" in result.volumes_mm3
    assert not tiny_model.network.training  # dropout switched back off


def test_mc_dropout_unavailable_without_dropout(tmp_path: Path, phantom: Volume) -> None:
    model = load_model(make_checkpoint(tmp_path / "nodrop.safetensors", dropout=0.0), "cpu")
    result = segment(phantom, model, tta=False, mc_dropout_samples=2)
    assert result.qc.mc_dropout is None
    assert result.qc.mc_dropout_note and "no dropout" in result.qc.mc_dropout_note


def test_volume_plausibility_flags() -> None:
    """A missing structure and an implausible one are flagged; normal volumes are not."""
    from subct.qc.checks import check_volumes, normal_range_mm3

    volumes = {}
    for name in ("Left-Thalamus", "Right-Thalamus", "Brain-Stem"):
        bounds = normal_range_mm3(name, "canonical")
        assert bounds is not None
        volumes[name] = (bounds[0] + bounds[1]) / 2.0
    flags, ranges = check_volumes(volumes, "canonical")
    assert flags == [] and set(ranges) == set(volumes)
    volumes["Left-Thalamus"] = 0.0
    volumes["Brain-Stem"] = 10.0 * ranges["Brain-Stem"][1]
    flags, _ = check_volumes(volumes, "canonical")
    assert {(flag.code, flag.message.split(":")[0]) for flag in flags} == {
        ("structure_missing", "Left-Thalamus"), ("volume_range", "Brain-Stem")}


def test_result_records_what_ran(tiny_model: SegmentationModel, phantom: Volume) -> None:
    result = segment_volume(phantom, tiny_model, InferenceConfig(tta=False))
    assert result.qc.input.looks_like_head_ct
    runtime = result.runtime
    assert runtime["backend"] == tiny_model.backend and runtime["precision"] == "fp32"
    assert runtime["cpu"]["model"] and isinstance(runtime["cpu"]["flags"], list)
    assert runtime["threads"] >= 1


def test_non_ct_input_is_flagged(tiny_model: SegmentationModel, phantom: Volume) -> None:
    mri_like = phantom.with_array(np.clip(phantom.array.astype(np.float32) + 1000.0, 0, 400))
    with pytest.raises(SubctInputError, match="does not look like a head CT .*--force"):
        segment_volume(mri_like, tiny_model, InferenceConfig(tta=False, hu_offset=0.0))
    result = segment_volume(mri_like, tiny_model,
                            InferenceConfig(tta=False, hu_offset=0.0, force=True))
    assert not result.qc.input.looks_like_head_ct  # segmented on request, still flagged
    assert {"no_air", "no_bone"} & {flag.code for flag in result.qc.flags}


def test_missing_model_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subct.model.registry

    monkeypatch.setattr(subct.model.registry, "MODELS_DIR", tmp_path / "no_models_here")
    assert not subct.model.registry.default_model_path().is_file()
    with pytest.raises(SubctInputError, match="--model"):
        resolve_model_path(None)
    with pytest.raises(SubctInputError, match="no such model file"):
        resolve_model_path("/nonexistent/model.safetensors")


def test_crop_grid_is_divisible_and_centred() -> None:
    grid: CropGrid = crop_grid(np.array([1.0, 2.0, 3.0]), (1.5, 1.5, 1.5), (100.0, 90.0, 80.0), 16)
    assert all(n % 16 == 0 for n in grid.shape)
    centre = grid.affine[:3, :3] @ ((np.asarray(grid.shape) - 1) / 2.0) + grid.affine[:3, 3]
    np.testing.assert_allclose(centre, [1.0, 2.0, 3.0])


@pytest.mark.shared_data
def test_real_tilted_dicom_brain_crop(shared_data: Path) -> None:
    from subct.io.readers import load_volume

    volume = load_volume(shared_data / "ct" / "dicom_ge_tilted")
    location = locate_intracranial(volume)
    assert location.method == "skull"
    assert location.intracranial_volume_mm3 is not None
    assert 900_000 < location.intracranial_volume_mm3 < 2_000_000
    grid = crop_grid(location.centroid_ras_mm, (1.0, 1.0, 1.0), (40.0, 40.0, 40.0), 8)
    crop = resample_to_crop(volume, grid)
    assert 15.0 < float(np.median(crop)) < 50.0  # deep brain tissue, not bone or air


def test_skull_stripped_model_runs_on_stripped_crop(phantom: Volume) -> None:
    from subct.inference.model import model_from_network

    kwargs = {"in_channels": 1, "out_channels": 18, "channels": [4, 8, 16]}
    metadata = CheckpointMetadata(network_name="unet3d", network_kwargs=kwargs,
                                  spacing_mm=(2.0, 2.0, 2.0), skull_strip=True,
                                  patch_size=(64, 96, 96), hu_window=(-100.0, 200.0))
    model = model_from_network(build_network("unet3d", **kwargs), metadata, "cpu")
    result = segment_volume(phantom, model, InferenceConfig(tta=False, keep_posteriors=True))
    assert result.labels.shape == phantom.shape
    assert result.posteriors is not None
    np.testing.assert_allclose(result.posteriors.probabilities.sum(axis=0), 1.0, atol=1e-3)


def test_shipped_model_is_installed_and_loads() -> None:
    """The package ships trained weights: code-free checkpoint, 17 structures, 1 mm."""
    from subct.model.checkpoint import load_checkpoint
    from subct.model.registry import available_models, default_model_path

    assert "ct-subcortical" in available_models()
    assert resolve_model_path(None) == default_model_path()
    loaded = load_checkpoint(default_model_path())
    assert loaded.metadata.label_scheme == "canonical"
    assert tuple(loaded.metadata.spacing_mm) == (1.0, 1.0, 1.0)
    logits = loaded.network(torch.zeros(1, 1, 32, 32, 32))
    assert logits.shape == (1, 18, 32, 32, 32)


def test_locator_survives_a_skull_open_in_every_lower_axial_slice() -> None:
    """A 16 mm slit in the back of the skull below the equator opens every lower axial
    ring; the coronal planes still close, so the centroid must stay near the true one
    (axial-only filling put it about a third of the radius too high)."""
    spacing = 2.0
    n = 96
    grid = (np.indices((n, n, n)).astype(np.float32) - (n - 1) / 2.0) * spacing
    radius = np.sqrt((grid**2).sum(axis=0))
    hu = np.full((n, n, n), -1000.0, dtype=np.float32)
    hu[radius < 80.0] = 40.0  # scalp
    hu[radius < 74.0] = 1000.0  # skull, 6 mm thick
    hu[radius < 68.0] = 30.0  # brain
    x, y, z = grid
    slit = (np.abs(x) < 8.0) & (y < -40.0) & (z < 0.0) & (radius >= 68.0) & (radius < 80.0)
    hu[slit] = 30.0
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -(n - 1) / 2.0 * spacing
    location = locate_intracranial(Volume(hu, affine))
    assert location.method == "skull"
    assert np.linalg.norm(location.centroid_ras_mm) < 8.0, location.centroid_ras_mm
    assert location.intracranial_volume_mm3 is not None
    assert location.intracranial_volume_mm3 > 0.8 * (4.0 / 3.0) * np.pi * 68.0**3


def test_no_label_is_kept_outside_the_skull(tiny_model: SegmentationModel,
                                            phantom: Volume) -> None:
    from subct.inference.steps import INTRACRANIAL_MARGIN_MM

    result = segment_volume(phantom, tiny_model, InferenceConfig(tta=False))
    location = locate_intracranial(phantom)
    allowed = location.mask_on(phantom, margin_mm=INTRACRANIAL_MARGIN_MM + 2.0)
    labels = np.asarray(result.labels.array) > 0
    assert labels.any()
    assert not (labels & ~allowed).any()
    # the random network labels the scalp under the box too: those were removed, counted
    removed = result.qc.input.facts["labels_removed_outside_intracranial_mm3"]
    assert removed > 0
    codes = {flag.code for flag in result.qc.flags}
    assert ("labels_outside_skull" in codes) == (removed > 200.0)


def test_pitched_head_gets_the_same_labels(tmp_path: Path, phantom: Volume) -> None:
    # a model that records its training pose (level heads) turns its crop with the head
    tiny_model = load_model(make_checkpoint(tmp_path / "posed.safetensors",
                                            reference_pitch_deg=0.0), "cpu")
    from subct.inference.crop import pitch_rotation

    rotation = np.eye(4)
    rotation[:3, :3] = pitch_rotation(8.0)
    pitched = Volume(phantom.array, rotation @ phantom.affine)
    config = InferenceConfig(tta=False)
    level = segment_volume(phantom, tiny_model, config)
    turned = segment_volume(pitched, tiny_model, config)
    a, b = np.asarray(level.labels.array) > 0, np.asarray(turned.labels.array) > 0
    assert a.any()
    aligned = 2 * (a & b).sum() / (a.sum() + b.sum())
    unaligned_run = segment_volume(pitched, tiny_model, config.replace(align_pitch=False))
    c = np.asarray(unaligned_run.labels.array) > 0
    unaligned = 2 * (a & c).sum() / (a.sum() + c.sum())
    # the random-weight test network reacts to sub-voxel differences of the pose
    # estimate, so only the gain is asserted (the shipped model: self-Dice 0.998-1.000
    # on pitched real CTs, docs/benchmarks.md)
    assert aligned > unaligned + 0.05, (aligned, unaligned)


def test_models_without_a_training_pose_keep_the_crop_axis_aligned(
        tiny_model: SegmentationModel, phantom: Volume) -> None:
    from subct.model.registry import default_model_path, reference_pitch_deg

    assert tiny_model.metadata.reference_pitch_deg is None
    assert reference_pitch_deg(tiny_model.path, None) is None
    assert reference_pitch_deg(default_model_path(), None) == 24.7  # the shipped model
    assert reference_pitch_deg(None, 3.0) == 3.0                    # the checkpoint's own
    result = segment_volume(phantom, tiny_model, InferenceConfig(tta=False))
    turn = result.crop.affine[:3, :3] / np.linalg.norm(result.crop.affine[:3, :3], axis=0)
    np.testing.assert_allclose(turn, np.eye(3), atol=1e-12)


def test_rotated_crop_grid_is_centred_and_orthonormal() -> None:
    from subct.inference.crop import pitch_rotation

    turn = pitch_rotation(20.0)
    grid = crop_grid(np.array([5.0, -3.0, 10.0]), (1.0, 1.0, 1.0), (32.0, 32.0, 32.0), 8, turn)
    centre = grid.affine @ np.append((np.asarray(grid.shape) - 1) / 2.0, 1.0)
    np.testing.assert_allclose(centre[:3], [5.0, -3.0, 10.0], atol=1e-9)
    np.testing.assert_allclose(grid.affine[:3, :3] @ grid.affine[:3, :3].T, np.eye(3),
                               atol=1e-12)


def test_blood_is_filled_for_the_network_and_still_flagged(tiny_model: SegmentationModel,
                                                           phantom: Volume) -> None:
    # a 2.1 cm³ haematoma (70 HU) near the brain's centre
    location = locate_intracranial(phantom)
    centre = np.linalg.solve(phantom.affine, [*location.centroid_ras_mm, 1.0])[:3]
    grid = np.indices(phantom.shape).astype(np.float64)
    distance_mm = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in
                              zip(grid, centre, phantom.spacing, strict=True)))
    bleeding = phantom.with_array(np.where(distance_mm <= 8.0, 70, phantom.array)
                                  .astype(phantom.array.dtype))
    filled = segment_volume(bleeding, tiny_model, InferenceConfig(tta=False))
    shown = segment_volume(bleeding, tiny_model, InferenceConfig(tta=False,
                                                                 inpaint_blood=False))
    assert filled.qc.input.facts["blood_like_inpainted_mm3"] > 2000.0
    assert shown.qc.input.facts["blood_like_inpainted_mm3"] == 0.0
    # the warning reads the original HU whatever the network was shown
    for result in (filled, shown):
        assert result.qc.input.facts["anatomy"]["hyperdense_regions_mm3"]
    plain = segment_volume(phantom, tiny_model, InferenceConfig(tta=False))
    assert plain.qc.input.facts["blood_like_inpainted_mm3"] == 0.0


def test_class_scales_shrink_a_structure_unless_it_would_nearly_vanish() -> None:
    from subct.inference.postprocess import MIN_CALIBRATED_SHARE, apply_class_scales

    probabilities = np.zeros((18, 8, 6, 6), dtype=np.float32)
    # first half: Left-Lateral-Ventricle (channel 1) clear, 0.6 against 0.3 and 0.1
    probabilities[1, :4], probabilities[2, :4], probabilities[0, :4] = 0.6, 0.3, 0.1
    # second half: Right-Lateral-Ventricle (channel 2) only just ahead of background
    probabilities[1, 4:], probabilities[2, 4:], probabilities[0, 4:] = 0.1, 0.5, 0.4
    scales = np.ones(18, dtype=np.float32)
    scales[1], scales[2] = 0.9, 0.7
    scaled = probabilities.copy()
    withheld = apply_class_scales(scaled, scales)
    # channel 1 keeps all its voxels (0.54 > 0.3); channel 2 would keep none (0.35 < 0.4),
    # so its factor is withheld and its probabilities stay as they were
    assert MIN_CALIBRATED_SHARE == 0.5
    assert withheld == {2: 0.0}
    np.testing.assert_array_equal(scaled[2], probabilities[2])
    np.testing.assert_allclose(scaled[1], probabilities[1] * np.float32(0.9))
    np.testing.assert_array_equal(scaled[0], probabilities[0])


def test_model_volume_calibration_is_applied_recorded_and_can_be_switched_off(
        tmp_path: Path, phantom: Volume) -> None:
    from subct.model.registry import MODEL_REGISTRY, class_scales, default_model_path

    path = make_checkpoint(tmp_path / "scaled.safetensors",
                           class_scales={"Left-Thalamus": 40.0})
    model = load_model(path, "cpu")
    vector = model.class_scale_vector()
    assert vector is not None and vector.shape == (18,)
    channel = 1 + scheme_labels("canonical").index(10)  # Left-Thalamus, FreeSurfer ID 10
    assert vector[channel] == 40.0 and np.count_nonzero(vector != 1.0) == 1
    calibrated = segment_volume(phantom, model, InferenceConfig(tta=False))
    raw = segment_volume(phantom, model, InferenceConfig(tta=False, calibrate_volumes=False))
    assert calibrated.qc.input.facts["volume_calibration"] == {"Left-Thalamus": 40.0}
    assert raw.qc.input.facts["volume_calibration"] == {}
    assert (calibrated.volumes_mm3["Left-Thalamus"] or 0.0) > (raw.volumes_mm3["Left-Thalamus"]
                                                             or 0.0)
    # a checkpoint's own calibration wins; other files have none
    assert class_scales(path, {"Brain-Stem": 0.9}) == {"Brain-Stem": 0.9}
    assert class_scales(tmp_path / "other.safetensors", None) == {}
    assert class_scales(default_model_path(), None) == dict(
        MODEL_REGISTRY["ct-subcortical"].class_scales)


@pytest.mark.parametrize("scales, message", [({"Thalamus": 0.8}, "not a structure"),
                                             ({"Left-Thalamus": 0.0}, "outside 0.01-100")])
def test_checkpoint_refuses_implausible_class_scales(scales: dict[str, float],
                                                     message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        CheckpointMetadata(network_name="unet3d", class_scales=scales,
                           spacing_mm=(1.0, 1.0, 1.0), patch_size=(64, 64, 64),
                           hu_window=(-100.0, 200.0))
