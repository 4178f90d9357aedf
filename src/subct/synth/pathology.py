"""Clinical pathology and scanner realism for synthetic head CT.

The users' scans are elderly, injured and noisy: old infarcts, small-vessel disease,
atrophy, haemorrhage, calcification, clinical noise and reconstruction kernels, streaks
from the skull base, tilted heads and partial fields of view. A network trained only on
clean synthetic heads mistakes an infarct beside the ventricle for ventricle and pushes
a calcified pallidum out of its label. Each effect here is switchable, with its own
probability in :class:`~subct.synth.config.PathologyConfig` /
:class:`~subct.synth.config.ScannerConfig`.

**Labels follow SynthSeg's principle**: a lesion is labelled as the anatomy underneath
(a haematoma in the putamen is still putamen, a calcified pallidum still pallidum, blood
in a ventricle still ventricle), except where CSF really replaces tissue: the
CSF-dense core of an old infarct (encephalomalacia) is no longer the structure it
destroyed, and enlarged ventricles (atrophy, hydrocephalus, ex-vacuo) and widened sulci
change the label map itself.

Everything is torch on the generator's device; positions and sizes are in voxels of
the 1 mm output grid (so mm).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from subct.io.hounsfield import OUTSIDE_FOV_HU
from subct.synth.config import PathologyConfig, ScannerConfig
from subct.synth.intensity import smooth_random_field
from subct.synth.resolution import gaussian_blur_along_axis

#: FreeSurfer label groups the effects look for (source label IDs).
LATERAL_VENTRICLES = (4, 43, 5, 44)
THIRD_VENTRICLE = (14,)
EXTRACEREBRAL_CSF = (24,)
CORTEX = (3, 42)
WHITE_MATTER = (2, 41)
PALLIDUM = (13, 52)
DEEP_NUCLEI = (10, 11, 12, 13, 49, 50, 51, 52)
BRAIN = (2, 3, 41, 42, 10, 11, 12, 13, 17, 18, 26, 28, 49, 50, 51, 52, 53, 54, 58, 60, 16,
         7, 8, 46, 47)
#: The 17 target structures: where the CSF core of an infarct relabels tissue.
TARGETS = (4, 43, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58, 16)
SKULL = (515, 599)


class LabelGroups:
    """Masks of label groups on a compact-index volume (one look-up table per group)."""

    def __init__(self, label_values: Sequence[int], device: torch.device) -> None:
        self.values = [int(v) for v in label_values]
        self.device = device
        self._tables: dict[tuple[int, ...], torch.Tensor] = {}

    def index(self, label: int) -> int | None:
        """Compact index of a FreeSurfer ID (None if no map has it)."""
        return self.values.index(label) if label in self.values else None

    def mask(self, labels: torch.Tensor, group: Sequence[int]) -> torch.Tensor:
        """Boolean volume: voxels whose label is in ``group``."""
        key = tuple(group)
        if key not in self._tables:
            table = torch.tensor([v in key for v in self.values], device=self.device)
            self._tables[key] = table
        return self._tables[key][labels]


def dilate(mask: torch.Tensor, steps: int) -> torch.Tensor:
    """Binary dilation by ``steps`` voxels (26-neighbourhood: a separable 3×3×3 maximum,
    done with shifted ORs, far faster on CPU than ``max_pool3d``)."""
    result = mask.clone()
    for _ in range(max(0, int(steps))):
        for axis in range(3):
            low = [slice(None)] * 3
            high = [slice(None)] * 3
            low[axis], high[axis] = slice(None, -1), slice(1, None)
            grown = result.clone()
            grown[tuple(high)] |= result[tuple(low)]
            grown[tuple(low)] |= result[tuple(high)]
            result = grown
    return result


def blob(shape: tuple[int, int, int], centre: Sequence[float], radius: float,
         irregularity: float, generator: torch.Generator, device: torch.device
         ) -> torch.Tensor:
    """An irregular ball: distance / radius perturbed by a smooth random field < 1."""
    axes = [torch.arange(n, device=device, dtype=torch.float32) for n in shape]
    grid = torch.meshgrid(*axes, indexing="ij")
    squared = torch.zeros(shape, device=device)
    for axis_grid, coordinate in zip(grid, centre, strict=True):
        squared += (axis_grid - float(coordinate)) ** 2
    distance = torch.sqrt(squared)
    wobble = smooth_random_field(shape, (6, 6, 6), irregularity, generator, device)
    return distance / max(radius, 0.5) + wobble < 1.0


def chance(rng: np.random.Generator, probability: float) -> bool:
    """True with ``probability``; draws nothing when it is 0, so a configuration with an
    effect switched off gives exactly the samples it gave before the effect existed."""
    return probability > 0.0 and bool(rng.uniform() < probability)


def random_voxel(mask: torch.Tensor, rng: np.random.Generator) -> tuple[int, int, int] | None:
    """A random voxel of ``mask`` (None if empty)."""
    where = torch.nonzero(mask)
    if where.shape[0] == 0:
        return None
    pick = where[int(rng.integers(where.shape[0]))]
    return (int(pick[0]), int(pick[1]), int(pick[2]))


class PathologySimulator:
    """Applies :class:`PathologyConfig` to one sample's labels and HU image.

    Args:
        config: probabilities and ranges of each effect.
        label_values: FreeSurfer ID of each compact index of the label bank.
        device: torch device of the generator.
    """

    def __init__(self, config: PathologyConfig, label_values: Sequence[int],
                 device: torch.device) -> None:
        self.config = config
        self.groups = LabelGroups(label_values, device)
        self.device = device

    # ------------------------------------------------------------------ label map

    def reshape_anatomy(self, labels: torch.Tensor, rng: np.random.Generator,
                        parameters: dict[str, Any]) -> torch.Tensor:
        """Atrophy, hydrocephalus and ex-vacuo enlargement: the label map itself changes.

        Lateral ventricles grow into the white matter and cortex around them (never
        into another target structure), sulci (extra-cerebral CSF) into the cortex.
        """
        config, groups = self.config, self.groups
        labels = labels.clone()
        if chance(rng, config.ventricle_enlargement.probability):
            steps = int(rng.integers(config.ventricle_enlargement.voxels[0],
                                     config.ventricle_enlargement.voxels[1] + 1))
            for side in ((4, 5), (43, 44)):  # each ventricle into its own hemisphere
                ventricle = groups.mask(labels, side)
                index = groups.index(side[0])
                if index is None or not bool(ventricle.any()):
                    continue
                side_steps = steps if rng.uniform() < 0.7 else int(rng.integers(0, steps + 1))
                grown = dilate(ventricle, side_steps) & groups.mask(labels, WHITE_MATTER + CORTEX)
                labels[grown] = index
            parameters["ventricle_enlargement_voxels"] = steps
        if chance(rng, config.sulcal_widening.probability):
            csf = groups.index(EXTRACEREBRAL_CSF[0])
            if csf is not None:
                steps = int(rng.integers(config.sulcal_widening.voxels[0],
                                         config.sulcal_widening.voxels[1] + 1))
                grown = dilate(groups.mask(labels, EXTRACEREBRAL_CSF), steps)
                labels[grown & groups.mask(labels, CORTEX)] = csf
                parameters["sulcal_widening_voxels"] = steps
        return labels

    # ---------------------------------------------------------------- intensities

    def lesions(self, hu: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator,
                generator: torch.Generator, parameters: dict[str, Any]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Infarcts, white-matter hypodensity, haemorrhage and calcification (HU), and
        the CSF-core relabelling of infarcts. Returns the new HU image and labels."""
        hu, labels = hu.clone(), labels.clone()
        found: list[str] = []
        brain = self.groups.mask(labels, BRAIN)
        self._infarcts(hu, labels, brain, rng, generator, found)
        self._white_matter_hypodensity(hu, labels, rng, generator, found)
        self._parenchymal_bleeds(hu, labels, brain, rng, generator, found)
        self._extra_axial_bleeds(hu, labels, brain, rng, generator, found)
        hu = self._calcification(hu, labels, rng, generator, found)
        parameters["pathology"] = found
        return hu, labels

    def _texture(self, hu: torch.Tensor, std: float, generator: torch.Generator
                 ) -> torch.Tensor:
        """Gaussian noise (HU) of ``std`` on ``hu``'s grid: the grain inside a lesion."""
        return torch.randn(_shape3(hu), generator=generator, device=self.device) * std

    def _infarcts(self, hu: torch.Tensor, labels: torch.Tensor, brain: torch.Tensor,
                  rng: np.random.Generator, generator: torch.Generator,
                  found: list[str]) -> None:
        """Old infarcts / encephalomalacia: cortical-subcortical or beside the ventricles;
        a core below ``csf_core_below_hu`` is relabelled CSF (in place)."""
        config, groups, shape = self.config.infarct, self.groups, _shape3(hu)
        if not chance(rng, config.probability):
            return
        count = int(rng.integers(config.count[0], config.count[1] + 1))
        csf_index = groups.index(EXTRACEREBRAL_CSF[0])
        for _ in range(count):
            near_ventricle = rng.uniform() < 0.4
            region = (dilate(groups.mask(labels, LATERAL_VENTRICLES), 6) & brain
                      if near_ventricle else brain)
            centre = random_voxel(region, rng)
            if centre is None:
                continue
            radius = float(rng.uniform(*config.radius_mm))
            lesion = blob(shape, centre, radius, 0.25, generator, self.device) & brain
            level = float(rng.uniform(*config.hu))
            hu[lesion] = level + self._texture(hu, 2.0, generator)[lesion]
            if csf_index is not None and level < config.csf_core_below_hu:
                labels[lesion & groups.mask(labels, TARGETS)] = csf_index
            found.append("infarct_periventricular" if near_ventricle else "infarct")

    def _white_matter_hypodensity(self, hu: torch.Tensor, labels: torch.Tensor,
                                  rng: np.random.Generator, generator: torch.Generator,
                                  found: list[str]) -> None:
        """Small-vessel disease: patchy periventricular / deep white-matter hypodensity."""
        config, groups, shape = self.config.white_matter_hypodensity, self.groups, _shape3(hu)
        if not chance(rng, config.probability):
            return
        white = groups.mask(labels, WHITE_MATTER)
        near = dilate(groups.mask(labels, LATERAL_VENTRICLES), 10)
        patches = smooth_random_field(shape, (10, 10, 10), 1.0, generator, self.device)
        extent = float(rng.uniform(*config.extent))
        threshold = float(torch.quantile(patches[white][::50], 1.0 - extent)) \
            if bool(white.any()) else 1e9
        area = white & ((patches > threshold) | (near & (patches > threshold - 0.5)))
        hu[area] -= float(rng.uniform(*config.drop_hu))
        found.append("white_matter_hypodensity")

    def _parenchymal_bleeds(self, hu: torch.Tensor, labels: torch.Tensor, brain: torch.Tensor,
                            rng: np.random.Generator, generator: torch.Generator,
                            found: list[str]) -> None:
        """Intraparenchymal haemorrhage (basal ganglia and thalamus included) with an
        oedema rim, and intraventricular blood layering in the posterior ventricle."""
        config, groups, shape = self.config.haemorrhage, self.groups, _shape3(hu)
        if chance(rng, config.intraparenchymal_probability):
            region = (groups.mask(labels, DEEP_NUCLEI) if rng.uniform() < 0.5 else brain)
            centre = random_voxel(region, rng)
            if centre is not None:
                radius = float(rng.uniform(*config.radius_mm))
                bleed = blob(shape, centre, radius, 0.2, generator, self.device) & brain
                hu[bleed] = float(rng.uniform(*config.hu)) + \
                    self._texture(hu, 3.0, generator)[bleed]
                rim = dilate(bleed, 2) & ~bleed & brain  # oedema rim, hypodense
                hu[rim] -= float(rng.uniform(3.0, 10.0))
                found.append("haemorrhage_intraparenchymal")
        if chance(rng, config.intraventricular_probability):
            ventricle = groups.mask(labels, LATERAL_VENTRICLES)
            if bool(ventricle.any()):
                y = torch.arange(shape[1], device=self.device)[None, :, None].float()
                cut = float(torch.quantile(torch.nonzero(ventricle)[:, 1].float(),
                                           float(rng.uniform(0.1, 0.4))))
                layer = ventricle & (y < cut)
                hu[layer] = float(rng.uniform(*config.hu)) + \
                    self._texture(hu, 3.0, generator)[layer]
                found.append("haemorrhage_intraventricular")

    def _extra_axial_bleeds(self, hu: torch.Tensor, labels: torch.Tensor, brain: torch.Tensor,
                            rng: np.random.Generator, generator: torch.Generator,
                            found: list[str]) -> None:
        """Subdural crescent under the skull over one hemisphere (acute or subacute), and
        subarachnoid blood in part of the sulcal CSF."""
        config, groups, shape = self.config.haemorrhage, self.groups, _shape3(hu)
        if chance(rng, config.subdural_probability):
            skull = groups.mask(labels, SKULL)
            if bool(skull.any()):
                thickness = int(rng.integers(config.subdural_mm[0], config.subdural_mm[1] + 1))
                # between the skull and the brain: extra-cerebral CSF and outer cortex
                inner = dilate(skull, thickness) & groups.mask(labels, EXTRACEREBRAL_CSF + CORTEX)
                x = torch.arange(shape[0], device=self.device)[:, None, None].float()
                middle = float(torch.nonzero(brain)[:, 0].float().mean()) \
                    if bool(brain.any()) else shape[0] / 2
                side = (x < middle) if rng.uniform() < 0.5 else (x >= middle)
                crescent = inner & side & ~groups.mask(labels, TARGETS)
                acute = rng.uniform() < 0.6
                level = (float(rng.uniform(*config.hu)) if acute
                         else float(rng.uniform(20.0, 45.0)))
                hu[crescent] = level + self._texture(hu, 3.0, generator)[crescent]
                found.append("haemorrhage_subdural")
        if chance(rng, config.subarachnoid_probability):
            csf = groups.mask(labels, EXTRACEREBRAL_CSF)
            patches = smooth_random_field(shape, (8, 8, 8), 1.0, generator, self.device)
            area = csf & (patches > float(rng.uniform(0.0, 1.0)))
            hu[area] = float(rng.uniform(40.0, 70.0)) + self._texture(hu, 4.0, generator)[area]
            found.append("haemorrhage_subarachnoid")

    def _calcification(self, hu: torch.Tensor, labels: torch.Tensor,
                       rng: np.random.Generator, generator: torch.Generator,
                       found: list[str]) -> torch.Tensor:
        """Pallidum, choroid plexus, pineal and dural (falx) calcification, 100–400 HU."""
        config, groups = self.config.calcification, self.groups
        shape = _shape3(hu)
        low, high = config.hu
        if chance(rng, config.pallidum_probability):
            pallidum = groups.mask(labels, PALLIDUM)
            speckle = torch.rand(shape, generator=generator, device=self.device)
            fraction = float(rng.uniform(*config.pallidum_fraction))
            spots = dilate(pallidum & (speckle < fraction * 0.3), 1) & pallidum
            hu[spots] = torch.empty(shape, device=self.device).uniform_(
                low, high, generator=generator)[spots]
            found.append("calcification_pallidum")
        ventricle = groups.mask(labels, LATERAL_VENTRICLES)
        if chance(rng, config.choroid_plexus_probability) and bool(ventricle.any()):
            where = torch.nonzero(ventricle).float()
            y_cut = float(torch.quantile(where[:, 1], 0.25))  # atria: posterior quarter
            for side in (where[:, 0] < where[:, 0].mean(), where[:, 0] >= where[:, 0].mean()):
                points = where[side & (where[:, 1] <= y_cut)]
                if points.shape[0] == 0:
                    continue
                centre = points[int(rng.integers(points.shape[0]))].tolist()
                plexus = blob(shape, centre, float(rng.uniform(2.0, 4.5)), 0.2, generator,
                              self.device) & ventricle
                hu[plexus] = float(rng.uniform(low, high))
            found.append("calcification_choroid_plexus")
        third = groups.mask(labels, THIRD_VENTRICLE)
        if chance(rng, config.pineal_probability) and bool(third.any()):
            where = torch.nonzero(third).float()
            back = where[where[:, 1] <= float(torch.quantile(where[:, 1], 0.1))].mean(dim=0)
            centre = (back - torch.tensor([0.0, 4.0, 0.0], device=self.device)).tolist()
            pineal = blob(shape, centre, float(rng.uniform(2.0, 4.0)), 0.15, generator,
                          self.device) & ~groups.mask(labels, TARGETS)
            hu[pineal] = float(rng.uniform(low, high))
            found.append("calcification_pineal")
        if chance(rng, config.falx_probability):
            brain = groups.mask(labels, BRAIN + EXTRACEREBRAL_CSF)
            if bool(brain.any()):
                middle = float(torch.nonzero(brain)[:, 0].float().mean())
                x = torch.arange(shape[0], device=self.device)[:, None, None].float()
                patches = smooth_random_field(shape, (6, 6, 6), 1.0, generator, self.device)
                falx = (torch.abs(x - middle) < 1.0) & brain & (patches > 0.3) \
                    & ~groups.mask(labels, TARGETS)
                hu[falx] = float(rng.uniform(low, high))
                found.append("calcification_falx")
        return hu


class ScannerSimulator:
    """Clinical scanner effects on the final HU image (:class:`ScannerConfig`)."""

    def __init__(self, config: ScannerConfig, label_values: Sequence[int],
                 device: torch.device) -> None:
        self.config = config
        self.groups = LabelGroups(label_values, device)
        self.device = device

    def apply(self, hu: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator,
              generator: torch.Generator, parameters: dict[str, Any]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel, correlated noise, streaks and partial field of view."""
        config = self.config
        shape = _shape3(hu)
        effects: list[str] = []
        if chance(rng, config.kernel_probability):
            sigma = float(rng.uniform(*config.soft_kernel_sigma_mm))
            smooth = _gaussian_blur(hu, sigma)
            if rng.uniform() < 0.5:  # soft (smoothing) kernel
                hu = smooth
                effects.append(f"soft_kernel_{sigma:.2f}")
            else:  # sharp kernel: unsharp masking raises edges and noise
                amount = float(rng.uniform(*config.sharp_kernel_amount))
                hu = hu + amount * (hu - smooth)
                effects.append(f"sharp_kernel_{amount:.2f}")
        if chance(rng, config.noise_probability):
            std = float(rng.uniform(*config.noise_std_hu))
            white = torch.randn(shape, generator=generator, device=self.device)
            correlation = float(rng.uniform(*config.noise_correlation_mm))
            noise = _gaussian_blur(white, correlation) if correlation > 0.3 else white
            noise = noise / noise.std().clamp(min=1e-6) * std
            hu = hu + noise
            effects.append(f"noise_{std:.1f}HU")
        if chance(rng, config.streak_probability):
            hu = hu + self._streaks(labels, shape, rng, generator)
            effects.append("streaks")
        if chance(rng, config.partial_fov_probability):
            cut = int(rng.integers(config.partial_fov_mm[0], config.partial_fov_mm[1] + 1))
            background = self.groups.index(0)
            region = [slice(None)] * 3
            if rng.uniform() < 0.5:
                region[2] = slice(shape[2] - cut, shape[2])  # skull top not scanned
                effects.append(f"fov_top_cut_{cut}mm")
            else:
                region[2] = slice(0, cut)  # neck / skull base not scanned
                effects.append(f"fov_bottom_cut_{cut}mm")
            hu = hu.clone()
            hu[tuple(region)] = OUTSIDE_FOV_HU
            if background is not None:
                labels = labels.clone()
                labels[tuple(region)] = background
        parameters["scanner"] = effects
        return hu, labels

    def _streaks(self, labels: torch.Tensor, shape: tuple[int, int, int],
                 rng: np.random.Generator, generator: torch.Generator) -> torch.Tensor:
        """Beam-hardening streaks: bright/dark lines radiating in axial slices from dense
        bone, strongest near the skull base (lower slices)."""
        amplitude = float(rng.uniform(*self.config.streak_hu))
        x = torch.arange(shape[0], device=self.device, dtype=torch.float32)[:, None]
        y = torch.arange(shape[1], device=self.device, dtype=torch.float32)[None, :]
        cx, cy = shape[0] / 2.0, shape[1] / 2.0
        angle = torch.atan2(y - cy, x - cx)
        pattern = torch.zeros(shape[0], shape[1], device=self.device)
        for _ in range(int(rng.integers(3, 9))):
            direction = float(rng.uniform(-np.pi, np.pi))
            width = float(rng.uniform(0.01, 0.04))
            sign = 1.0 if rng.uniform() < 0.5 else -1.0
            difference = torch.remainder(angle - direction + np.pi, 2 * np.pi) - np.pi
            pattern += sign * torch.exp(-(difference / width) ** 2)
        z = torch.arange(shape[2], device=self.device, dtype=torch.float32)
        base = float(rng.uniform(0.0, 0.5)) * shape[2]
        weight = torch.exp(-torch.clamp(z - base, min=0.0) / max(4.0, 0.15 * shape[2]))
        return amplitude * pattern[:, :, None] * weight[None, None, :]


def _shape3(volume: torch.Tensor) -> tuple[int, int, int]:
    return (int(volume.shape[0]), int(volume.shape[1]), int(volume.shape[2]))


def _gaussian_blur(volume: torch.Tensor, sigma: float) -> torch.Tensor:
    """Isotropic Gaussian blur (σ in voxels, edges replicated): the slice-profile blur of
    :mod:`subct.synth.resolution` along each axis in turn."""
    for axis in range(3):
        volume = gaussian_blur_along_axis(volume, axis, sigma)
    return volume
