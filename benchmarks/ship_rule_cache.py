"""A disk cache of the ship rule's *baseline* figures, so a run scores only the candidate.

Every ship-rule run segmented each case twice, once per model, although the baseline (the
shipped weights) rarely changes: half of every run (4 of 8 minutes for the validation
sets, ~8 of 17 for all) recomputed figures already known. A set's figures are a pure
function of

* the baseline's weights (their SHA-256, not their path),
* the set and its drawing parameters (seed, samples per map, paper maps and their seed),
* the engine and arithmetic that ran the network (``openvino`` fp32, ``torch`` bf16, …:
  bf16 and fp32 labels differ at boundaries),
* the code that draws, segments and scores the cases: every module of ``src/subct`` but
  the packages the rule never imports (:data:`UNUSED_PACKAGES`: the trainer, the CLI, the
  MRI-side dataset builder; an edit there would otherwise throw the cache away while a
  training run is being tuned), the benchmark modules the rule imports (an edited
  pipeline re-scores), and the versions of torch, MONAI, numpy, SciPy and the engines.

The key hashes all of these, so a stale entry is never read: it is simply not found.
Entries live in ``$SUBCT_CACHE_DIR/ship_rule/<key>.json`` (:func:`subct.paths.cache_dir`)
and are written atomically (temporary file, then rename). ``--no-cache`` bypasses it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

#: bump when the meaning of a cached entry changes
CACHE_VERSION = 2
BENCHMARKS = Path(__file__).resolve().parent
#: the benchmark modules whose code decides the figures
BENCHMARK_MODULES = ("ship_rule.py", "bench_shipped_model.py", "bench_paper_test_maps.py",
                     "paired_models.py")
#: packages of ``src/subct`` the rule does not import (checked in ``code_fingerprint``)
UNUSED_PACKAGES = ("cli", "dataset", "training", "transfer")
LIBRARIES = ("torch", "monai", "numpy", "scipy", "SimpleITK", "openvino", "onnxruntime")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 over the package's modules, the rule's benchmark modules and library versions."""
    import subct

    digest = hashlib.sha256(f"ship rule cache v{CACHE_VERSION}\n".encode())
    package = Path(subct.__file__).resolve().parent
    loaded = {name.split(".")[1] for name in sys.modules if name.startswith("subct.")}
    if loaded & set(UNUSED_PACKAGES):  # the figures may depend on them after all
        raise RuntimeError(f"ship rule imported {sorted(loaded & set(UNUSED_PACKAGES))}: "
                           "remove them from ship_rule_cache.UNUSED_PACKAGES")
    modules = sorted(path for path in package.rglob("*.py")
                     if path.relative_to(package).parts[0] not in UNUSED_PACKAGES)
    modules += [BENCHMARKS / name for name in BENCHMARK_MODULES]
    for module in modules:
        digest.update(str(module.relative_to(module.parents[1])).encode())
        digest.update(hashlib.sha256(module.read_bytes()).digest())
    for library in LIBRARIES:
        try:
            version = metadata.version(library)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{library}={version}\n".encode())
    return digest.hexdigest()


def entry_key(weights: Path, set_name: str, parameters: dict[str, Any], engine: str) -> str:
    """The cache key of one model's figures on one set (see the module docstring)."""
    from subct.model.graphs import file_sha256

    payload = json.dumps({"weights": file_sha256(weights), "set": set_name,
                          "parameters": parameters, "engine": engine,
                          "code": code_fingerprint()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def cache_folder() -> Path:
    """``$SUBCT_CACHE_DIR/ship_rule`` (:func:`subct.paths.cache_dir`)."""
    from subct.paths import cache_dir

    return cache_dir() / "ship_rule"


def load_entry(key: str) -> dict[str, Any] | None:
    """The cached figures (a ``SetResult`` as a dict), or None when absent or unreadable."""
    path = cache_folder() / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def save_entry(key: str, result: object) -> None:
    """Store a ``SetResult`` (a dataclass) under ``key``, atomically."""
    from subct.io.writers import atomic_write_text

    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{key}.json", json.dumps(asdict(result)))  # type: ignore[call-overload]
