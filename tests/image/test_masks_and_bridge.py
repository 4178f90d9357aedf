"""subct.image.masks (the one largest-component helper) and subct.image.sitk_bridge."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from subct.image.masks import largest_component
from subct.image.sitk_bridge import (
    array_to_sitk,
    empty_sitk_image,
    sitk_geometry,
    sitk_to_array,
    sitk_to_volume,
    volume_to_sitk,
)
from subct.image.volume import Volume


def test_largest_component_connectivity_and_fraction() -> None:
    mask = np.zeros((12, 12, 12), dtype=bool)
    mask[1:5, 1:5, 1:5] = True        # 64 voxels
    mask[5, 5, 5] = True              # touches the block only at a corner (26-connected)
    mask[8:11, 8:11, 8:10] = True     # 18 voxels, separate
    face = largest_component(mask)
    assert face.sum() == 64 and not face[5, 5, 5]
    full = largest_component(mask, full_connectivity=True)
    assert full.sum() == 65 and full[5, 5, 5]
    both = largest_component(mask, min_fraction=0.25)
    assert both.sum() == 64 + 18
    assert not largest_component(np.zeros((4, 4, 4), dtype=bool)).any()
    assert largest_component(mask) is not mask  # always a new array


def test_bridge_round_trip_keeps_values_order_and_oblique_geometry() -> None:
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 1.2, 3.0])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    image = volume_to_sitk(Volume(array, affine), np.int16)
    assert image.GetSize() == (4, 5, 6)                 # ITK sizes are (i, j, k)
    assert image.GetPixel(3, 1, 2) == array[3, 1, 2]
    back = sitk_to_volume(image)
    assert np.array_equal(back.array, array)
    np.testing.assert_allclose(back.affine, affine, atol=1e-9)
    # world position of voxel (1, 2, 3): ITK gives LPS, the affine RAS
    lps = image.TransformIndexToPhysicalPoint((1, 2, 3))
    ras = affine @ np.array([1, 2, 3, 1.0])
    np.testing.assert_allclose([-lps[0], -lps[1], lps[2]], ras[:3], atol=1e-9)


def test_bridge_vector_images_and_reference_grids() -> None:
    array = np.zeros((3, 4, 5, 2), dtype=np.float32)
    array[2, 1, 4] = (7.0, -7.0)
    image = sitk.GetImageFromArray(np.transpose(array, (2, 1, 0, 3)), isVector=True)
    values = sitk_to_array(image)
    assert values.shape == (3, 4, 5, 2) and tuple(values[2, 1, 4]) == (7.0, -7.0)
    reference = empty_sitk_image((3, 4, 5), np.diag([2.0, 2.0, 2.0, 1.0]))
    assert reference.GetSize() == (3, 4, 5)
    np.testing.assert_allclose(sitk_geometry(reference), np.diag([2.0, 2.0, 2.0, 1.0]))
    plain = array_to_sitk(np.ones((2, 3, 4), dtype=np.uint8))
    assert plain.GetSize() == (2, 3, 4)


def test_bounding_box_grows_by_the_margin_and_stays_inside_the_array() -> None:
    from subct.image.masks import bounding_box

    mask = np.zeros((10, 12, 14), dtype=bool)
    assert bounding_box(mask) is None
    mask[1, 5:7, 10:14] = True
    assert bounding_box(mask) == (slice(1, 2), slice(5, 7), slice(10, 14))
    # grown by 2, clipped at 0 and at the array's end
    assert bounding_box(mask, margin_voxels=2) == (slice(0, 4), slice(3, 9), slice(8, 14))
