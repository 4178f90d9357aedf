"""End-to-end training throughput: synthetic patches per second through the real loop.

What a training run actually does per patch: draw a synthetic CT patch from a label map
(:class:`subct.training.data.PatchStream`, the generator of the run's config), then one
optimiser step of the run's network, loss and precision (:func:`subct.training.loop`'s
own ``_build_run`` / ``_train_epoch``). Three figures per setting:

* ``synth``: patches per second of synthesis alone (one process, this thread count);
* ``step``: patches per second of forward + backward + Adam on patches made beforehand;
* ``loop``: patches per second of the real loop with ``data.num_workers`` processes
  synthesising while the main process steps (how the two cores are split), timed from
  the first batch's arrival: a worker's start (process, label bank, first-sample caches)
  is paid once per epoch and reported apart as ``loop start s`` (0.1–0.2 s on the
  model-v2 config: the loop trails the step because synthesis shares the two cores).

Every row records wall and CPU seconds (this process and its workers) and the CPU line
(model, flags, native bf16). Usage::

    python benchmarks/bench_training_throughput.py --config configs/model_v2.yaml \
        --patch 64 96 --precision fp32 bf16 --steps 24

Run on a quiet machine (other jobs collapse PyTorch's threads); ``uptime`` is printed.
``--malloc retain`` runs it with freed memory kept for reuse
(:func:`subct.model.runtime.retain_freed_memory`), which ``subct train`` does not do: the
default ``system`` is what the trainer runs with.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from subct.model.runtime import cpu_line, retain_freed_memory
from subct.training import data as training_data
from subct.training.config import load_training_config
from subct.training.distributed import single_process
from subct.training.loop import _build_run, _train_epoch


@dataclass
class Timing:
    """Seconds of one measured block: wall clock and CPU (self + reaped children)."""

    wall_s: float
    cpu_s: float


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _Clock:
    def __enter__(self) -> _Clock:
        self._wall, self._cpu = time.perf_counter(), _cpu_seconds()
        return self

    def __exit__(self, *_: Any) -> None:
        self.timing = Timing(time.perf_counter() - self._wall, _cpu_seconds() - self._cpu)


def _config(path: str, patch: int, precision: str, batch: int, workers: int,
            samples: int, output: str, extra: list[str]) -> Any:
    autocast = {"fp32": "\"off\"", "bf16": "bf16", "auto": "auto"}[precision]
    return load_training_config(path, [
        f"output_dir={output}", f"data.patch_size=[{patch},{patch},{patch}]",
        f"data.batch_size={batch}", f"data.num_workers={workers}",
        f"data.samples_per_epoch={samples}", "data.validation_samples=1",
        f"precision.autocast={autocast}", "pipeline_validation.every_epochs=0",
        "transfer.init_checkpoint=null", "progress_bar=false",
        "evaluate_after_training=false", *extra])


def measure(config_path: str, patch: int, precision: str, batch: int, workers: int,
            steps: int, extra: list[str], banks: dict[str, Any]) -> dict[str, Any]:
    """Synthesis, step and loop throughput for one setting (patches per second).
    ``banks`` keeps the label bank between settings (it depends on the maps only)."""
    with tempfile.TemporaryDirectory() as output:
        samples = steps * batch
        config = _config(config_path, patch, precision, batch, workers, samples, output, extra)
        context = single_process()
        if "bank" not in banks:  # minutes for the 142 maps of model v2: built once
            banks["bank"] = training_data.build_label_bank(
                config, config.data.synthetic.label_maps)
        bank = banks["bank"]
        run = _build_run(config, context, [], bank)
        stream = training_data.PatchStream(config, [], bank, samples=samples)

        stream.set_epoch(0)
        iterator = iter(stream)
        next(iterator)  # first sample: caches, lookup tables
        with _Clock() as synth:
            patches = [next(iterator) for _ in range(samples - 1)]
        synth_rate = (samples - 1) / synth.timing.wall_s

        loader = DataLoader(patches, batch_size=batch, num_workers=0)
        _train_epoch(run, DataLoader(patches[:batch], batch_size=batch), config,
                     context.device, None, lambda _loss: None)  # warm-up (oneDNN primitives)
        with _Clock() as step:
            _train_epoch(run, loader, config, context.device, None, lambda _loss: None)
        step_rate = len(patches) // batch * batch / step.timing.wall_s

        stream.set_epoch(1)
        loader = DataLoader(stream, batch_size=batch, num_workers=workers,
                            persistent_workers=False)
        with _Clock() as start:
            batches = iter(loader)
            first = next(batches)  # worker start-up and its first batch, timed apart
        with _Clock() as loop:
            _train_epoch(run, itertools.chain([first], batches),  # type: ignore[arg-type]
                         config, context.device, None, lambda _loss: None)
        loop_rate = samples / loop.timing.wall_s
    return {"patch": patch, "precision": precision, "batch": batch, "workers": workers,
            "threads": torch.get_num_threads(), "synth": synth_rate, "step": step_rate,
            "loop": loop_rate, "loop_wall_s": loop.timing.wall_s,
            "loop_start_s": start.timing.wall_s,
            "loop_cpu_s": loop.timing.cpu_s, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/model_v2.yaml")
    parser.add_argument("--patch", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"],
                        choices=["fp32", "bf16", "auto"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1],
                        help="DataLoader processes synthesising beside the step")
    parser.add_argument("--steps", type=int, default=16, help="optimiser steps per figure")
    parser.add_argument("--set", action="append", default=[], dest="extra",
                        help="extra config override, KEY=VALUE")
    parser.add_argument("--malloc", choices=["system", "retain"], default="system",
                        help="glibc's allocator as is (as subct train), or retaining freed memory")
    args = parser.parse_args()
    retained = args.malloc == "retain" and retain_freed_memory()
    if not Path(args.config).is_file():
        parser.error(f"{args.config}: config not found")
    print(cpu_line())
    print(f"load: {os.getloadavg()}; torch threads {torch.get_num_threads()}; "
          f"freed memory retained: {retained}; config {args.config} {' '.join(args.extra)}")
    print("| patch | precision | batch | workers | synth patches/s | step patches/s "
          "| loop patches/s | loop wall s | loop CPU s | loop start s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    banks: dict[str, Any] = {}
    for patch in args.patch:
        for precision in args.precision:
            for workers in args.workers:
                row = measure(args.config, patch, precision, args.batch, workers,
                              args.steps, args.extra, banks)
                print(f"| {patch}³ | {precision} | {row['batch']} | {workers} | "
                      f"{row['synth']:.2f} | {row['step']:.2f} | **{row['loop']:.2f}** | "
                      f"{row['loop_wall_s']:.1f} | {row['loop_cpu_s']:.1f} | "
                      f"{row['loop_start_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
