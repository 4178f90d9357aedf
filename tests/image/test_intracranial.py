"""The intracranial locator: skull ray casting, slice-thickness independence, FOV cuts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from subct.image.intracranial import (
    _box_every_nth,
    escaping_rays,
    isotropic_ras,
    locate_intracranial,
)
from subct.image.volume import Geometry, Volume
from tests.support.phantom import analytic_head_phantom

BRAIN_MM3 = 4.0 / 3.0 * np.pi * 64 * 79 * 74  # the phantom's brain ellipsoid


def _slabs(volume: Volume, factor: int) -> Volume:
    """Average ``factor`` consecutive axial (z) slices into one, as a thick-slice scan."""
    array = np.asarray(volume.array, np.float32)
    count = array.shape[2] // factor
    thick = array[:, :, :count * factor].reshape(*array.shape[:2], count, factor).mean(axis=3)
    affine = volume.affine.copy()
    affine[:3, 2] *= factor
    affine[:3, 3] += volume.affine[:3, 2] * (factor - 1) / 2.0
    return Volume(thick, affine)


def _shell(size: int = 41, radius: float = 15.0) -> tuple[np.ndarray, np.ndarray]:
    """A closed bone sphere (2 voxels thick) in air: bone mask and outside mask."""
    x, y, z = np.ogrid[:size, :size, :size]
    distance = np.sqrt((x - size // 2) ** 2 + (y - size // 2) ** 2 + (z - size // 2) ** 2)
    bone = (distance >= radius) & (distance < radius + 2)
    outside = distance >= radius + 2
    return bone, outside


def test_rays_from_inside_a_closed_skull_never_escape() -> None:
    bone, outside = _shell()
    count = escaping_rays(bone, outside)
    centre = (20, 20, 20)
    assert count[centre] == 0
    assert count[(bone | outside) == 0].max() == 0  # nowhere inside
    # a voxel just outside the shell sees outside air in most directions
    assert count[20, 20, 38] >= 10


def test_a_hole_in_the_skull_costs_only_the_rays_through_it() -> None:
    bone, outside = _shell()
    bone[18:23, 18:23, 35:] = False  # a 5-voxel burr hole at the top
    outside[18:23, 18:23, 35:] = True
    count = escaping_rays(bone, outside)
    assert count[20, 20, 20] == 1  # the straight-up ray
    assert count[20, 20, 30] <= 5  # just below the hole: a few upward rays


@pytest.mark.parametrize("cut", [None, 28])
def test_rays_within_the_heads_box_equal_rays_over_the_whole_image(cut: int | None) -> None:
    bone, outside = _shell(size=61)
    bone[40:, 28:33, 18:23] = False  # a hole in the side, so that some rays escape
    outside[40:, 28:33, 18:23] = True
    bone, outside = bone[:, :, :cut], outside[:, :, :cut]  # and a head cut by the view
    head = ~outside
    boxed = escaping_rays(bone, outside, region=head)
    whole = escaping_rays(bone, outside)
    assert np.array_equal(boxed[head], whole[head])
    assert whole[head].max() > 0


@pytest.mark.parametrize(("shape", "step"), [((9, 8, 7), 2), ((10, 11, 5), 3), ((7, 6, 5), 4)])
def test_box_average_at_kept_voxels_equals_the_full_filter(shape: tuple[int, int, int],
                                                           step: int) -> None:
    array = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    for axis in range(3):
        full = ndimage.uniform_filter1d(array, step, axis=axis, mode="nearest")
        expected = np.take(full, np.arange(0, shape[axis], step), axis=axis)
        assert np.allclose(_box_every_nth(array, step, axis), expected, atol=1e-5)
        flipped = array[::-1]  # a strided view, as a reoriented scan is
        expected = np.take(ndimage.uniform_filter1d(np.ascontiguousarray(flipped), step,
                                                    axis=axis, mode="nearest"),
                           np.arange(0, shape[axis], step), axis=axis)
        assert np.allclose(_box_every_nth(flipped, step, axis), expected, atol=1e-5)


def test_rays_leaving_the_image_inside_tissue_count_as_bone() -> None:
    bone, outside = _shell()
    # cut the top off the field of view: the inside now touches the image edge
    count = escaping_rays(bone[:, :, :28], outside[:, :, :28])
    assert count[20, 20, 20] == 0


def test_icv_agrees_between_thin_and_thick_slices() -> None:
    thin = analytic_head_phantom(spacing_mm=1.0).ct
    thin_icv = locate_intracranial(thin).intracranial_volume_mm3
    thick_location = locate_intracranial(_slabs(thin, 5))
    assert thin_icv is not None and thick_location.intracranial_volume_mm3 is not None
    assert thick_location.method == "skull"
    assert abs(thin_icv - BRAIN_MM3) / BRAIN_MM3 < 0.05
    assert abs(thick_location.intracranial_volume_mm3 - thin_icv) / thin_icv < 0.03


def test_scalp_and_neck_stay_outside_the_mask() -> None:
    case = analytic_head_phantom(spacing_mm=2.0)
    location = locate_intracranial(case.ct)
    inside = location.mask_on(case.ct)
    hu = np.asarray(case.ct.array)
    assert not inside[hu >= 500].any()      # not on the skull ...
    scalp = (hu > 35) & (hu < 45)
    x, y, z = np.meshgrid(*(np.arange(n) for n in hu.shape), indexing="ij")
    centre = (np.asarray(hu.shape) - 1) / 2.0
    far = ((x - centre[0]) / 36.0) ** 2 + ((y - centre[1]) / 43.5) ** 2 \
        + ((z - centre[2]) / 41.0) ** 2 > 1.0
    assert not inside[scalp & far].any()    # ... nor on the scalp beyond it
    assert inside[np.asarray(case.labels.array) > 0].all()  # every structure inside


def test_mask_resampled_onto_any_grid_with_a_margin() -> None:
    case = analytic_head_phantom(spacing_mm=2.0)
    location = locate_intracranial(case.ct)
    lia = case.ct.reoriented("LIA")
    # the same voxels, in another order: the same count, and the same world points
    on_lia = location.mask_on(lia)
    assert on_lia.sum() == location.mask_on(case.ct).sum()
    np.testing.assert_array_equal(Volume(on_lia.astype(np.uint8), lia.affine)
                                  .reoriented("RAS").array, location.mask_on(case.ct))
    plain = location.mask_on(case.ct).sum()
    grown = location.mask_on(case.ct, margin_mm=4.0).sum()
    assert grown > plain
    geometry = Geometry((10, 10, 10), np.diag([1.0, 1.0, 1.0, 1.0]))
    assert location.mask_on(geometry).all()  # the centre of the brain


def test_isotropic_copy_averages_thin_slices() -> None:
    rng = np.random.default_rng(0)
    noisy = Volume(rng.normal(30.0, 20.0, (40, 40, 40)).astype(np.float32), np.eye(4))
    array, affine = isotropic_ras(noisy, 2.0)
    assert array.shape == (20, 20, 20)
    np.testing.assert_allclose(np.diag(affine)[:3], [2.0, 2.0, 2.0])
    assert array.std() < 12.0  # 2×2×2 block means: σ / √8 ≈ 7 HU


def test_real_ct_icv_at_5_mm_within_3_percent(shared_data: Path) -> None:
    from subct.io.readers import load_volume

    volume = load_volume(shared_data / "ct" / "dicom_ge_tilted", expect_ct=True)
    native = locate_intracranial(volume).intracranial_volume_mm3
    axis = int(np.argmax(np.abs(volume.affine[2, :3])))
    assert axis == 2
    spacing = float(np.linalg.norm(volume.affine[:3, 2]))
    thick = locate_intracranial(_slabs(volume, max(2, round(5.0 / spacing))))
    assert native is not None and thick.intracranial_volume_mm3 is not None
    assert 1_100_000 < native < 1_900_000
    assert abs(thick.intracranial_volume_mm3 - native) / native < 0.03


@pytest.mark.parametrize("axcodes", ["LPS", "LIA"])
def test_location_does_not_depend_on_voxel_order(axcodes: str) -> None:
    case = analytic_head_phantom(spacing_mm=2.0)
    reference = locate_intracranial(case.ct)
    other = locate_intracranial(case.ct.reoriented(axcodes))
    np.testing.assert_allclose(other.centroid_ras_mm, reference.centroid_ras_mm, atol=0.5)
    assert other.intracranial_volume_mm3 == pytest.approx(reference.intracranial_volume_mm3,
                                                          rel=1e-6)


def test_noise_image_falls_back_without_warnings() -> None:
    import warnings

    noise = np.random.default_rng(0).integers(0, 255, (40, 40, 40)).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        location = locate_intracranial(Volume(noise, np.diag([2.0, 2.0, 2.0, 1.0])))
    assert location.method == "head"
    assert location.intracranial_volume_mm3 is None


def _pitched(volume: Volume, degrees: float) -> Volume:
    from subct.inference.crop import pitch_rotation

    rotation = np.eye(4)
    rotation[:3, :3] = pitch_rotation(degrees)
    return Volume(volume.array, rotation @ volume.affine)


def test_pitch_follows_the_head() -> None:
    head = analytic_head_phantom(spacing_mm=2.0).ct
    # the phantom is an ellipsoid longer front to back (90 mm) than high (85 mm)
    level = locate_intracranial(head).pitch_deg()
    assert level is not None and abs(level) < 2.0
    turned = locate_intracranial(_pitched(head, 12.0)).pitch_deg()
    assert turned is not None and abs(turned - level - 12.0) < 1.5
