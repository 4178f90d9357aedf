"""Compare two output folders of ``benchmarks/regression_outputs.sh`` (issue 13).

NIfTI arrays must be equal voxel for voxel; JSON, CSV, Markdown, HTML and logs equal
after removing timings, load averages, run-time details and the output, checkout and
model paths. Prints each difference and the count (0: the outputs are the same).

Usage: ``python benchmarks/compare_outputs.py OUT_BEFORE OUT_AFTER``
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

#: Keys whose values depend on the run, not on the results.
RUN_KEYS = {"timings_s", "runtime", "seconds", "created", "elapsed_s", "segment_seconds_mean",
            "wall_s", "load_average", "synthesis_seconds", "model", "input"}
#: Log lines that report timings or the output folder.
RUN_LINE = re.compile(r"segment mean s:|^done |outputs in ")
#: Durations inside otherwise comparable lines.
SECONDS = re.compile(r"\d+(\.\d+)? s\b")


def _clean(value: Any, roots: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v, roots) for k, v in value.items() if k not in RUN_KEYS}
    if isinstance(value, list):
        return [_clean(v, roots) for v in value]
    if isinstance(value, str):
        for root in roots:
            value = value.replace(root, "OUT")
        return value
    return value


def _text(path: Path, roots: tuple[str, ...]) -> list[str]:
    lines = [str(_clean(line, roots)) for line in path.read_text(encoding="utf-8").splitlines()]
    return [SECONDS.sub("T s", line) for line in lines if not RUN_LINE.search(line)]


def compare(before: Path, after: Path) -> int:
    """Print the differences between the two folders; return how many there are."""
    roots = (str(before), str(after))
    differences = 0
    for old in sorted(p for p in before.rglob("*") if p.is_file()):
        relative = old.relative_to(before)
        new = after / relative
        if not new.is_file():
            print(f"missing after: {relative}")
            differences += 1
            continue
        name = old.name
        if name.endswith((".nii.gz", ".nii")):
            a = np.asarray(nib.load(old).dataobj)
            b = np.asarray(nib.load(new).dataobj)
            if a.shape != b.shape or not np.array_equal(a, b):
                changed = int((a != b).sum()) if a.shape == b.shape else (a.shape, b.shape)
                print(f"array differs: {relative} ({changed})")
                differences += 1
        elif name.endswith(".json"):
            if _clean(json.loads(old.read_text()), roots) != _clean(json.loads(new.read_text()),
                                                                    roots):
                print(f"JSON differs: {relative}")
                differences += 1
        elif name.endswith((".csv", ".md", ".log", ".txt", ".html")):
            a_lines, b_lines = _text(old, roots), _text(new, roots)
            if a_lines != b_lines:
                first = next((i for i, (x, y) in enumerate(zip(a_lines, b_lines, strict=False))
                              if x != y), min(len(a_lines), len(b_lines)))
                print(f"text differs: {relative} (first at line {first + 1})")
                differences += 1
    for new in sorted(p for p in after.rglob("*") if p.is_file()):
        if not (before / new.relative_to(after)).exists():
            print(f"new file after: {new.relative_to(after)}")
    return differences


def main() -> None:
    before, after = Path(sys.argv[1]), Path(sys.argv[2])
    differences = compare(before, after)
    print(f"{differences} difference(s)")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
