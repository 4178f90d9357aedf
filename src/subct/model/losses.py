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

import math
from collections.abc import Iterable
from typing import Any, Literal

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


def log_softmax_over_classes(logits: torch.Tensor) -> torch.Tensor:
    """Log-softmax over axis 1 (classes) in float32, in the layout ``logits`` come in.

    Channels-last logits (the CPU training layout, ``[B, C, D, H, W]`` stored with the
    classes innermost) are normalised as a ``[B, D, H, W, C]`` view over its last axis,
    which needs neither a copy nor strided access, and returned as the same channels-last
    view; the standard layout goes through one contiguous log-softmax over axis 1. Until
    session 15 channels-last logits were first copied to the standard layout, forward and
    backward: 13 % of a training step of two 64³ patches on a 2-core CPU
    (``benchmarks/bench_training_throughput.py``).
    """
    values = logits.float()
    order = (0, *range(2, values.dim()), 1)  # classes last
    if values.dim() >= 3 and values.permute(order).is_contiguous():
        inverse = (0, values.dim() - 1, *range(1, values.dim() - 1))
        return torch.log_softmax(values.permute(order), dim=-1).permute(inverse)
    return torch.log_softmax(values.contiguous(), dim=1)


def marginal_log_probabilities(logits: torch.Tensor, labelled: torch.Tensor | None = None
                               ) -> torch.Tensor:
    """Log-softmax over classes, with unlabelled classes folded into background.

    ``labelled`` (``[B, C]`` bool, optional) says which classes each sample's label map
    annotates. A map that does not label a class (the paper's 7-class CT maps have no
    amygdala or accumbens) cannot say where that class is absent: its background may
    hide it. The *marginal* loss (Shi et al. 2021, "marginal loss and exclusion loss for
    partially supervised segmentation") therefore scores such a sample's background as
    "background or any class this map lacks": the probabilities of the missing classes
    are summed into channel 0 and the missing channels get probability 0, so no gradient
    claims the missing structures are absent. Fully labelled samples (all True, or
    ``labelled=None``) are plain log-softmax.
    """
    log_probabilities = log_softmax_over_classes(logits)
    missing = _missing_classes(labelled, logits.shape[1], logits.device)
    if missing is None:
        return log_probabilities
    partial = torch.nonzero(missing.any(dim=1)).flatten().tolist()
    rows = []
    for index in range(logits.shape[0]):
        row = log_probabilities[index]
        if index in partial:
            gone = missing[index].view(-1, *([1] * (row.dim() - 1)))
            folded = torch.logsumexp(
                torch.cat([row[:1], row[missing[index]]], dim=0), dim=0, keepdim=True)
            row = torch.cat([folded, row[1:].masked_fill(gone[1:], float("-inf"))], dim=0)
        rows.append(row)
    return torch.stack(rows)


def plain_dice_ce(log_probabilities: torch.Tensor, target: torch.Tensor,
                  smooth: float = 1e-5) -> torch.Tensor:
    """Unweighted soft Dice + cross-entropy of a whole ``[B, C, ...]`` log-probability
    tensor, the plain way (one gather, one full ``exp``): the definition
    :class:`SegmentationLoss` must agree with. With :func:`marginal_log_probabilities`
    of standard-layout logits it is the session-14 training loss, which the tests and
    ``benchmarks/bench_loss.py`` compare against."""
    index = target.long().unsqueeze(1)
    at_target = log_probabilities.gather(1, index).flatten()
    classes = log_probabilities.shape[1]
    intersection = at_target.new_zeros(classes).index_add(0, index.flatten(), at_target.exp())
    predicted = log_probabilities.exp().sum(dim=[0, *range(2, log_probabilities.dim())])
    reference = torch.bincount(index.flatten(), minlength=classes).to(predicted.dtype)
    dice = (2.0 * intersection + smooth) / (predicted + reference + smooth)
    return -at_target.mean() + (1.0 - dice).mean()


class SegmentationLoss(nn.Module):
    """``dice_weight · soft Dice + ce_weight · cross-entropy`` from one log-softmax.

    Dice is MONAI's ``DiceLoss(softmax=True, include_background=True, batch=True,
    smooth 1e-5)``: per class, intersection and sums pooled over the batch and the
    voxels, then ``1 − Dice`` averaged over classes. Cross-entropy is the voxel mean,
    weighted as :func:`torch.nn.functional.cross_entropy` weights it (Σ w_t·nll / Σ w_t).
    Both come from a single log-softmax without a one-hot tensor (intersections by
    scatter-add on the target indices): on a 2-core CPU this loss took 150 ms per batch
    of two 64³ patches as MONAI Dice + torch CE, as much as the network's own forward
    and backward (``benchmarks/bench_training_throughput.py``).

    ``forward(logits, target, labelled=None)``; see :func:`marginal_log_probabilities`
    for ``labelled`` (partial-label maps).
    """

    smooth = 1e-5

    def __init__(self, class_weight_tensor: torch.Tensor | None = None,
                 dice_weight: float = 1.0, ce_weight: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("weights", None if class_weight_tensor is None
                             else class_weight_tensor.float())
        self.weights: torch.Tensor | None
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                labelled: torch.Tensor | None = None) -> torch.Tensor:
        missing = _missing_classes(labelled, logits.shape[1], logits.device)
        value: torch.Tensor = _DiceCrossEntropy.apply(
            logits, target, missing, self.weights, self.dice_weight, self.ce_weight,
            self.smooth)
        return value


class _DiceCrossEntropy(torch.autograd.Function):
    """:class:`SegmentationLoss` with its gradient written out (softmax Jacobian applied
    by hand). Autograd's version kept the log-probabilities and the probabilities of every
    voxel and class and ran about five passes over them backwards (exp, gather's zero fill
    and scatter, the sum, log-softmax); this one keeps the probabilities and, on a
    classes-last view of them, runs one matrix-vector product and two element-wise
    passes: the loss's backward on two 96³ patches took 130 ms instead of 250–330 ms on a
    2-core CPU (``benchmarks/bench_loss.py``).

    With ``q`` the (marginal) probabilities, ``t`` the target, ``G_t`` the classes folded
    into ``t`` (``{t}``, or background and the missing classes at a partial-label map's
    background voxels), ``ω`` each voxel's cross-entropy weight, ``α_c = −2 w_D / (C B_c)``
    and ``β_c = w_D A_c / (C B_c²)`` (Dice ``A_c / B_c``), ``β̃_k`` = ``β`` of the class
    ``k`` is counted as:

        ∂L/∂x_k = p_k (β̃_k + ω − Σ_j p_j β̃_j − α_t q_t) + [k ∈ G_t] (α_t p_k − ω p_k / q_t)
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor,
                missing: torch.Tensor | None, weights: torch.Tensor | None,
                dice_weight: float, ce_weight: float, smooth: float) -> torch.Tensor:
        log_probabilities = log_softmax_over_classes(logits)
        probabilities = log_probabilities.exp()
        classes = probabilities.shape[1]
        spatial = list(range(2, probabilities.dim()))
        index = target.long().unsqueeze(1)
        at_target = log_probabilities.gather(1, index)
        if missing is not None:
            at_target, underflow = _fold_background_at_target(
                log_probabilities, probabilities, at_target, index, missing)
        else:
            underflow = []
        del log_probabilities
        flat_target = index.flatten()
        if weights is None:
            voxel_weight = torch.full_like(at_target, 1.0 / at_target.numel())
        else:
            voxel_weight = weights.to(at_target.dtype)[index]
            voxel_weight = voxel_weight / voxel_weight.sum()
        ce = -(voxel_weight * at_target).sum()
        sums = probabilities.sum(dim=spatial)  # per sample and class
        if missing is not None:  # a partial-label map's missing classes count as background
            kept = sums.masked_fill(missing, 0.0)
            sums = torch.cat([kept[:, :1] + (sums - kept).sum(1, keepdim=True), kept[:, 1:]], 1)
        at_target_probability = at_target.exp()
        intersection = sums.new_zeros(classes).index_add(0, flat_target,
                                                         at_target_probability.flatten())
        numerator = 2.0 * intersection + smooth
        denominator = sums.sum(0) + torch.bincount(flat_target, minlength=classes).to(
            sums.dtype) + smooth
        total = ce_weight * ce + dice_weight * (1.0 - numerator / denominator).mean()
        ctx.save_for_backward(probabilities, index, at_target_probability, voxel_weight,
                              numerator, denominator, missing)
        ctx.settings = (dice_weight, ce_weight, logits.dtype)
        ctx.underflow = underflow
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        probabilities, index, at_target_probability, voxel_weight, numerator, denominator, \
            missing = ctx.saved_tensors
        dice_weight, ce_weight, dtype = ctx.settings
        batch, classes = probabilities.shape[:2]
        spatial_shape = probabilities.shape[2:]
        # the upstream gradient scales every coefficient (no pass over the voxels for it)
        alpha = grad_output * -2.0 * dice_weight / (classes * denominator)
        beta = grad_output * dice_weight * numerator / (classes * denominator**2)
        counted = beta.expand(batch, classes).clone()  # β of the class each channel counts as
        if missing is not None:
            counted = torch.where(missing, beta[0], counted)
        by_voxel = _classes_last(probabilities)
        target = index.reshape(batch, -1)
        omega = grad_output * ce_weight * voxel_weight.reshape(batch, -1)
        alpha_at = alpha[target]
        q_target = at_target_probability.reshape(batch, -1)
        pooled = torch.bmm(by_voxel, counted.unsqueeze(2)).squeeze(2)  # Σ_j p_j β̃_j
        gradient = by_voxel * counted.unsqueeze(1)
        gradient.addcmul_(by_voxel, (omega - pooled - alpha_at * q_target).unsqueeze(2))
        # the classes folded into the target: α_t p_k − ω p_k / q_t. p_t / q_t is 1 where
        # the target is one class (also where both underflow: the gradient of a confident
        # mistake stays −ω, as autograd's); at a folded voxel whose q_t underflowed the
        # forward pass kept the shares p_k / q_t (``ctx.underflow``)
        p_target = by_voxel.gather(2, target.unsqueeze(2)).squeeze(2)
        omega_ratio = omega  # ω p_t / q_t
        if missing is not None:
            q_safe = q_target.clone()
            for sample, voxels, _, _ in ctx.underflow:
                q_safe[sample, voxels] = math.inf
            folded = missing.any(1, keepdim=True) & (target == 0)
            omega_ratio = torch.where(folded, omega * p_target / q_safe, omega)
        gradient.scatter_add_(2, target.unsqueeze(2),
                              (alpha_at * p_target - omega_ratio).unsqueeze(2))
        if missing is not None:  # the missing classes, at a partial map's background voxels
            for sample in torch.nonzero(missing.any(1)).flatten().tolist():
                share = torch.where(target[sample] == 0,
                                    alpha[0] - omega[sample] / q_safe[sample], 0.0)
                channels = torch.nonzero(missing[sample]).flatten()
                gradient[sample].index_add_(1, channels, by_voxel[sample].index_select(
                    1, channels) * share.unsqueeze(1))
            for sample, voxels, channels, shares in ctx.underflow:
                rows = gradient[sample].index_select(0, voxels)
                rows.index_add_(1, channels, -omega[sample, voxels].unsqueeze(1) * shares)
                gradient[sample].index_copy_(0, voxels, rows)
        inverse = (0, probabilities.dim() - 1, *range(1, probabilities.dim() - 1))
        result = gradient.view(batch, *spatial_shape, classes).permute(inverse)
        return result.to(dtype), None, None, None, None, None, None


def _missing_classes(labelled: torch.Tensor | None, classes: int, device: torch.device
                     ) -> torch.Tensor | None:
    """``[B, C]`` bool: the classes each sample's map does not label (background never);
    None when every sample is fully labelled."""
    if labelled is None:
        return None
    missing = ~labelled.to(device=device, dtype=torch.bool)
    missing[:, 0] = False
    if missing.shape[1] != classes:
        raise ValueError(f"labelled flags for {missing.shape[1]} classes, logits have {classes}")
    return missing if bool(missing.any()) else None


def _classes_last(tensor: torch.Tensor) -> torch.Tensor:
    """``[B, voxels, C]`` of a ``[B, C, ...]`` tensor: a view of channels-last tensors (no
    copy), a copy of the standard layout."""
    order = (0, *range(2, tensor.dim()), 1)
    return tensor.permute(order).reshape(tensor.shape[0], -1, tensor.shape[1])


#: Voxels of a partial sample whose folded background probability underflowed:
#: (sample, voxel indices, folded channels, shares p_k / q_t of those channels).
Underflow = tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]

#: Below this folded probability the fold is recomputed from the log-probabilities
#: (a float32 sum of probabilities that small has lost its digits to underflow).
_FOLD_UNDERFLOW = 1e-30


def _fold_background_at_target(log_probabilities: torch.Tensor, probabilities: torch.Tensor,
                               at_target: torch.Tensor, index: torch.Tensor,
                               missing: torch.Tensor) -> tuple[torch.Tensor, list[Underflow]]:
    """The marginal log-probability at each voxel's target (``[B, 1, ...]``): at the
    background voxels of a partial-label sample, log(p_background + Σ p_missing); the same
    figures as gathering from :func:`marginal_log_probabilities`, without building its
    folded ``[B, C, ...]`` tensor (a target is never a class its map lacks). Building and
    stacking that tensor doubled a training step of two 96³ patches with one paper map in
    the batch (session 15). The sum is one matrix-vector product on the classes-last
    probabilities (session 16: 6 ms instead of 42 ms for a logsumexp over the five
    channels of a 96³ patch); voxels where it underflows take the logsumexp.

    Also returns, for the backward pass, those underflowing background voxels of each
    partial sample: ``(sample, voxel indices, folded channels, shares p_k / q_t)``."""
    by_voxel = _classes_last(probabilities)
    rows = []
    underflow: list[Underflow] = []
    for sample in range(probabilities.shape[0]):
        row = at_target[sample]
        if bool(missing[sample].any()):
            pooled = missing[sample].clone()
            pooled[0] = True
            folded = torch.mv(by_voxel[sample], pooled.to(by_voxel.dtype))
            log_folded = folded.log()
            background = index[sample].flatten() == 0  # where the fold is the target
            small = torch.nonzero((folded < _FOLD_UNDERFLOW) & background).flatten()
            if small.numel():
                channels = torch.nonzero(pooled).flatten()
                chosen = _classes_last(log_probabilities[sample:sample + 1])[0, small]
                chosen = chosen.index_select(1, channels)
                log_folded[small] = torch.logsumexp(chosen, dim=1)
                underflow.append((sample, small, channels, torch.softmax(chosen, dim=1)))
            row = torch.where(background.view_as(row), log_folded.view_as(row), row)
        rows.append(row)
    return torch.stack(rows), underflow


def build_loss(name: LossName, weights: NDArray[np.floating] | None = None) -> nn.Module:
    """Loss module by name: ``dice``, ``ce``, ``dice_ce`` or ``weighted_ce``.

    ``weighted_ce`` needs ``weights`` (see :func:`class_weights`); ``dice_ce`` uses them
    for its CE term when given.
    """
    tensor = None if weights is None else torch.as_tensor(np.asarray(weights), dtype=torch.float32)
    if name == "dice":
        return SegmentationLoss(ce_weight=0.0)
    if name == "ce":
        return SegmentationLoss(dice_weight=0.0)
    if name == "weighted_ce":
        if tensor is None:
            raise SubctConfigError("loss 'weighted_ce' needs class weights")
        return SegmentationLoss(tensor, dice_weight=0.0)
    if name == "dice_ce":
        return SegmentationLoss(tensor)
    raise SubctConfigError(f"unknown loss {name!r}; use dice, ce, dice_ce or weighted_ce")
