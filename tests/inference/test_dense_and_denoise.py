"""Network-input clean-up: dense-focus in-painting and noise-adaptive smoothing."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from subct.image.hyperdense import hyperdense_regions, large_hyperdense_regions
from subct.inference.denoise import (
    NOISE_START_HU,
    NOISE_TARGET_HU,
    denoise_for_network,
    estimate_noise_hu,
)
from subct.inference.dense import (
    MAX_FOCUS_MM3,
    fill_from_surroundings,
    inpaint_blood_like_regions,
    inpaint_dense_foci,
)


def _ball(shape: tuple[int, int, int], centre: tuple[int, int, int], radius: float
          ) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius ** 2


def test_a_calcified_focus_takes_the_hu_of_the_tissue_around_it() -> None:
    shape = (40, 40, 40)
    hu = np.full(shape, 35.0, dtype=np.float32)          # grey matter
    csf = _ball(shape, (28, 28, 28), 7)
    hu[csf] = 5.0                                          # a ventricle
    pallidum_calcium = _ball(shape, (12, 12, 12), 2)
    plexus_calcium = _ball(shape, (28, 28, 28), 1.5)
    hu[pallidum_calcium] = 400.0
    hu[plexus_calcium] = 250.0
    original = hu.copy()
    inside = np.ones(shape, dtype=bool)
    result, changed = inpaint_dense_foci(hu, inside, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(hu, original)            # input untouched
    # each focus and its one-voxel partial-volume rim take the surroundings' median
    pallidum_area = ndimage.binary_dilation(pallidum_calcium)
    plexus_area = ndimage.binary_dilation(plexus_calcium)
    assert changed == int(pallidum_area.sum() + plexus_area.sum())
    assert np.allclose(result[pallidum_area], 35.0)
    assert np.allclose(result[plexus_area], 5.0)
    untouched = ~(pallidum_area | plexus_area)
    assert np.array_equal(result[untouched], hu[untouched])


def test_bone_reaching_into_the_mask_is_not_a_focus() -> None:
    shape = (40, 40, 40)
    hu = np.full(shape, 35.0, dtype=np.float32)
    inside = np.zeros(shape, dtype=bool)
    inside[5:35, 5:35, 5:35] = True
    hu[:, :, :4] = 1000.0                 # skull below the mask ...
    hu[18:22, 18:22, :16] = 800.0         # ... with a spur reaching deep into it
    result, changed = inpaint_dense_foci(hu, inside, (1.0, 1.0, 1.0))
    assert changed == 0
    np.testing.assert_array_equal(result, hu)


def test_skull_edge_and_large_dense_regions_are_left_alone() -> None:
    shape = (40, 40, 60)
    hu = np.full(shape, 35.0, dtype=np.float32)
    inside = np.zeros(shape, dtype=bool)
    inside[2:38, 2:38, 2:58] = True
    edge = _ball(shape, (3, 20, 20), 1.5)                 # within 3 mm of the mask's edge
    hu[edge] = 500.0
    big = np.zeros(shape, dtype=bool)
    side = int(np.ceil((MAX_FOCUS_MM3 * 1.2) ** (1 / 3)))
    big[10:10 + side, 10:10 + side, 20:20 + side] = True  # larger than a focus
    hu[big] = 300.0
    result, changed = inpaint_dense_foci(hu, inside, (1.0, 1.0, 1.0))
    assert changed == 0
    np.testing.assert_array_equal(result, hu)


def test_a_fill_continues_each_side_of_a_boundary_into_the_region() -> None:
    # grey matter (36 HU) for x < 20, white matter (26 HU) beyond; a cube across the
    # boundary is unknown: each half must take its own side's density, not one mean
    shape = (40, 30, 30)
    hu = np.where(np.arange(40)[:, None, None] < 20, 36.0, 26.0) * np.ones(shape)
    hu = hu.astype(np.float32)
    region = np.zeros(shape, dtype=bool)
    region[12:28, 8:22, 8:22] = True
    damaged = hu.copy()
    damaged[region] = 75.0                                 # a haematoma across it
    filled, count = fill_from_surroundings(damaged, region, np.ones(shape, dtype=bool))
    assert count == int(region.sum())
    np.testing.assert_array_equal(damaged[region], 75.0)   # input untouched
    assert abs(float(filled[12:17, 8:22, 8:22].mean()) - 36.0) < 1.0
    assert abs(float(filled[23:28, 8:22, 8:22].mean()) - 26.0) < 1.0
    assert np.array_equal(filled[~region], damaged[~region])
    # a region no known voxel touches is left as it is
    unchanged, none = fill_from_surroundings(damaged, region, np.zeros(shape, dtype=bool))
    assert none == 0 and np.array_equal(unchanged, damaged)


def test_a_haematoma_is_filled_and_calcium_is_not_a_source() -> None:
    shape = (48, 48, 48)
    rng = np.random.default_rng(3)
    hu = (33.0 + rng.normal(0.0, 2.0, shape)).astype(np.float32)
    inside = np.zeros(shape, dtype=bool)
    inside[2:46, 2:46, 2:46] = True
    blood = _ball(shape, (24, 24, 24), 7)                  # ≈ 1.4 cm³ at 1 mm
    hu[blood] = 70.0
    calcium = _ball(shape, (24, 24, 35), 1.5)              # beside it
    hu[calcium] = 400.0
    regions = large_hyperdense_regions(hyperdense_regions(hu, inside, (1.0, 1.0, 1.0)))
    assert regions[24, 24, 24] and not regions[~inside].any()
    result, changed = inpaint_blood_like_regions(hu, regions, inside, (1.0, 1.0, 1.0))
    assert changed >= int(blood.sum())
    assert abs(float(result[blood].mean()) - 33.0) < 2.0   # no blood, no calcium fed in
    assert float(result[blood].max()) < 45.0
    np.testing.assert_array_equal(result[calcium], 400.0)  # calcium is not blood
    # nothing blood-like: the same array back, nothing changed
    same, zero = inpaint_blood_like_regions(hu, np.zeros(shape, dtype=bool), inside,
                                            (1.0, 1.0, 1.0))
    assert zero == 0 and same is hu


def test_noise_is_measured_in_hu() -> None:
    rng = np.random.default_rng(0)
    region = np.ones((48, 48, 48), dtype=bool)
    noisy = (30.0 + rng.normal(0.0, 10.0, region.shape)).astype(np.float32)
    assert abs(estimate_noise_hu(noisy, region) - 10.0) < 1.0  # type: ignore[operator]
    assert estimate_noise_hu(noisy, np.zeros_like(region)) is None


def test_only_noisy_crops_are_smoothed_and_just_enough() -> None:
    rng = np.random.default_rng(1)
    region = np.ones((48, 48, 48), dtype=bool)
    quiet = (30.0 + rng.normal(0.0, 2.0, region.shape)).astype(np.float32)
    same, noise, sigma = denoise_for_network(quiet, region, (1.0, 1.0, 1.0))
    assert same is quiet and sigma == 0.0 and noise is not None and noise < NOISE_TARGET_HU
    # between the target and the start: a clean scan's noise, left alone
    middle_sigma = (NOISE_TARGET_HU + NOISE_START_HU) / 2.0
    assert NOISE_TARGET_HU < middle_sigma < NOISE_START_HU
    middle = (30.0 + rng.normal(0.0, middle_sigma, region.shape)).astype(np.float32)
    same, noise, sigma = denoise_for_network(middle, region, (1.0, 1.0, 1.0))
    assert same is middle and sigma == 0.0
    assert noise is not None and NOISE_TARGET_HU < noise <= NOISE_START_HU
    noisy = (30.0 + rng.normal(0.0, 15.0, region.shape)).astype(np.float32)
    smoothed, noise, sigma = denoise_for_network(noisy, region, (1.0, 1.0, 1.0))
    assert noise is not None and noise > 12.0 and sigma > 0.0
    assert estimate_noise_hu(smoothed, region) <= NOISE_TARGET_HU  # type: ignore[operator]
    assert abs(float(smoothed.mean()) - float(noisy.mean())) < 0.5  # no bias
