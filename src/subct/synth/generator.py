"""The composed generator: label maps in, (image, target) training pairs out.

One call of :meth:`SynthGenerator.sample` runs the whole generative model of
SynthSeg (Billot et al. 2023, section 3.1) with CT physics added:

1. pick a label map; draw a random affine and a diffeomorphic deformation and pull
   the map onto the output grid (the crop) with nearest-neighbour lookup;
2. maybe mirror left/right (swapping left and right label IDs), drop the extra-cerebral
   labels (skull-stripped look) and drop some target structures' own contrast;
3. intensities: Hounsfield units from tissue priors plus CT texture and shading
   (``mode="ct"``) or a fully random Gaussian mixture with bias field and gamma
   (``mode="generic"``);
4. slice thickness/spacing simulation, with CT projection noise applied to the
   low-resolution slices when selected;
5. CT: HU windowing and normalisation with the very function inference uses
   (:func:`subct.model.preprocessing.ct_window_normalise`).

All work is float32 torch on ``device``, so the same code runs on CPU and GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from subct.labels.schemes import labels_to_indices, scheme_names
from subct.model.preprocessing import ct_window_normalise
from subct.synth.config import SynthConfig
from subct.synth.ct import add_ct_noise, ct_texture_image, sample_ct_parameters
from subct.synth.intensity import (
    bias_field,
    gaussian_mixture_image,
    rescale_and_gamma,
    sample_generic_parameters,
    smooth_random_field,
)
from subct.synth.label_maps import LabelBank, LabelMapSource
from subct.synth.pathology import PathologySimulator, ScannerSimulator
from subct.synth.resolution import AcquisitionResolution, sample_resolution, simulate_resolution
from subct.synth.spatial import (
    pull_labels,
    random_affine_matrix,
    random_coarse_displacement_mm,
)
from subct.synth.tissues import (
    CONTRAST_HOST,
    EXTRACEREBRAL_START,
    left_right_partner,
    lookup,
)


@dataclass
class SyntheticSample:
    """One synthetic training pair on a 1 mm RAS grid of ``config.output_shape``.

    Attributes:
        image: network input, (1, X, Y, Z) float32; CT mode: windowed HU in [0, 1].
        target: class indices of ``config.target_scheme``, (X, Y, Z) int64.
        hu: CT mode only: the image in Hounsfield units before windowing, (X, Y, Z).
        affine: voxel → world (RAS, mm) of the output grid (1 mm, axis-aligned). After an
            L/R flip the anatomy is mirrored but the affine is not: the sample is a new,
            plausible head whose left structures carry left IDs.
        parameters: the random draws that made this sample (for logs and debugging).
        source_indices: compact label indices pulled from the source map, (X, Y, Z).
        label_table: FreeSurfer ID of each compact index for this sample (after the
            flip's left/right swap and label dropping).
        lesion_mask: CT mode: voxels whose HU or label a drawn lesion (infarct,
            hypodensity, haemorrhage, calcification) changed, (X, Y, Z) bool; None when
            no lesion was drawn. For benchmarks (volume error next to a lesion).
        labelled: which target classes the source map annotates, (C,) bool over the
            target scheme's class indices; False for the structures of a partially
            labelled map (:attr:`StoredLabelMap.unlabelled`), whose voxels carry target 0
            ("background or unknown") and are scored by the marginal loss.
    """

    image: torch.Tensor
    target: torch.Tensor
    hu: torch.Tensor | None
    affine: NDArray[np.float64]
    parameters: dict[str, Any]
    source_indices: torch.Tensor
    label_table: torch.Tensor
    lesion_mask: torch.Tensor | None = None
    labelled: torch.Tensor | None = None

    @property
    def labels_fs(self) -> torch.Tensor:
        """The deformed label map in FreeSurfer IDs (all labels), (X, Y, Z) int16.

        Computed on demand: training needs only :attr:`target`.
        """
        return lookup(self.label_table, self.source_indices)


class SynthGenerator:
    """Draws synthetic (image, target) pairs from whole-head label maps.

    Args:
        label_maps: files / :class:`~subct.image.volume.Volume` objects, or an already built
            :class:`~subct.synth.label_maps.LabelBank` (to share maps between generators).
        config: generative model; defaults to :class:`SynthConfig` () (CT mode, 160³).
        device: torch device for all computation ("cpu", "cuda", ...).
        seed: makes the sequence of samples reproducible; ``None`` seeds from entropy.
        background: whole-head map for maps that hold only subcortical structures.
    """

    def __init__(
        self,
        label_maps: Sequence[LabelMapSource] | LabelBank,
        config: SynthConfig | None = None,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        background: LabelMapSource | None = None,
    ) -> None:
        self.config = config if config is not None else SynthConfig()
        self.device = torch.device(device)
        self.bank = label_maps if isinstance(label_maps, LabelBank) else LabelBank(
            label_maps, background=background)
        self._maps = [stored.indices.to(self.device) for stored in self.bank.maps]
        values = self.bank.label_values
        self.label_values: tuple[int, ...] = tuple(int(v) for v in values)
        self._fs_lut = torch.from_numpy(values.astype(np.int16)).to(self.device)
        self._target_lut = torch.from_numpy(
            labels_to_indices(values, self.config.target_scheme)).to(self.device)
        self._num_classes = len(scheme_names(self.config.target_scheme)) + 1
        swap = [self.bank.index_of(left_right_partner(int(v))) for v in values]
        self._swap_lut = torch.tensor(
            [i if s is None else s for i, s in enumerate(swap)], device=self.device)
        self._extracerebral = torch.from_numpy(values >= EXTRACEREBRAL_START).to(self.device)
        self._hosts = {
            index: host_index
            for index, value in enumerate(self.label_values)
            if value in CONTRAST_HOST
            and (host_index := self.bank.index_of(CONTRAST_HOST[value])) is not None
        }
        self._pathology = PathologySimulator(self.config.pathology, self.label_values,
                                             self.device)
        self._scanner = ScannerSimulator(self.config.scanner, self.label_values, self.device)
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        """Restart the random sequence (same seed → same samples)."""
        self._rng = np.random.default_rng(seed)
        self._torch_generator = torch.Generator(device=self.device)
        self._torch_generator.manual_seed(int(self._rng.integers(0, 2**63 - 1)))

    # ------------------------------------------------------------------ sampling

    def sample(self, map_index: int | None = None) -> SyntheticSample:
        """Draw one synthetic pair (optionally from a given map of the bank)."""
        config, rng = self.config, self._rng
        shape = config.output_shape
        if map_index is None:
            map_index = self.bank.draw(rng)
        stored = self.bank.maps[map_index]
        parameters: dict[str, Any] = {"label_map": stored.name}

        matrix = random_affine_matrix(config.spatial, rng)
        anchor = (stored.target_centroid_mm if config.spatial.anchor == "targets"
                  else stored.head_centroid_mm)
        half_width = np.asarray(config.spatial.translation_range_mm)
        translation = rng.uniform(-half_width, half_width)
        centre = anchor + translation
        displacement = random_coarse_displacement_mm(shape, config.spatial, rng,
                                                     self._torch_generator, self.device)
        # Per-label changes are applied to lookup tables (K entries), never to the volume:
        # ``relabel`` maps each pulled compact index to the one the sample shows.
        relabel = torch.arange(len(self.label_values), device=self.device)
        flip = bool(rng.uniform() < config.spatial.flip_probability)
        if flip:
            # mirror the output grid along x (same distribution as mirroring the pulled
            # volume, since the random displacement is symmetric) and swap L/R labels
            matrix = matrix @ np.diag([-1.0, 1.0, 1.0])
            relabel = self._swap_lut
        if rng.uniform() < config.drop_extracerebral_probability:
            relabel = torch.where(self._extracerebral[relabel], 0, relabel)
            parameters["skull_stripped"] = True
        parameters.update(flip=flip, affine_matrix=matrix.tolist(), centre_mm=centre.tolist())
        labels = pull_labels(_on_device(stored, self._maps[map_index]), shape, matrix, centre,
                             displacement).long()
        labels = self._pathology.reshape_anatomy(labels, rng, parameters)

        acquisition = sample_resolution(config.resolution, rng)
        parameters["acquisition"] = None if acquisition is None else vars(acquisition)
        hu: torch.Tensor | None = None
        self._lesion_mask: torch.Tensor | None = None
        if config.mode == "ct":
            hu, labels = self._ct_image(labels, relabel, acquisition, parameters)
            image = ct_window_normalise(hu, config.ct.window)
        else:
            image = self._generic_image(labels, relabel, acquisition, parameters)

        affine = np.eye(4)
        affine[:3, 3] = centre - (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
        target_lut, labelled = self._target_table(relabel, stored.unlabelled)
        return SyntheticSample(
            image=image.float().unsqueeze(0),
            target=lookup(target_lut, labels),
            labelled=labelled,
            hu=hu,
            affine=affine,
            parameters=parameters,
            source_indices=labels,
            label_table=self._fs_lut[relabel],
            lesion_mask=self._lesion_mask if config.mode == "ct" else None,
        )

    def _target_table(self, relabel: torch.Tensor, unlabelled: tuple[int, ...]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Compact index → target class for this sample, and the labelled-class mask.

        Structures the source map does not annotate map to class 0 and are marked
        unlabelled (after the flip's swap, so left stays left)."""
        table = self._target_lut[relabel]
        labelled = torch.ones(self._num_classes, dtype=torch.bool, device=self.device)
        if not unlabelled:
            return table, labelled
        ids = torch.tensor(unlabelled, dtype=self._fs_lut.dtype, device=self.device)
        table = torch.where(torch.isin(self._fs_lut[relabel], ids), 0, table)
        classes = labels_to_indices(np.asarray(unlabelled), self.config.target_scheme)
        labelled[torch.from_numpy(np.asarray(classes, dtype=np.int64))] = False
        labelled[0] = True
        return table, labelled

    def __iter__(self) -> SynthGenerator:
        return self

    def __next__(self) -> SyntheticSample:
        return self.sample()

    # ------------------------------------------------------------------ intensity

    def _drop_contrast(self, means: np.ndarray, stds: np.ndarray) -> list[int]:
        """Give some target structures their host tissue's intensity (in place)."""
        dropped = []
        for index, host in self._hosts.items():
            if self._rng.uniform() < self.config.drop_structure_contrast_probability:
                means[index], stds[index] = means[host], stds[host]
                dropped.append(self.label_values[index])
        return dropped

    def _ct_image(
        self,
        labels: torch.Tensor,
        relabel: torch.Tensor,
        acquisition: AcquisitionResolution | None,
        parameters: dict[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """HU image (and the labels, which the CSF core of an infarct or a partial field
        of view may change): tissue priors + texture + shading, pathology, resolution
        and projection noise, then scanner effects."""
        config, rng, generator = self.config.ct, self._rng, self._torch_generator
        means, stds = sample_ct_parameters(self.label_values, config, rng)
        parameters["contrast_dropped"] = self._drop_contrast(means, stds)
        parameters["label_means"] = dict(zip(self.label_values, means.tolist(), strict=True))
        smooth_fraction = float(rng.uniform(*config.texture_smooth_fraction))
        hu = ct_texture_image(
            labels, torch.from_numpy(means).to(self.device)[relabel],
            torch.from_numpy(stds).to(self.device)[relabel], smooth_fraction, generator,
        )
        if config.shading_std_max_hu > 0:
            shading_std = float(rng.uniform(0.0, config.shading_std_max_hu))
            hu = hu + smooth_random_field(tuple(hu.shape), (4, 4, 4),  # type: ignore[arg-type]
                                          shading_std, generator, self.device)
        before_hu, before_labels = hu, labels
        hu, labels = self._pathology.lesions(hu, labels, rng, generator, parameters)
        if parameters.get("pathology"):
            self._lesion_mask = (hu != before_hu) | (labels != before_labels)
        with_noise = bool(rng.uniform() < config.noise.probability)
        parameters["ct_noise"] = with_noise
        if acquisition is not None:
            def noise_hook(low: torch.Tensor) -> torch.Tensor:
                return add_ct_noise(low, acquisition.axis, acquisition.thickness_mm,
                                    config.noise, rng, generator)

            hu = simulate_resolution(hu, acquisition, noise_hook if with_noise else None)
        elif with_noise:
            hu = add_ct_noise(hu, 2, 1.0, config.noise, rng, generator)
        return self._scanner.apply(hu, labels, rng, generator, parameters)

    def _generic_image(
        self,
        labels: torch.Tensor,
        relabel: torch.Tensor,
        acquisition: AcquisitionResolution | None,
        parameters: dict[str, Any],
    ) -> torch.Tensor:
        config, rng, generator = self.config.generic, self._rng, self._torch_generator
        means, stds = sample_generic_parameters(self.label_values, config, rng)
        parameters["contrast_dropped"] = self._drop_contrast(means, stds)
        parameters["label_means"] = dict(zip(self.label_values, means.tolist(), strict=True))
        image = gaussian_mixture_image(
            labels, torch.from_numpy(means).to(self.device)[relabel],
            torch.from_numpy(stds).to(self.device)[relabel], generator,
        )
        bias = bias_field(tuple(image.shape), config, rng, generator,  # type: ignore[arg-type]
                          self.device)
        if bias is not None:
            image = image * bias
        log_gamma = float(rng.normal(0.0, config.gamma_std)) if config.gamma_std > 0 else 0.0
        image = rescale_and_gamma(image, log_gamma)
        if acquisition is not None:
            image = rescale_and_gamma(simulate_resolution(image, acquisition), 0.0)
        return image


def _on_device(stored: Any, indices: torch.Tensor) -> Any:
    """The stored map with its index tensor replaced by the device copy."""
    from dataclasses import replace

    return replace(stored, indices=indices)
