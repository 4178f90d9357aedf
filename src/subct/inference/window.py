"""Gaussian-blended sliding windows over any engine (MONAI's placement and weights) and a
threaded softmax.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from subct.model.engines import Engine


@lru_cache(maxsize=8)
def gaussian_importance(window: tuple[int, ...], sigma_scale: float = 0.125
                        ) -> NDArray[np.float32]:
    """Blending weights of one window: a Gaussian of σ = ``sigma_scale`` × side (voxels),
    peak 1 at the centre, clamped below at max(min, 1e-3) — MONAI's ``gaussian`` mode."""
    weights = np.ones((), dtype=np.float32)
    for side in window:
        axis = np.arange(-(side - 1) / 2.0, (side - 1) / 2.0 + 1, dtype=np.float32)
        profile = np.exp(axis**2 / np.float32(-2.0 * (side * sigma_scale) ** 2))
        weights = np.multiply.outer(weights, profile.astype(np.float32))
    minimum = max(float(weights.min()), 1e-3)
    return np.maximum(weights, np.float32(minimum)).astype(np.float32)


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start indices of windows of ``window`` voxels covering ``size`` voxels.

    Step = int(window × (1 − overlap)) (at least 1); the last window is moved back to
    end at the border (MONAI's placement).
    """
    if window >= size:
        return [0]
    step = max(int(window * (1.0 - overlap)), 1)
    count = next(index for index in range(int(math.ceil(size / step)))
                 if index * step + window >= size) + 1
    return [min(index * step, size - window) for index in range(count)]


def sliding_window_logits(engine: Engine, images: NDArray[np.float32],
                          window: Sequence[int], overlap: float,
                          batch_size: int = 2, threads: int = 1) -> NDArray[np.float32]:
    """Gaussian-blended logits of ``engine`` over ``images`` ``(N, X, Y, Z)``.

    Every image is covered by windows of ``window`` voxels (clipped to the image);
    windows of all N images at the same place are run together, ``batch_size`` at a
    time, so a test-time-augmented pair costs one batched call per place. The blend
    (weighting and accumulating each window's logits) is split by channel over
    ``threads`` threads; every voxel still sums its windows in the same order, so the
    result does not depend on ``threads``.

    Returns:
        ``(N, C, X, Y, Z)`` float32 logits.
    """
    count, *shape = images.shape
    roi = tuple(min(int(w), int(s)) for w, s in zip(window, shape, strict=True))
    starts = [window_starts(s, w, overlap) for s, w in zip(shape, roi, strict=True)]
    places = [(x, y, z) for x in starts[0] for y in starts[1] for z in starts[2]]
    importance = gaussian_importance(roi)
    jobs = [(image, place) for place in places for image in range(count)]
    output: NDArray[np.float32] | None = None
    weight_sum = np.zeros(shape, dtype=np.float32)
    for x, y, z in places:
        weight_sum[x:x + roi[0], y:y + roi[1], z:z + roi[2]] += importance
    for first in range(0, len(jobs), batch_size):
        chunk = jobs[first:first + batch_size]
        batch = np.stack([images[image, x:x + roi[0], y:y + roi[1], z:z + roi[2]]
                          for image, (x, y, z) in chunk])[:, None]
        logits = engine.logits(batch)
        if output is None:
            output = np.zeros((count, logits.shape[1], *shape), dtype=np.float32)

        def blend(channels: slice, logits: NDArray[np.float32] = logits,
                  chunk: list[tuple[int, tuple[int, int, int]]] = chunk,
                  accumulator: NDArray[np.float32] = output) -> None:
            part = logits[:, channels]
            part *= importance  # in place, broadcast over batch and channels
            for (image, (x, y, z)), window_logits in zip(chunk, part, strict=True):
                accumulator[image, channels, x:x + roi[0], y:y + roi[1],
                            z:z + roi[2]] += window_logits

        in_parallel(blend, logits.shape[1], threads)
    assert output is not None
    result = output

    def normalise(channels: slice) -> None:
        result[:, channels] /= weight_sum

    in_parallel(normalise, result.shape[1], threads)
    return result


def in_parallel(task: Callable[[slice], None], length: int, threads: int) -> None:
    """Run ``task(part)`` over ``threads`` contiguous parts of ``range(length)``.

    For numpy work on large arrays, which releases the GIL: two threads halve the
    wall time of the sliding-window blend and the softmax on a 2-core machine.
    """
    parts = max(1, min(int(threads), length))
    bounds = np.linspace(0, length, parts + 1).round().astype(int)
    slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if parts == 1:
        task(slices[0])
        return
    for future in [_pool(parts).submit(task, part) for part in slices]:
        future.result()


@lru_cache(maxsize=4)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="subct-blend")


def softmax(logits: NDArray[np.float32], axis: int = 0, threads: int = 1,
            in_place: bool = False) -> NDArray[np.float32]:
    """Numerically stable softmax along ``axis`` (float32), in a new array or, with
    ``in_place``, over ``logits`` themselves (returned).

    The array is split along its longest other axis over ``threads`` threads, each
    normalising its part where it lies: no temporary as large as the array. A 2 × 18 ×
    112 × 160 × 144 TTA pair of logits is 370 MB; a new array and one temporary per thread
    took ~750 MB of freshly mapped memory per case, and its page faults cost 1–3 s of
    kernel time on a 2-core machine (1.6 s wall for a 0.15 s softmax; session 16), so the
    pipeline normalises its own logits in place.
    """
    axis = axis % logits.ndim
    result = logits if in_place else np.empty_like(logits, dtype=np.float32)
    split_axis = max((a for a in range(logits.ndim) if a != axis), key=lambda a: logits.shape[a])

    def part(index: slice) -> None:
        where: list[slice | int] = [slice(None)] * logits.ndim
        where[split_axis] = index
        block = result[tuple(where)]
        if not in_place:
            np.copyto(block, logits[tuple(where)])
        block -= block.max(axis=axis, keepdims=True)
        np.exp(block, out=block)
        block /= block.sum(axis=axis, keepdims=True)

    in_parallel(part, logits.shape[split_axis], threads)
    return result


def channel_argmax(channels: Sequence[NDArray[np.float32]] | NDArray[np.float32],
                    part: slice) -> NDArray[np.integer]:
    """Argmax over ``channels`` (channel maps, or a (C, X, Y, Z) array) of the slab
    ``part`` along x, by a running maximum: the first channel wins ties, as
    ``np.argmax``. Neither stacks the channels nor reduces over a large first axis
    (numpy's argmax over the first axis of 18 × 112 × 160 × 144 took 0.35 s on one
    core; stacking the mirrored pass's 18 channel views cost ~0.8 s of page faults per
    case on a 2-core machine, session 16)."""
    best = np.array(channels[0][part], dtype=np.float32)
    winner = np.zeros(best.shape, dtype=np.uint8 if len(channels) <= 256 else np.int32)
    for index in range(1, len(channels)):
        channel = channels[index][part]
        better = channel > best
        np.copyto(best, channel, where=better)
        winner[better] = index
    return winner


def class_argmax(probabilities: NDArray[np.float32], threads: int = 1) -> NDArray[np.int64]:
    """``probabilities.argmax(axis=0)`` for a (classes, X, Y, Z) array, in ``threads``
    slabs along x (:func:`channel_argmax` in each)."""
    result = np.empty(probabilities.shape[1:], dtype=np.int64)

    def part(index: slice) -> None:
        result[index] = channel_argmax(probabilities, index)

    in_parallel(part, probabilities.shape[1], threads)
    return result
