"""Network-input clean-up: dense-focus in-painting and noise-adaptive smoothing."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from subct.inference.denoise import NOISE_TARGET_HU, denoise_for_network, estimate_noise_hu
from subct.inference.dense import MAX_FOCUS_MM3, inpaint_dense_foci


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
    noisy = (30.0 + rng.normal(0.0, 15.0, region.shape)).astype(np.float32)
    smoothed, noise, sigma = denoise_for_network(noisy, region, (1.0, 1.0, 1.0))
    assert noise is not None and noise > 12.0 and sigma > 0.0
    assert estimate_noise_hu(smoothed, region) <= NOISE_TARGET_HU  # type: ignore[operator]
    assert abs(float(smoothed.mean()) - float(noisy.mean())) < 0.5  # no bias
