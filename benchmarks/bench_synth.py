"""Benchmark of the synthetic-image generator: seconds per sample at 160³.

Measures, on real SynthSeg training label maps from ``../shared/data``:

* CT mode without CT noise (the issue's target: ≥ 2 samples/s on the 2-core CPU),
* generic (SynthSeg GMM) mode,
* a ``SyntheticDataset`` through a torch ``DataLoader`` with worker processes
  (each worker runs one torch thread),
* CT mode with projection noise (forward projection, Poisson, FBP) on every sample,
  once with 5 mm axial slices (clinical protocol) and once at 1 mm (no resolution
  simulation, the slowest case: 160 slices reconstructed).

Usage::

    python benchmarks/bench_synth.py [--maps 4] [--samples 10] [--device cpu|cuda]
        [--threads N] [--shape 160 160 160] [--loader-workers 2]

Prints one line per case and the 1/5/15-minute load average, since timings on a
shared machine are pessimistic.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from subct.paths import shared_data_dir
from subct.synth import LabelBank, SynthConfig, SyntheticDataset, SynthGenerator
from subct.synth.config import ResolutionConfig


def time_samples(
    generator: SynthGenerator, count: int, device: str
) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU seconds per sample, ``count`` samples after a warm-up.

    CPU time is reported because on a shared machine it is much less inflated by other
    processes than wall time (with one torch thread it equals the idle wall time).
    """
    generator.sample()
    durations, cpu_times = [], []
    for _ in range(count):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        sample = generator.sample()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
        del sample
    return durations, cpu_times


def main() -> int:
    from subct.model.runtime import cpu_line

    print(cpu_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=4, help="label maps to load (of 20)")
    parser.add_argument("--samples", type=int, default=10, help="timed samples per case")
    parser.add_argument("--noise-samples", type=int, default=3,
                        help="timed samples for the CT-noise cases")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 160, 160))
    parser.add_argument("--data", type=Path, default=None, help="shared data folder")
    parser.add_argument("--loader-workers", type=int, default=2,
                        help="also time SyntheticDataset through a DataLoader (0: skip)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = (args.data or shared_data_dir()) / "label_maps" / "synthseg"
    paths = sorted(folder.glob("training_seg_*.nii.gz"))[: args.maps]
    if not paths:
        print(f"no label maps in {folder}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    bank = LabelBank(paths)
    print(f"loaded {len(paths)} label maps in {time.perf_counter() - start:.1f} s")
    shape = tuple(args.shape)
    axial_5mm = ResolutionConfig(probability=1.0, spacing_range_mm=(5.0, 5.0),
                                 axis_probabilities=(0.0, 0.0, 1.0))
    cases: list[tuple[str, SynthConfig, int]] = [
        ("ct, no CT noise (defaults)", SynthConfig(output_shape=shape), args.samples),
        ("generic (SynthSeg GMM)", SynthConfig(mode="generic", output_shape=shape), args.samples),
    ]
    noisy = SynthConfig(output_shape=shape, resolution=axial_5mm)
    noisy.ct.noise.probability = 1.0
    cases.append(("ct + CT noise, 5 mm axial slices", noisy, args.noise_samples))
    noisy_thin = SynthConfig(output_shape=shape, resolution=ResolutionConfig(probability=0.0))
    noisy_thin.ct.noise.probability = 1.0
    cases.append(("ct + CT noise, 1 mm slices", noisy_thin, args.noise_samples))
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, "
          f"cpu cores {os.cpu_count()}, shape {shape}")
    for name, config, count in cases:
        generator = SynthGenerator(bank, config, device=args.device, seed=0)
        durations, cpu_times = time_samples(generator, count, args.device)
        median = statistics.median(durations)
        print(f"{name:34s} median {median:.3f} s/sample  min {min(durations):.3f}"
              f"  cpu {statistics.median(cpu_times):.3f}  -> {1.0 / median:.2f} samples/s"
              f"  (n={count})")
    if args.loader_workers > 0:
        dataset = SyntheticDataset(bank, SynthConfig(output_shape=shape), seed=0,
                                   samples_per_epoch=args.samples * args.loader_workers)
        loader = torch.utils.data.DataLoader(dataset, batch_size=None,
                                             num_workers=args.loader_workers)
        start = time.perf_counter()
        count = sum(1 for _ in loader)
        elapsed = time.perf_counter() - start
        print(f"{'DataLoader, ' + str(args.loader_workers) + ' workers, ct':34s} "
              f"{count / elapsed:.2f} samples/s over {count} samples (includes worker start)")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
