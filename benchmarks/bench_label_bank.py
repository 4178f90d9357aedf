"""Time to build a training run's label bank (the start-up cost of every training session).

``subct.synth.LabelBank`` reads every training map once: whole-head SynthSeg maps are
cropped and their skull split; the ensemble paper's subcortical maps are converted to
FreeSurfer IDs, split left/right at the midline and embedded in a whole head first. The
continuing model v2 run reads 16 + 126 maps at every start.

Usage::

    python benchmarks/bench_label_bank.py [--paper-maps 20] [--heads 4] [--repeats 1] [--cache]

Prints wall and CPU seconds per map (paper maps and whole heads separately) with the CPU
line, and a digest of the bank (so a faster version can be checked to build the same one).
``--cache``: each bank is built and stored in a fresh disk cache
(:mod:`subct.synth.bank_cache`, as training does), then read back from it; both rows and
their digests are printed. ``--config configs/model_v2.yaml``: the run's own training
bank instead (``subct.training.data.build_label_bank``, all 142 maps), built into a fresh
``SUBCT_CACHE_DIR`` and then read back, as a run's first and later starts see it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

from subct.model.runtime import cpu_info
from subct.paths import CACHE_ENV, paper_masks_dir, shared_data_dir
from subct.synth.label_maps import LabelBank


def digest(bank: LabelBank) -> str:
    """SHA-256 over every stored map (compact indices, affine), the label coding and
    the unlabelled structures: equal digests mean identical banks."""
    hasher = hashlib.sha256(bank.label_values.tobytes())
    for stored in bank.maps:
        hasher.update(stored.indices.numpy().tobytes())
        hasher.update(stored.affine.tobytes())
        hasher.update(repr(stored.unlabelled).encode())
    return hasher.hexdigest()[:16]


def timed(sources: list[Path], background: list[Path] | None, repeats: int,
          cache: Path | None = None) -> tuple[float, float, str]:
    """Best wall and CPU seconds of ``repeats`` builds, and the bank's digest."""
    best_wall, best_cpu, bank_digest = float("inf"), float("inf"), ""
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        bank = LabelBank(sources, background=background, cache=cache)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        bank_digest = digest(bank)
    return best_wall, best_cpu, bank_digest


def run_config_bank(config_path: str) -> None:
    """First and later start of a training run: its bank built into an empty cache,
    then read back from it (wall and CPU seconds, and the digests)."""
    from subct.training.config import load_training_config
    from subct.training.data import build_label_bank

    config = load_training_config(config_path, [])
    assert config.data.synthetic is not None, f"{config_path}: no synthetic label maps"
    info = cpu_info()
    print(f"# CPU: {info.model}; flags: {' '.join(info.relevant_flags) or 'none'}")
    print("| start | maps | wall s | CPU s | bank digest |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        os.environ[CACHE_ENV] = folder
        for step in ("first (built + stored)", "later (read from the cache)"):
            wall, cpu = time.perf_counter(), time.process_time()
            bank = build_label_bank(config, config.data.synthetic.label_maps)
            print(f"| {step} | {len(bank)} | {time.perf_counter() - wall:.1f} | "
                  f"{time.process_time() - cpu:.1f} | {digest(bank)} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-maps", type=int, default=20)
    parser.add_argument("--heads", type=int, default=4, help="whole-head SynthSeg maps")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cache", action="store_true",
                        help="build into a fresh disk cache, then read it back")
    parser.add_argument("--config", help="time this training config's own bank instead")
    args = parser.parse_args()
    if args.config:
        run_config_bank(args.config)
        return
    synthseg = sorted((shared_data_dir() / "label_maps" / "synthseg").glob("training_seg_*.nii.gz"))
    heads = synthseg[:args.heads]
    paper = sorted((paper_masks_dir() / "segmentation_models_training" / "data" / "masks"
                    / "train").glob("*.nii.gz"))[:args.paper_maps]
    info = cpu_info()
    print(f"# CPU: {info.model}; flags: {' '.join(info.relevant_flags) or 'none'}")
    print("| maps | count | wall s per map | CPU s per map | bank digest |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        cache = Path(folder) if args.cache else None
        for name, sources, background in (("whole heads", heads, None),
                                          ("paper maps, embedded", paper, heads)):
            steps = ["built + stored", "read from the cache"] if cache else ["built"]
            for step in steps:
                wall, cpu, bank_digest = timed(sources, background, args.repeats, cache)
                print(f"| {name}, {step} | {len(sources)} | {wall / len(sources):.2f} | "
                      f"{cpu / len(sources):.2f} | {bank_digest} |", flush=True)


if __name__ == "__main__":
    main()
