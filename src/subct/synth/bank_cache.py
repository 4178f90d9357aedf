"""A disk cache of built label banks (:class:`subct.synth.label_maps.LabelBank`).

Building the continuing training run's bank (16 whole heads and 126 subcortical maps,
each read, embedded in a head, cropped, its skull split and re-coded) takes ~3 minutes
on 2 cores at every start of the run, of the throughput benchmark and of a lent GPU's
run. The result depends only on the map files and on the code that builds it, so it is
stored once under ``$SUBCT_CACHE_DIR/label_banks/<key>/`` and read back in seconds.

The key is a SHA-256 of: :data:`BANK_CACHE_VERSION`; the source text of the modules that
build a bank (a code change makes a new key, never a stale bank); and each map and
background head file's resolved path, size and modification time, in order (the k-th
subcortical map goes into head k mod n). Banks built from in-memory volumes are not
cached. One folder per key: ``bank.json`` (compact label values, and per map its name,
affine, centroids, unlabelled structures, array shape and type, and file) plus one
zlib-packed file of compact indices per map. A folder appears by one rename once complete, so a run
killed mid-write leaves only a hidden temporary folder; a folder that cannot be read is
rebuilt. Nothing is evicted: delete ``label_banks`` to reclaim the space (~1 MB per map).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

#: Bumped when the cached layout changes (the code digest covers the building itself).
BANK_CACHE_VERSION = 1

#: The modules whose source text is part of the key: reading, embedding, skull split,
#: tissue labels, target IDs and this file's own layout.
_KEYED_MODULES = ("synth/label_maps.py", "synth/background.py", "synth/tissues.py",
                  "synth/bank_cache.py", "labels/schemes.py", "io/readers.py")

_MANIFEST = "bank.json"

#: zlib level of the stored indices: level 1 packs a label map ~20× at a fraction of the
#: default level's time (the first build of a bank pays it once per map).
_ZLIB_LEVEL = 1


@dataclass(frozen=True)
class CachedMap:
    """One stored map as plain arrays (:class:`~subct.synth.label_maps.StoredLabelMap`
    without the tensor)."""

    indices: NDArray[np.integer]
    affine: NDArray[np.float64]
    target_centroid_mm: NDArray[np.float64]
    head_centroid_mm: NDArray[np.float64]
    name: str
    unlabelled: tuple[int, ...]


def bank_key(sources: Sequence[object], backgrounds: Sequence[object]) -> str | None:
    """The cache key of a bank of ``sources`` embedded in ``backgrounds``; None when any
    of them is not a file path (an in-memory volume) or a file is missing."""
    digest = hashlib.sha256(f"subct label bank v{BANK_CACHE_VERSION}\n".encode())
    package = Path(__file__).resolve().parents[1]
    for module in _KEYED_MODULES:
        digest.update(hashlib.sha256((package / module).read_bytes()).digest())
    for group in (sources, backgrounds):
        digest.update(b"--\n")
        for source in group:
            if not isinstance(source, (str, Path)):
                return None
            path = Path(source).resolve()
            try:
                status = path.stat()
            except OSError:
                return None
            digest.update(f"{path}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:40]


def load_bank(folder: Path) -> tuple[NDArray[np.int32], list[CachedMap]] | None:
    """The label values and maps stored in ``folder``; None when absent or unreadable."""
    manifest = folder / _MANIFEST
    if not manifest.is_file():
        return None
    try:
        content = json.loads(manifest.read_text())
        maps = []
        for entry in content["maps"]:
            packed = zlib.decompress((folder / entry["file"]).read_bytes())
            indices = np.frombuffer(bytearray(packed), dtype=np.dtype(entry["dtype"])).reshape(
                entry["shape"])
            maps.append(CachedMap(
                indices=indices, affine=np.asarray(entry["affine"], dtype=np.float64),
                target_centroid_mm=np.asarray(entry["target_centroid_mm"], dtype=np.float64),
                head_centroid_mm=np.asarray(entry["head_centroid_mm"], dtype=np.float64),
                name=str(entry["name"]), unlabelled=tuple(int(v) for v in entry["unlabelled"])))
        return np.asarray(content["label_values"], dtype=np.int32), maps
    except (OSError, ValueError, KeyError, TypeError, zlib.error):
        return None


def save_bank(folder: Path, label_values: NDArray[np.integer], maps: Sequence[CachedMap]
              ) -> bool:
    """Store a bank in ``folder`` (complete or not at all); False when it cannot be
    written (read-only or full disk: the caller goes on without a cache)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError:
        return False
    try:
        entries = []
        for number, stored in enumerate(maps):
            name = f"map{number:04d}.zlib"
            indices = np.ascontiguousarray(stored.indices)
            (staging / name).write_bytes(zlib.compress(indices.tobytes(), _ZLIB_LEVEL))
            entries.append({"file": name, "name": stored.name, "dtype": indices.dtype.str,
                            "shape": list(indices.shape),
                            "affine": stored.affine.tolist(),
                            "target_centroid_mm": stored.target_centroid_mm.tolist(),
                            "head_centroid_mm": stored.head_centroid_mm.tolist(),
                            "unlabelled": list(stored.unlabelled)})
        (staging / _MANIFEST).write_text(json.dumps(
            {"version": BANK_CACHE_VERSION, "label_values": [int(v) for v in label_values],
             "maps": entries}))
        os.chmod(staging, 0o755)
        os.rename(staging, folder)  # atomic; fails if another process stored it first
        return True
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        return folder.is_dir()
