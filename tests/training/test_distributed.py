"""DDP on CPU: two gloo processes train a couple of steps and end with identical weights."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from subct.training.config import training_config_from_dict
from tests.support.datasets import make_tiny_nnunet_dataset


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(rank: int, world_size: int, port: int, values: dict, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    from subct.training.distributed import context_from_environment, shutdown
    from subct.training.loop import train

    context = context_from_environment()
    steps: list[float] = []
    try:
        result = train(training_config_from_dict(values), context=context,
                       on_step=lambda _step, loss: steps.append(loss))
        digest = hashlib.sha256()  # of the weights this rank ended with
        for parameter in result.network.parameters():
            digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
        Path(out, f"rank{rank}.txt").write_text(f"{digest.hexdigest()} {len(steps)}")
    finally:
        shutdown(context)




def test_two_gloo_ranks_train_and_agree_on_weights(tmp_path: Path) -> None:
    dataset = make_tiny_nnunet_dataset(tmp_path / "Dataset001_Tiny")
    values = {
        "output_dir": str(tmp_path / "run"), "seed": 1, "progress_bar": False,
        "evaluate_after_training": False,
        "data": {"real": {"dataset_dir": str(dataset)}, "validation_samples": 1,
                 "patch_size": [16, 16, 16], "batch_size": 1, "samples_per_epoch": 4},
        "network": {"name": "unet3d", "kwargs": {"channels": [4, 8]}},
        "optimiser": {"lr": 1e-2},
        "schedule": {"epochs": 1},
    }
    mp.spawn(_worker, args=(2, _free_port(), values, str(tmp_path)), nprocs=2, join=True)
    rank0 = (tmp_path / "rank0.txt").read_text().split()
    rank1 = (tmp_path / "rank1.txt").read_text().split()
    assert rank0[1] == rank1[1] == "2"  # 4 samples split over 2 ranks, batch 1
    assert rank0[0] == rank1[0]
    assert (tmp_path / "run" / "last.safetensors").is_file()
