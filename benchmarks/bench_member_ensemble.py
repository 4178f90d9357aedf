"""Test-time ensembles of two checkpoints, scored like ``bench_shipped_model.py``.

Runs ``bench_shipped_model.py`` (same arguments after ``--``) with an engine that combines
several checkpoints' networks in one of two ways:

* ``average``: every window goes through every member; the softmax maps are averaged
  (returned as log-probabilities, which the pipeline's softmax turns back into them);
  costs one network pass per member.
* ``split``: with the default flip TTA the pipeline sends each window as a batch of two,
  plain and mirrored; member 1 runs the plain copy and member 2 the mirrored one, so
  the ensemble costs what TTA costs already.

    python benchmarks/bench_member_ensemble.py --mode average \\
        --members src/subct/model/weights/ct_subcortical.safetensors \\
                  checkpoints/robust_ct_unet/candidate_mix.safetensors \\
        -- --model shipped --tuning --maps 17 18 --crop located --out /tmp/ens_average

Session 6 (docs/benchmarks.md, "Lesion QC"): neither way beat the shipped model alone
on the clean validation heads, so subct ships no ensemble.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

BENCHMARKS = Path(__file__).resolve().parent


class EnsembleEngine:
    """An :class:`subct.model.engines.Engine` over several members' engines."""

    name = "ensemble"

    def __init__(self, engines: list[Any], mode: str) -> None:
        self.engines = engines
        self.mode = mode

    def logits(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Combined logits of a batch (see the module docstring)."""
        if self.mode == "split":
            parts = [self.engines[index % len(self.engines)].logits(batch[index:index + 1])
                     for index in range(len(batch))]
            return np.concatenate(parts)
        total: NDArray[np.float32] | None = None
        for engine in self.engines:
            logits = engine.logits(batch)
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            probabilities = shifted / shifted.sum(axis=1, keepdims=True)
            total = probabilities if total is None else total + probabilities
        assert total is not None
        return np.log(total / len(self.engines) + 1e-8).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", nargs="+", required=True, help="checkpoints")
    parser.add_argument("--mode", choices=["average", "split"], default="average")
    args, rest = parser.parse_known_args()
    bench_args = rest[1:] if rest[:1] == ["--"] else rest

    import subct.inference.model as inference_model

    load = inference_model.load_model

    def load_ensemble(_model: Any = None, *options: Any, **keywords: Any) -> Any:
        members = [load(path, *options, **keywords) for path in args.members]
        first = members[0]
        first.engine = EnsembleEngine([member.engine for member in members], args.mode)
        return first

    inference_model.load_model = load_ensemble  # what bench_shipped_model.py calls
    sys.path.insert(0, str(BENCHMARKS))
    sys.argv = ["bench_shipped_model.py", *bench_args]
    runpy.run_path(str(BENCHMARKS / "bench_shipped_model.py"), run_name="__main__")


if __name__ == "__main__":
    main()
