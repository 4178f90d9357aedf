"""Test support: analytic_head_phantom."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from subct.evaluation.demo import DemoCase
from subct.image.volume import Volume


def analytic_head_phantom(spacing_mm: float = 2.0, axcodes: str = "RAS") -> DemoCase:
    """A small ellipsoid "head" CT with skull, brain and paired deep structures.

    Geometry (RAS, mm, centred on the origin): head 150×180×170 mm, 6 mm skull, brain
    at 32 HU, lateral ventricles (4/43) at 5 HU at x = ∓14 mm, thalami (10/49) at 40 HU
    at x = ∓12 mm. Only for tests and smoke checks; the grid has an odd number of
    voxels along x so that mirroring x maps voxel centres onto voxel centres.
    """
    half = np.array([95.0, 110.0, 100.0])
    counts = (2 * np.ceil(half / spacing_mm) + 1).astype(int)
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = -spacing_mm * (counts - 1) / 2.0
    x, y, z = (np.arange(n) * spacing_mm - spacing_mm * (n - 1) / 2.0 for n in counts)
    xx, yy, zz = np.meshgrid(x, y, z, indexing="ij")

    def ellipsoid(center: tuple[float, float, float], radii: tuple[float, float, float]
                  ) -> NDArray[np.bool_]:
        return np.asarray(((xx - center[0]) / radii[0]) ** 2 + ((yy - center[1]) / radii[1]) ** 2
                          + ((zz - center[2]) / radii[2]) ** 2 <= 1.0)

    hu = np.full(xx.shape, -1000.0, dtype=np.float32)
    labels = np.zeros(xx.shape, dtype=np.int16)
    head = ellipsoid((0, 0, 0), (75, 90, 85))
    skull = ellipsoid((0, 0, 0), (70, 85, 80))
    brain = ellipsoid((0, 0, 0), (64, 79, 74))
    hu[head] = 40.0
    hu[skull] = 1000.0
    hu[brain] = 32.0
    for side, (vent, thal) in ((-1, (4, 10)), (1, (43, 49))):
        ventricle = ellipsoid((side * 14.0, 5.0, 15.0), (6.0, 25.0, 10.0))
        thalamus = ellipsoid((side * 12.0, -15.0, 0.0), (9.0, 14.0, 9.0))
        hu[ventricle] = 5.0
        hu[thalamus] = 40.0
        labels[ventricle] = vent
        labels[thalamus] = thal
    brainstem = ellipsoid((0.0, -25.0, -40.0), (11.0, 12.0, 25.0))
    hu[brainstem] = 34.0
    labels[brainstem] = 16
    rng = np.random.default_rng(1)
    hu += np.asarray(rng.normal(0.0, 3.0, hu.shape), dtype=np.float32)
    ct = Volume(hu.astype(np.int16), affine)
    label_volume = Volume(labels, affine.copy())
    if axcodes != "RAS":
        ct, label_volume = ct.reoriented(axcodes), label_volume.reoriented(axcodes)
    return DemoCase(ct=ct, labels=label_volume)
