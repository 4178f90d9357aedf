"""Class probabilities from the network: sliding windows, left/right flip TTA, MC dropout.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from subct.inference.window import (
    channel_argmax,
    in_parallel,
    sliding_window_logits,
    softmax,
)
from subct.labels.schemes import (
    scheme_labels,
)
from subct.model.engines import Engine, TorchEngine

if TYPE_CHECKING:
    import torch

from subct.inference.config import InferenceConfig
from subct.inference.model import SegmentationModel
from subct.labels.schemes import lr_swap_permutation


def predict_probabilities(model: SegmentationModel, image: NDArray[np.float32],
                          config: InferenceConfig, flip_lr: bool | None = None,
                          engine: Engine | None = None,
                          agreement: dict[int, float] | None = None) -> NDArray[np.float32]:
    """Softmax of the network on a normalised crop ``image`` (X, Y, Z) → (C, X, Y, Z).

    With ``flip_lr=None`` the test-time augmentation follows ``config.tta``: the image
    and its left/right mirror run together (one batch of two per window place), the
    mirrored output is mirrored back with left and right channels swapped, and the two
    softmax maps are averaged. ``True``/``False`` force the mirrored-only or plain pass.

    ``agreement``, when given and both passes ran, receives per class index the Dice
    between the plain and the mirrored pass's labels: how much the structure depends on
    which way round the network saw the head (a per-structure reliability figure).
    """
    engine = engine or model.engine
    plain = not flip_lr if flip_lr is not None else True
    mirrored = flip_lr if flip_lr is not None else config.tta
    images = [image] if plain else []
    if mirrored:
        images.append(image[::-1])
    stack = np.ascontiguousarray(np.stack(images), dtype=np.float32)
    window = model.window_size
    fits_window = all(size <= limit for size, limit in zip(image.shape, window, strict=True))
    if fits_window or image.size <= config.max_single_pass_voxels:
        # the engine's own output buffer (reused by its next call): normalised into a copy
        probabilities = softmax(engine.logits(stack[:, None]), axis=1, threads=model.threads)
    else:  # the blended logits are this call's own array: normalised where they lie
        probabilities = softmax(
            sliding_window_logits(engine, stack, window, config.sliding_window_overlap,
                                  batch_size=len(images), threads=model.threads),
            axis=1, threads=model.threads, in_place=True)
    if mirrored:
        # channel views of the mirrored pass, mirrored back with left and right swapped
        # (a view per channel: no copy of the whole map)
        swap = lr_swap_permutation(model.network_scheme)
        flipped = [probabilities[-1][source, ::-1] for source in swap]
        if plain:
            if agreement is not None:
                agreement.update(_pass_agreement(probabilities[0], flipped, model.threads))
            for channel, mirrored_channel in enumerate(flipped):
                probabilities[0][channel] += mirrored_channel
            probabilities[0] *= np.float32(0.5)
            return probabilities[0]
        return np.ascontiguousarray(np.stack(flipped))
    return probabilities[0]


def _pass_agreement(first: NDArray[np.float32],
                    second: Sequence[NDArray[np.float32]] | NDArray[np.float32],
                    threads: int = 1) -> dict[int, float]:
    """Dice per foreground class between the argmax labels of two softmax maps
    (``second``: a (C, X, Y, Z) array or its C channel maps).

    The two argmaxes and the joint count run in ``threads`` slabs along x (numpy
    releases the GIL), which halves the 0.6 s of one thread on a 2-core machine.
    """
    classes = first.shape[0]
    joint = np.zeros(classes * classes, dtype=np.int64)
    lock = threading.Lock()

    def count(part: slice) -> None:
        a = channel_argmax(first, part).ravel().astype(np.int64)
        b = channel_argmax(second, part).ravel()
        table = np.bincount(a * classes + b, minlength=classes * classes)
        with lock:
            joint[:] += table

    in_parallel(count, first.shape[1], threads)
    square = joint.reshape(classes, classes)
    scores = {}
    for index in range(1, classes):
        total = square[index, :].sum() + square[:, index].sum()
        if total:
            scores[index] = float(2.0 * square[index, index] / total)
    return scores


def has_dropout(network: torch.nn.Module) -> bool:
    """True when the network has a dropout layer with a non-zero rate (MONAI builds
    ``Dropout(p=0)`` layers even for ``dropout=0``, which sample nothing)."""
    import torch

    dropout_types = (torch.nn.Dropout, torch.nn.Dropout2d, torch.nn.Dropout3d)
    return any(isinstance(module, dropout_types) and float(module.p) > 0.0
               for module in network.modules())


def mc_dropout_volumes(model: SegmentationModel, image: NDArray[np.float32],
                       config: InferenceConfig, voxel_volume_mm3: float
                       ) -> NDArray[np.float64] | None:
    """Structure volumes (mm³) of each Monte-Carlo dropout pass: shape (N, structures).

    The passes run on PyTorch whatever the engine (an exported graph has no dropout).
    Returns None when the network has no dropout layers (all passes would agree).
    """
    if config.mc_dropout_samples < 2:
        return None
    from subct.model.networks import enable_mc_dropout  # torch: only for MC dropout

    network = model.torch_network()
    enable_mc_dropout(network)
    try:
        if not has_dropout(network):
            return None
        import torch

        engine = TorchEngine(network, torch.device(model.device), model.precision)
        num_classes = len(scheme_labels(model.network_scheme)) + 1
        volumes = np.zeros((config.mc_dropout_samples, num_classes - 1), dtype=np.float64)
        single = config.replace(tta=False)
        for sample in range(config.mc_dropout_samples):
            indices = predict_probabilities(model, image, single, engine=engine).argmax(axis=0)
            counts = np.bincount(indices.ravel(), minlength=num_classes)
            volumes[sample] = counts[1:] * voxel_volume_mm3
        return volumes
    finally:
        network.eval()
