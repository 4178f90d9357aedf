"""File names: which suffixes are volumes, case names, DICOM folders, list files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from subct.errors import SubctInputError

NIFTI_SUFFIXES = (".nii", ".nii.gz")


FREESURFER_SUFFIXES = (".mgz", ".mgh")


ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


VOLUME_SUFFIXES = NIFTI_SUFFIXES + FREESURFER_SUFFIXES + ITK_SUFFIXES


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(suffix) for suffix in suffixes)


def case_name(path: str | Path) -> str:
    """File name without the volume suffix: ``/a/case01.nii.gz`` → ``case01``."""
    path = Path(path)
    name = path.name
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_volume_file(path: Path) -> bool:
    """True for files whose suffix is a volume format that subct reads."""
    return path.is_file() and _has_suffix(path, VOLUME_SUFFIXES)


def iter_volume_files(folder: Path) -> Iterator[Path]:
    """Volume files directly inside ``folder``, sorted by name."""
    for child in sorted(folder.iterdir()):
        if is_volume_file(child):
            yield child


LIST_SUFFIXES = (".txt", ".lst", ".list", ".csv")


def _looks_like_dicom_file(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".ima"):
        return True
    try:
        with path.open("rb") as stream:
            stream.seek(128)
            return stream.read(4) == b"DICM"
    except OSError:
        return False


def _is_dicom_folder(folder: Path) -> bool:
    return any(child.is_file() and _looks_like_dicom_file(child) for child in folder.iterdir())


def _read_list_file(path: Path) -> list[Path]:
    entries = []
    try:
        text_lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise SubctInputError(path, "not a text list of paths (binary data); give image "
                                    "files, DICOM folders, or a text file with one path per "
                                    "line") from error
    for line in text_lines:
        text = line.split("#", 1)[0].strip().strip(",")
        if text:
            entry = Path(text).expanduser()
            entries.append(entry if entry.is_absolute() else path.parent / entry)
    return entries
