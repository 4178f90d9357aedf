"""Losses and class weights (head-CT paper formulas) checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subct.errors import SubctConfigError
from subct.model.losses import build_loss, class_voxel_counts, class_weights


def test_class_weights_match_hand_computation() -> None:
    # two maps, 3 classes: counts background 10+6=16, class 1: 4+1=5, class 2: 0+3=3 (N=24)
    first = np.array([0] * 10 + [1] * 4)
    second = np.array([0] * 6 + [1] * 1 + [2] * 3)
    assert class_voxel_counts([first, second], 3).tolist() == [16, 5, 3]
    balanced = class_weights([first, second], 3, mode="balanced")
    expected = np.array([24 / (3 * 16), 24 / (3 * 5), 24 / (3 * 3)])  # 0.5, 1.6, 2.667
    np.testing.assert_allclose(balanced, expected)
    cube = class_weights([first, second], 3, mode="cube_root")
    np.testing.assert_allclose(cube, [0.5 ** (1 / 3), 1.6 ** (1 / 3), (8 / 3) ** (1 / 3)])
    assert cube.max() / cube.min() < balanced.max() / balanced.min()  # attenuated


def test_absent_classes_get_the_largest_weight_and_bad_inputs_fail() -> None:
    weights = class_weights([np.array([0, 0, 0, 1])], 3, mode="balanced")
    np.testing.assert_allclose(weights, [4 / 9, 4 / 3, 4 / 3])
    with pytest.raises(SubctConfigError):
        class_weights([np.array([0, 5])], 3)
    with pytest.raises(SubctConfigError):
        class_weights([np.array([0, 1])], 2, mode="sqrt")  # type: ignore[arg-type]


def test_losses_are_small_for_right_and_large_for_wrong_predictions() -> None:
    target = torch.zeros(1, 4, 4, 4, dtype=torch.int64)
    target[:, 1:3, 1:3, 1:3] = 1
    good = torch.nn.functional.one_hot(target, 2).permute(0, 4, 1, 2, 3).float() * 20 - 10
    bad = -good
    for name in ("dice", "ce", "dice_ce", "weighted_ce"):
        loss = build_loss(name, weights=np.array([0.5, 2.0]))  # type: ignore[arg-type]
        assert float(loss(good, target)) < 0.01
        assert float(loss(bad, target)) > 0.5


def test_weighted_ce_equals_torch_reference_and_needs_weights() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 5, 5)
    target = torch.randint(0, 3, (2, 5, 5, 5))
    weights = np.array([0.2, 1.0, 3.0])
    loss = build_loss("weighted_ce", weights)
    reference = torch.nn.functional.cross_entropy(
        logits, target, weight=torch.tensor(weights, dtype=torch.float32))
    assert torch.allclose(loss(logits, target), reference)
    with pytest.raises(SubctConfigError):
        build_loss("weighted_ce")


def test_fused_dice_ce_equals_monai_dice_plus_torch_ce_with_gradients() -> None:
    from monai.losses import DiceLoss

    from subct.model.losses import plain_dice_ce

    torch.manual_seed(1)
    logits = torch.randn(2, 5, 6, 7, 8, requires_grad=True)
    target = torch.randint(0, 5, (2, 6, 7, 8))
    target[target == 3] = 0  # a class absent from the batch, as in small patches
    monai_dice = DiceLoss(include_background=True, to_onehot_y=True, softmax=True,
                          smooth_nr=1e-5, smooth_dr=1e-5, batch=True)
    reference = (monai_dice(logits, target.unsqueeze(1))
                 + torch.nn.functional.cross_entropy(logits, target))
    (expected_grad,) = torch.autograd.grad(reference, logits)
    fused = build_loss("dice_ce")(logits, target)
    (fused_grad,) = torch.autograd.grad(fused, logits)
    assert torch.allclose(fused, reference, atol=1e-6)
    assert torch.allclose(plain_dice_ce(torch.log_softmax(logits, dim=1), target), reference,
                          atol=1e-6)
    assert torch.allclose(fused_grad, expected_grad, atol=1e-6)


def test_marginal_loss_folds_missing_classes_into_background() -> None:
    from subct.model.losses import marginal_log_probabilities

    torch.manual_seed(2)
    logits = torch.randn(2, 4, 3, 3, 3, requires_grad=True)
    labelled = torch.tensor([[True, True, False, True], [True] * 4])
    folded = marginal_log_probabilities(logits, labelled)
    plain = torch.log_softmax(logits, dim=1)
    # sample 0: background carries the missing class 2, which gets probability 0
    assert torch.allclose(folded[0, 0].exp(), plain[0, 0].exp() + plain[0, 2].exp(), atol=1e-6)
    assert torch.isneginf(folded[0, 2]).all()
    assert torch.allclose(folded[0].exp().sum(0), torch.ones(3, 3, 3), atol=1e-5)
    assert torch.equal(folded[1], plain[1])  # a fully labelled sample is untouched
    # a background voxel of sample 0 predicted as the missing class costs (almost) nothing;
    # the same prediction on the fully labelled sample is penalised
    target = torch.zeros(2, 3, 3, 3, dtype=torch.int64)
    confident = torch.full((2, 4, 3, 3, 3), -10.0)
    confident[:, 2] = 10.0
    loss = build_loss("ce")
    partial_only = torch.tensor([[True, True, False, True], [True, True, False, True]])
    assert float(loss(confident, target, partial_only)) < 1e-3
    assert float(loss(confident, target)) > 10.0
    # and its gradient never pushes the missing channel down
    value = build_loss("dice_ce")(logits, target, labelled)
    (gradient,) = torch.autograd.grad(value, logits)
    assert torch.isfinite(gradient).all()


@pytest.mark.parametrize("labelled", [None, [[True, True, False, True, True], [True] * 5]])
def test_channels_last_logits_give_the_same_loss_and_gradient(
        labelled: list[list[bool]] | None) -> None:
    from subct.model.losses import log_softmax_over_classes

    torch.manual_seed(3)
    standard = torch.randn(2, 5, 6, 7, 8, requires_grad=True)
    channels_last = standard.detach().to(memory_format=torch.channels_last_3d)
    channels_last.requires_grad_(True)
    assert not channels_last.is_contiguous()
    view = log_softmax_over_classes(channels_last)
    # normalised over the classes, in the layout it came in (no copy to the standard one)
    assert view.shape == standard.shape
    assert view.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.allclose(view, torch.log_softmax(standard, dim=1), atol=1e-6)
    target = torch.randint(0, 5, (2, 6, 7, 8))
    flags = None if labelled is None else torch.tensor(labelled)
    loss = build_loss("dice_ce")
    value_standard = loss(standard, target, flags)
    value_last = loss(channels_last, target, flags)
    (grad_standard,) = torch.autograd.grad(value_standard, standard)
    (grad_last,) = torch.autograd.grad(value_last, channels_last)
    assert torch.allclose(value_standard, value_last, atol=1e-6)
    assert torch.allclose(grad_standard, grad_last, atol=1e-6)


def test_partial_label_loss_equals_the_loss_on_the_folded_probabilities() -> None:
    """The loss folds a partial-label sample's missing classes into background at the
    target and in the Dice sums only; it must equal Dice + CE computed on the whole
    folded tensor of :func:`marginal_log_probabilities`, value and gradient."""
    from subct.model.losses import marginal_log_probabilities, plain_dice_ce

    torch.manual_seed(4)
    logits = torch.randn(3, 6, 5, 6, 7, requires_grad=True)
    target = torch.randint(0, 6, (3, 5, 6, 7))
    labelled = torch.tensor([[True, True, False, True, True, False], [True] * 6,
                             [True, False, True, True, True, True]])
    target[0][(target[0] == 2) | (target[0] == 5)] = 0  # a map never labels what it lacks
    target[2][target[2] == 1] = 0
    expected = plain_dice_ce(marginal_log_probabilities(logits, labelled), target)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    value = build_loss("dice_ce")(logits, target, labelled)
    (grad,) = torch.autograd.grad(value, logits)
    assert torch.allclose(value, expected, atol=1e-6)
    assert torch.allclose(grad, expected_grad, atol=1e-6)
    # the channels-last layout of the CPU training loop gives the same
    channels_last = logits.detach().to(memory_format=torch.channels_last_3d).requires_grad_()
    value_last = build_loss("dice_ce")(channels_last, target, labelled)
    (grad_last,) = torch.autograd.grad(value_last, channels_last)
    assert torch.allclose(value_last, expected, atol=1e-6)
    assert torch.allclose(grad_last, expected_grad, atol=1e-6)


def test_partial_label_fold_survives_underflowing_probabilities() -> None:
    """Where the target is all but impossible (a confident wrong prediction: its float32
    probability underflows), the loss and its gradient must still be those of the plain
    formula: the folded log-probability finite (the log-sum-exp of the folded tensor), and
    the cross-entropy gradient −ω toward the target's classes, not 0."""
    from subct.model.losses import marginal_log_probabilities, plain_dice_ce

    torch.manual_seed(5)
    logits = torch.randn(2, 6, 4, 5, 6)
    logits[0, 1, :2] = 120.0  # class 1 certain on two slices of the partial sample
    logits[1, 3, 3] = 120.0  # and class 3 on one slice of the fully labelled one
    logits = logits.requires_grad_()
    target = torch.randint(0, 6, (2, 4, 5, 6))
    labelled = torch.tensor([[True, True, False, True, True, False], [True] * 6])
    target[0][(target[0] == 2) | (target[0] == 5)] = 0
    target[0, :2] = 0  # ... where the map says background
    target[0, 0, 0] = 1  # ... but for two voxels, where it is right (no fold there)
    target[1, 3] = 1  # ... and class 1 (the CE gradient there must stay −ω, not vanish)
    expected = plain_dice_ce(marginal_log_probabilities(logits, labelled), target)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    value = build_loss("dice_ce")(logits, target, labelled)
    (grad,) = torch.autograd.grad(value, logits)
    assert torch.isfinite(value) and float(value.detach()) > 10.0  # ~120 nats there
    assert torch.allclose(value, expected, rtol=1e-5)
    assert torch.allclose(grad, expected_grad, atol=1e-5)


@pytest.mark.parametrize("name", ["dice", "ce", "weighted_ce", "dice_ce"])
def test_every_loss_has_the_gradient_of_its_plain_formula(name: str) -> None:
    """The written-out backward against autograd through MONAI's Dice and torch's
    (weighted) cross-entropy, for each loss variant and for class weights."""
    from monai.losses import DiceLoss

    torch.manual_seed(5)
    logits = torch.randn(2, 5, 4, 6, 5, requires_grad=True)
    target = torch.randint(0, 5, (2, 4, 6, 5))
    weights = torch.tensor([0.2, 1.0, 3.0, 0.7, 1.5])
    use_weights = name in ("weighted_ce", "dice_ce")
    dice = DiceLoss(include_background=True, to_onehot_y=True, softmax=True,
                    smooth_nr=1e-5, smooth_dr=1e-5, batch=True)(logits, target.unsqueeze(1))
    ce = torch.nn.functional.cross_entropy(logits, target,
                                           weight=weights if use_weights else None)
    reference = {"dice": dice, "ce": ce, "weighted_ce": ce, "dice_ce": dice + ce}[name]
    (expected,) = torch.autograd.grad(reference, logits)
    loss = build_loss(name, weights.numpy() if use_weights else None)  # type: ignore[arg-type]
    value = loss(logits, target)
    (gradient,) = torch.autograd.grad(3.0 * value, logits)  # an upstream factor is applied
    assert torch.allclose(value, reference, atol=1e-6)
    assert torch.allclose(gradient, 3.0 * expected, atol=1e-6)
