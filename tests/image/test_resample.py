"""Resampling between grids in world coordinates, with oblique and flipped affines."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from subct.image.resample import (
    conformed_geometry,
    geometry_with_spacing,
    reorient,
    resample_to_geometry,
    resample_to_spacing,
    to_ras,
)
from subct.image.volume import Geometry, Volume


def _oblique_affine() -> np.ndarray:
    affine = np.eye(4)
    rotation = Rotation.from_euler("xyz", [12.0, -25.0, 33.0], degrees=True).as_matrix()
    affine[:3, :3] = rotation @ np.diag([0.9, 1.3, 2.1])
    affine[:3, 3] = [-20.0, 10.0, 5.0]
    return affine


def _world_coordinates(geometry: Geometry) -> np.ndarray:
    """RAS position (mm) of every voxel centre, shape (3, I, J, K)."""
    index = np.indices(geometry.shape).reshape(3, -1).astype(np.float64)
    world = geometry.affine[:3, :3] @ index + geometry.affine[:3, 3:4]
    return world.reshape(3, *geometry.shape)


def _inside_source(source: Geometry, target: Geometry, margin: float = 0.01) -> np.ndarray:
    """Target voxels whose position lies strictly inside the source voxel centres' hull."""
    index = np.indices(target.shape).reshape(3, -1).astype(np.float64)
    mapping = np.linalg.inv(source.affine) @ target.affine
    source_index = mapping[:3, :3] @ index + mapping[:3, 3:4]
    upper = np.asarray(source.shape, dtype=np.float64)[:, None] - 1 - margin
    return np.all((source_index >= margin) & (source_index <= upper), axis=0).reshape(
        target.shape
    )


@pytest.mark.parametrize("engine", ["scipy", "simpleitk"])
def test_linear_resampling_reproduces_a_linear_world_function(engine: str) -> None:
    """A volume whose value is 2x − y + 0.5z (world mm) must keep that value anywhere."""
    source_geometry = Geometry((30, 28, 16), _oblique_affine())
    x, y, z = _world_coordinates(source_geometry)
    source = Volume((2 * x - y + 0.5 * z).astype(np.float32), source_geometry.affine)
    target = conformed_geometry(source_geometry, (40, 40, 40), 0.8, "LIA")

    result = resample_to_geometry(source, target, "linear", fill_value=-999, engine=engine)
    assert result.geometry.same_grid(target)
    tx, ty, tz = _world_coordinates(target)
    inside = _inside_source(source_geometry, target)
    assert inside.mean() > 0.2
    np.testing.assert_allclose(result.array[inside], (2 * tx - ty + 0.5 * tz)[inside], atol=1e-3)
    far_outside = ~_inside_source(source_geometry, target, margin=-1.0)
    assert np.all(result.array[far_outside] == -999)


def test_engines_agree_inside_the_input_for_images_and_labels() -> None:
    rng = np.random.default_rng(0)
    affine = _oblique_affine()
    image = ndimage.gaussian_filter(rng.normal(size=(40, 36, 20)), 2).astype(np.float32)
    labels = np.digitize(image, [-0.05, 0.0, 0.05]).astype(np.int16) * 10
    geometry = conformed_geometry(Geometry(image.shape, affine), (48, 48, 48), 1.1, "LIA")
    inside = _inside_source(Geometry(image.shape, affine), geometry)

    via_scipy = resample_to_geometry(Volume(image, affine), geometry, "linear", engine="scipy")
    via_itk = resample_to_geometry(Volume(image, affine), geometry, "linear", engine="simpleitk")
    np.testing.assert_allclose(via_scipy.array[inside], via_itk.array[inside], atol=1e-5)

    nearest_scipy = resample_to_geometry(Volume(labels, affine), geometry, "nearest",
                                         engine="scipy")
    nearest_itk = resample_to_geometry(Volume(labels, affine), geometry, "nearest",
                                       engine="simpleitk")
    assert nearest_scipy.array.dtype == nearest_itk.array.dtype == np.int16
    np.testing.assert_array_equal(nearest_scipy.array[inside], nearest_itk.array[inside])
    assert set(np.unique(nearest_itk.array)) <= {0, 10, 20, 30}


def test_identity_resampling_returns_the_same_voxels() -> None:
    rng = np.random.default_rng(3)
    volume = Volume(rng.integers(-1000, 1000, (12, 10, 8)).astype(np.int16), _oblique_affine())
    for interpolation in ("nearest", "linear"):
        result = resample_to_geometry(volume, volume.geometry, interpolation)
        np.testing.assert_allclose(result.array, volume.array, atol=1e-3)
    assert resample_to_geometry(volume, volume.geometry, "linear").array.dtype == np.float32


def test_sheared_target_uses_scipy_and_honours_the_shear() -> None:
    source_geometry = Geometry((20, 20, 20), np.diag([1.0, 1.0, 1.0, 1.0]))
    x, y, z = _world_coordinates(source_geometry)
    source = Volume((x + 3 * y - z).astype(np.float32), source_geometry.affine)
    sheared = np.eye(4)
    sheared[1, 2] = 0.3  # y grows with slice index: a tilted-gantry stack
    target = Geometry((10, 10, 10), sheared)
    result = resample_to_geometry(source, target, "linear")
    tx, ty, tz = _world_coordinates(target)
    np.testing.assert_allclose(result.array, tx + 3 * ty - tz, atol=1e-3)
    with pytest.raises(ValueError, match="perpendicular"):
        resample_to_geometry(source, target, "linear", engine="simpleitk")


def test_resample_to_spacing_keeps_field_of_view_and_axes() -> None:
    affine = _oblique_affine()
    geometry = Geometry((30, 20, 10), affine)
    new = geometry_with_spacing(geometry, (1.8, 1.3, 0.7))
    assert new.shape == (15, 20, 30)
    np.testing.assert_allclose(new.spacing, (1.8, 1.3, 0.7))
    directions_old = affine[:3, :3] / np.asarray(geometry.spacing)
    directions_new = new.affine[:3, :3] / np.asarray(new.spacing)
    np.testing.assert_allclose(directions_new, directions_old, atol=1e-12)

    def corner(g: Geometry) -> np.ndarray:  # outer edge of the first voxel (mm)
        return g.affine[:3, :3] @ np.full(3, -0.5) + g.affine[:3, 3]

    np.testing.assert_allclose(corner(new), corner(geometry), atol=1e-9)

    x, y, z = _world_coordinates(geometry)
    volume = Volume((x - 2 * z).astype(np.float32), affine)
    result = resample_to_spacing(volume, (1.8, 1.3, 0.7))
    tx, _, tz = _world_coordinates(new)
    inside = _inside_source(geometry, new)
    np.testing.assert_allclose(result.array[inside], (tx - 2 * tz)[inside], atol=1e-3)
    with pytest.raises(ValueError):
        geometry_with_spacing(geometry, 0.0)


def test_conformed_geometry_is_freesurfer_like_and_centred() -> None:
    geometry = Geometry((512, 512, 150), np.diag([0.45, 0.45, 1.0, 1.0]))
    conformed = conformed_geometry(geometry)
    assert conformed.shape == (256, 256, 256)
    assert conformed.orientation == "LIA"
    np.testing.assert_allclose(conformed.spacing, (1.0, 1.0, 1.0))

    def centre(g: Geometry) -> np.ndarray:
        return g.affine[:3, :3] @ ((np.asarray(g.shape) - 1) / 2) + g.affine[:3, 3]

    np.testing.assert_allclose(centre(conformed), centre(geometry), atol=1e-9)


def test_reorient_helpers_are_exact() -> None:
    rng = np.random.default_rng(5)
    affine = np.array([[-1.0, 0, 0, 100], [0, 0, 1.5, -20], [0, -2.0, 0, 30], [0, 0, 0, 1]])
    volume = Volume(rng.integers(0, 50, (6, 7, 8)).astype(np.int16), affine)
    assert volume.orientation == "LIA"
    ras = to_ras(volume)
    assert ras.orientation == "RAS" and ras.shape == (6, 8, 7)
    # Same as resampling onto the RAS grid with nearest neighbour.
    resampled = resample_to_geometry(volume, ras.geometry, "nearest")
    np.testing.assert_array_equal(resampled.array, ras.array)
    np.testing.assert_array_equal(reorient(ras, "LIA").array, volume.array)
