"""Segmentation losses and class weights.

All losses take logits ``[B, C, *spatial]`` and integer class indices
``[B, *spatial]`` (0 = background) and return a scalar.

Class weights follow the head-CT neuroanatomy paper (Radiology: AI 2020): *balanced*
weights ``w_c = Σ_i n_i / ((k + 1) n_c)`` from the voxel counts ``n_c`` of each class
over the whole training set (k structures plus background), and *attenuated* weights
``w_c^(1/3)`` (cube root), which shrink the large weights of tiny structures the most;
the paper found cube-root-weighted cross-entropy learnt small classes best without
the over-segmentation that balanced weights cause. Dice loss is used unweighted
(Dice is already invariant to structure size).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from subct.errors import SubctConfigError

WeightMode = Literal["balanced", "cube_root"]


LossName = Literal["dice", "ce", "dice_ce", "weighted_ce"]


def class_voxel_counts(label_maps: Iterable[NDArray[np.integer]], num_classes: int
                       ) -> NDArray[np.int64]:
    """Number of voxels of each class index 0..num_classes-1 over all ``label_maps``."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for labels in label_maps:
        values = np.asarray(labels).ravel()
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise SubctConfigError(
                f"label map has class index {int(values.max())} outside 0..{num_classes - 1}")
        counts += np.bincount(values.astype(np.int64), minlength=num_classes)
    return counts


def class_weights(label_maps: Iterable[NDArray[np.integer]], num_classes: int,
                  mode: WeightMode = "cube_root") -> NDArray[np.float64]:
    """Per-class cross-entropy weights from the training label maps (class indices).

    ``balanced``: ``w_c = N / ((k + 1) n_c)`` with ``N`` all voxels and ``k + 1 =
    num_classes``; a class with exactly average frequency gets weight 1.
    ``cube_root``: ``w_c = balanced_c ** (1/3)`` (attenuated weighting).
    Classes absent from every map get the largest weight of the present classes (they
    are rarer than any seen class), so the loss stays finite.
    """
    if mode not in ("balanced", "cube_root"):
        raise SubctConfigError(f"unknown class weight mode {mode!r}; use balanced or cube_root")
    counts = class_voxel_counts(label_maps, num_classes).astype(np.float64)
    total = counts.sum()
    if total == 0:
        raise SubctConfigError("cannot compute class weights from empty label maps")
    present = counts > 0
    balanced = np.zeros(num_classes, dtype=np.float64)
    balanced[present] = total / (num_classes * counts[present])
    balanced[~present] = balanced[present].max()
    return balanced if mode == "balanced" else np.cbrt(balanced)


class DiceLoss(nn.Module):
    """Soft Dice over foreground and background classes (MONAI ``DiceLoss``, softmax)."""

    def __init__(self, include_background: bool = True) -> None:
        super().__init__()
        from monai.losses import DiceLoss as MonaiDiceLoss

        self.dice = MonaiDiceLoss(include_background=include_background, to_onehot_y=True,
                                  softmax=True, smooth_nr=1e-5, smooth_dr=1e-5,
                                  batch=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss: torch.Tensor = self.dice(logits.float(), target.unsqueeze(1))
        return loss


class CrossEntropyLoss(nn.Module):
    """Voxel-wise cross-entropy, optionally with per-class weights."""

    def __init__(self, weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("weights", None if weights is None else weights.float())
        self.weights: torch.Tensor | None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.float(), target, weight=self.weights)


class DiceCrossEntropyLoss(nn.Module):
    """``dice_weight · Dice + ce_weight · CE`` (nnU-Net's default combination)."""

    def __init__(self, class_weight_tensor: torch.Tensor | None = None, dice_weight: float = 1.0,
                 ce_weight: float = 1.0) -> None:
        super().__init__()
        self.dice = DiceLoss()
        self.ce = CrossEntropyLoss(class_weight_tensor)
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dice: torch.Tensor = self.dice(logits, target)
        ce: torch.Tensor = self.ce(logits, target)
        return self.dice_weight * dice + self.ce_weight * ce


def build_loss(name: LossName, weights: NDArray[np.floating] | None = None) -> nn.Module:
    """Loss module by name: ``dice``, ``ce``, ``dice_ce`` or ``weighted_ce``.

    ``weighted_ce`` needs ``weights`` (see :func:`class_weights`); ``dice_ce`` uses them
    for its CE term when given.
    """
    tensor = None if weights is None else torch.as_tensor(np.asarray(weights), dtype=torch.float32)
    if name == "dice":
        return DiceLoss()
    if name == "ce":
        return CrossEntropyLoss()
    if name == "weighted_ce":
        if tensor is None:
            raise SubctConfigError("loss 'weighted_ce' needs class weights")
        return CrossEntropyLoss(tensor)
    if name == "dice_ce":
        return DiceCrossEntropyLoss(tensor)
    raise SubctConfigError(f"unknown loss {name!r}; use dice, ce, dice_ce or weighted_ce")
