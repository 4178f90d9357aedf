"""Two models on a training run's full-pipeline validation heads, head by head.

The continuing run keeps the checkpoint whose ``pipeline_dice`` is best; this script
shows what that figure is made of for a candidate against a baseline (the shipped
weights by default): the run's own validation heads (``build_validation_heads`` of the
config: with ``generator: evaluation``, clean and clinical heads at 1 mm and as 5 mm
slabs), each segmented through :func:`subct.segment` by both models (paired), without
and with flip TTA, per head and per condition × resolution, with how many heads the
candidate won.

Usage::

    python benchmarks/bench_pipeline_validation.py --candidate /tmp/v2_ema596.safetensors \\
        [--baseline shipped] [--config configs/model_v2.yaml] [--tta off on] [--threads 1]

Prints a Markdown table per TTA setting and writes ``pipeline_validation.json`` to
``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from subct.inference.pipeline import segment
from subct.model.runtime import cpu_line
from subct.training.config import load_training_config
from subct.training.pipeline_validation import (
    ValidationHead,
    build_validation_heads,
    head_dice,
    pipeline_options,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paired_models import load_models  # noqa: E402


def group_of(head: ValidationHead) -> str:
    """``clinical 5mm``: the head's group (:attr:`ValidationHead.group`) and resolution."""
    match = re.search(r"_(\d+)mm$", head.name)
    return f"{head.group} {match.group(1) if match else '1'}mm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", required=True, help="checkpoint (.safetensors)")
    parser.add_argument("--baseline", default="shipped", help="checkpoint, or 'shipped'")
    parser.add_argument("--config", type=Path, default=Path("configs/model_v2.yaml"))
    parser.add_argument("--tta", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/pipeline_validation"))
    args = parser.parse_args()

    config = load_training_config(args.config)
    heads = build_validation_heads(config)
    paths = {"baseline": args.baseline, "candidate": args.candidate}
    models = load_models(paths, args.threads)
    print(f"{cpu_line()}; {len(heads)} heads of {args.config} "
          f"({config.pipeline_validation.generator} generator); baseline {args.baseline}, "
          f"candidate {args.candidate}", flush=True)
    report: dict[str, dict[str, dict[str, float]]] = {}
    for tta in args.tta:
        options = pipeline_options(config.label_scheme, tta=tta == "on")
        scores: dict[str, dict[str, float]] = {label: {} for label in models}
        for head in heads:
            for label, model in models.items():
                start = time.perf_counter()
                result = segment(head.ct, model=model, config=options)
                scores[label][head.name] = head_dice(np.asarray(result.labels.array), head,
                                                     config.label_scheme)
                print(f"  tta {tta} {head.name} {label}: {scores[label][head.name]:.3f} "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)
        report[f"tta {tta}"] = scores
        groups: dict[str, list[str]] = {}
        for head in heads:
            groups.setdefault(group_of(head), []).append(head.name)
        groups["all"] = [head.name for head in heads]
        print(f"\n| TTA {tta} | baseline | candidate | difference | heads won |\n"
              "|---|---|---|---|---|")
        for group, members in groups.items():
            base = np.mean([scores["baseline"][m] for m in members])
            cand = np.mean([scores["candidate"][m] for m in members])
            won = sum(scores["candidate"][m] > scores["baseline"][m] for m in members)
            print(f"| {group} | {base:.4f} | {cand:.4f} | {cand - base:+.4f} | "
                  f"{won} of {len(members)} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline_validation.json").write_text(json.dumps(
        {"baseline": args.baseline, "candidate": args.candidate, "config": str(args.config),
         "scores": report}, indent=1))


if __name__ == "__main__":
    main()
