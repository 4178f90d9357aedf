"""Input discovery: which suffixes are volumes, case names, DICOM folders, list files.

:func:`discover_inputs` turns command-line inputs (files, DICOM folders, folders of
files or series, text lists) into named cases; :mod:`subct.io.readers` reads each
(``INPUT_FORMATS``). **A new input format**: its suffixes in a tuple here (part of
:data:`VOLUME_SUFFIXES`) and one ``InputFormat`` entry in :mod:`subct.io.readers`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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


def looks_like_dicom_file(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".ima"):
        return True
    try:
        with path.open("rb") as stream:
            stream.seek(128)
            return stream.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_folder(folder: Path) -> bool:
    """True for a folder holding DICOM files (``.dcm``/``.ima`` or the ``DICM`` tag)."""
    return any(child.is_file() and looks_like_dicom_file(child) for child in folder.iterdir())


def read_list_file(path: Path) -> list[Path]:
    """The paths listed in a text file, one per line (``#`` comments; relative to the file)."""
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


def discover_inputs(inputs: Iterable[str | Path]
                    ) -> tuple[list[tuple[str, Path]], list[tuple[Path, str]]]:
    """Command-line inputs → (case name, path) pairs and (path, problem) pairs.

    A volume file is one case (``case01.nii.gz`` → ``case01``); a DICOM folder is one
    case named after the folder; a folder of volume files or DICOM series folders gives
    one case each; a text list (``.txt``, ``.lst``, ``.list``, ``.csv``) is expanded.
    Repeated names get ``_2``, ``_3``... appended, so no two inputs share one.
    """
    cases: list[tuple[str, Path]] = []
    problems: list[tuple[Path, str]] = []

    def add(path: Path, depth: int = 0) -> None:
        if not path.exists():
            problems.append((path, f"{path}: no such file or folder"))
        elif path.is_dir():
            if is_dicom_folder(path):
                cases.append((path.name, path))
                return
            found = False
            for child in sorted(path.iterdir()):
                if is_volume_file(child) or (child.is_dir() and depth == 0
                                             and is_dicom_folder(child)):
                    add(child, depth + 1)
                    found = True
            if not found:
                problems.append((path, f"{path}: folder holds no volume files or DICOM "
                                       "series"))
        elif _has_suffix(path, VOLUME_SUFFIXES):
            cases.append((case_name(path), path))
        elif path.suffix.lower() in LIST_SUFFIXES and depth == 0:
            for entry in read_list_file(path):
                add(entry, depth + 1)
        else:
            problems.append((path, f"{path}: not a volume file, DICOM folder or list of "
                                   "paths"))

    for item in inputs:
        add(Path(item))
    seen: dict[str, int] = {}
    unique: list[tuple[str, Path]] = []
    for name, path in cases:
        count = seen.get(name, 0) + 1
        seen[name] = count
        unique.append((name if count == 1 else f"{name}_{count}", path))
    return unique, problems
