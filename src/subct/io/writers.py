"""Writing volumes and text atomically (temporary file, then rename).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from subct.errors import SubctInputError
from subct.image.sitk_bridge import array_to_sitk
from subct.image.volume import Volume, is_orthogonal_affine
from subct.io.files import FREESURFER_SUFFIXES, NIFTI_SUFFIXES, VOLUME_SUFFIXES


def save_volume(volume: Volume, path: str | Path, dtype: Any = None) -> Path:
    """Write ``volume`` atomically (temporary file in the same folder, then rename).

    The format follows the suffix (NIfTI, MGZ, NRRD/MHA). The voxel order and the
    affine are written unchanged, so the output overlays its source exactly.
    Refuses to overwrite ``volume.path`` (the input it was read from).
    """
    path = Path(path)
    if volume.path is not None and path.resolve() == volume.path.resolve():
        raise SubctInputError(path, "refusing to overwrite an input file")
    array = volume.array if dtype is None else volume.array.astype(dtype)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype == np.int64:
        array = array.astype(np.int32)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = next((s for s in sorted(VOLUME_SUFFIXES, key=len, reverse=True)
                   if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise SubctInputError(path, "unknown output format; use .nii.gz, .mgz, .nrrd or .mha")
    if suffix not in NIFTI_SUFFIXES and not is_orthogonal_affine(volume.affine):
        raise SubctInputError(
            path, "the affine is sheared (non-orthogonal axes); only NIfTI can store it exactly"
        )
    with atomic_output(path, suffix=suffix) as temporary:
        if suffix in NIFTI_SUFFIXES:
            image = nib.Nifti1Image(array, volume.affine)
            image.set_qform(volume.affine, code=1)
            image.set_sform(volume.affine, code=1)
            nib.save(image, str(temporary))
        elif suffix in FREESURFER_SUFFIXES:
            if array.dtype not in (np.uint8, np.int16, np.int32, np.float32):
                array = array.astype(np.float32 if np.issubdtype(array.dtype, np.floating)
                                     else np.int32)
            nib.save(nib.MGHImage(array, volume.affine), str(temporary))
        else:
            import SimpleITK as sitk

            itk_image = array_to_sitk(array, volume.affine)
            sitk.WriteImage(itk_image, str(temporary), useCompression=True)
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    A process killed mid-write leaves only a hidden ``.<name>.*`` temporary file, never
    a truncated output; on an exception the temporary file is removed. The final file
    gets the usual permissions (0666 minus the umask), not ``mkstemp``'s private 0600.
    Use it for every output file subct writes::

        with atomic_output(out_png, suffix=".png") as temporary:
            figure.savefig(temporary)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix, dir=str(path.parent)
    )
    os.close(handle)
    temporary = Path(temporary_name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a binary file atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)
    return path


LOCK_FILE = ".subct.lock"


@contextmanager
def folder_lock(folder: str | Path, purpose: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (``.subct.lock``, an OS file lock) while
    writing into it; a second process asking for it gets a one-line error.

    The lock dies with its process (kill -9 included), so a killed run never blocks the
    next one, and a run holding it knows that temporary files in the folder are not
    another live run's.

    Raises:
        SubctInputError: another process holds the lock (its PID is named).
    """
    import fcntl  # POSIX only; imported here so that importing subct works elsewhere

    folder = Path(folder)
    lock_path = folder / LOCK_FILE
    handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 (held while yielding)
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise SubctInputError(folder, f"another {purpose} (pid {owner}) is writing into "
                                          "this folder; wait for it to finish or choose "
                                          "another output folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield lock_path
    finally:
        handle.close()


def check_output_file(path: Path, inputs: list[Path], option: str) -> None:
    """Refuse an output file (``--vol``, ``--qc``, ``evaluate -o``) that is, or lies
    inside, an input (links resolved), is a folder, or cannot be written: checked before
    any work, so a run never overwrites a scan or fails only at its end."""
    target = path.resolve()
    for item in inputs:
        source = item.resolve()
        if target == source or source in target.parents:
            raise SubctInputError(path, f"{option} would overwrite the input {item}; "
                                        "choose another path")
    if target.is_dir():
        raise SubctInputError(path, f"{option} is a folder; give a file path (volumes.csv)")
    folder = target.parent  # created when missing, as the output folder is
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise SubctInputError(path, f"{option}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise SubctInputError(path, f"{option} cannot be written (permission denied)")
