"""The training loss alone: forward + backward time of Dice + CE on one batch of logits.

Model v2's batches mix whole-head maps (every class labelled) with the ensemble paper's
maps (no amygdala or accumbens: the marginal loss folds those classes into background),
and the CPU loop keeps its activations channels-last. Two ways are timed on the same
logits (2 × 18 classes × patch³, float32) and targets, fully and partially labelled:

* ``session 14``: the loss as it was: logits copied to the standard layout, the whole
  folded ``[B, C, ...]`` log-probability tensor built (``marginal_log_probabilities``),
  then Dice + CE on it (``plain_dice_ce``);
* ``SegmentationLoss``: the shipped loss: log-softmax on a classes-last view of
  channels-last logits, background folded only at the target and in the Dice sums.

Both give the same value (checked here, and with gradients in tests/model/test_losses.py).
Usage: ``python benchmarks/bench_loss.py [--patch 64 96] [--repeats 5]``; run on a quiet
machine (prints the CPU line and the load).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from subct.model.losses import build_loss, marginal_log_probabilities, plain_dice_ce
from subct.model.runtime import cpu_line

CLASSES = 18
#: The paper maps' missing classes (amygdala and accumbens, left and right) as indices.
PAPER_MISSING = (8, 9, 16, 17)


def session14_loss(logits: torch.Tensor, target: torch.Tensor,
                   labelled: torch.Tensor | None) -> torch.Tensor:
    return plain_dice_ce(marginal_log_probabilities(logits.contiguous(), labelled), target)


def seconds_per_call(loss: Callable[..., torch.Tensor], logits: torch.Tensor,
                     target: torch.Tensor, labelled: torch.Tensor | None, repeats: int
                     ) -> tuple[float, float]:
    """(wall, CPU) seconds of one forward + backward, best of ``repeats``."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeats + 1):  # the first call warms the allocator
        leaf = logits.detach().requires_grad_()
        wall, cpu = time.perf_counter(), time.process_time()
        loss(leaf, target, labelled).backward()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(cpu_line())
    print(f"load: {os.getloadavg()}; torch threads {torch.get_num_threads()}")
    print("| patch | labels | session 14 ms (CPU ms) | SegmentationLoss ms (CPU ms) | speed-up |")
    print("|---|---|---|---|---|")
    shipped = build_loss("dice_ce")
    for patch in args.patch:
        generator = torch.Generator().manual_seed(patch)
        logits = torch.randn(2, CLASSES, patch, patch, patch, generator=generator).to(
            memory_format=torch.channels_last_3d)
        target = torch.randint(0, CLASSES, (2, patch, patch, patch), generator=generator)
        partial = torch.ones(2, CLASSES, dtype=torch.bool)
        partial[0, list(PAPER_MISSING)] = False
        target[0][torch.isin(target[0], torch.tensor(PAPER_MISSING))] = 0
        for name, labelled in (("all labelled", None), ("one paper map", partial)):
            old_value = session14_loss(logits, target, labelled)
            new_value = shipped(logits, target, labelled)
            if not torch.allclose(old_value, new_value, atol=1e-5):
                raise SystemExit(f"losses differ: {float(old_value)} vs {float(new_value)}")
            old = seconds_per_call(session14_loss, logits, target, labelled, args.repeats)
            new = seconds_per_call(shipped, logits, target, labelled, args.repeats)
            print(f"| {patch}³ | {name} | {1000 * old[0]:.0f} ({1000 * old[1]:.0f}) | "
                  f"{1000 * new[0]:.0f} ({1000 * new[1]:.0f}) | {old[0] / new[0]:.2f}× |",
                  flush=True)


if __name__ == "__main__":
    main()
