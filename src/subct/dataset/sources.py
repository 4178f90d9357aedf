"""Finding MRI/CT pairs: SynthRAD2023-style folders or a CSV manifest.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from subct.errors import SubctInputError
from subct.io.files import VOLUME_SUFFIXES, case_name, is_volume_file

#: SynthRAD2023 case IDs: task (1 MRI→CT, 2 CBCT→CT), region (B brain, P pelvis),
#: centre (A, B, C) and a number, e.g. ``1BA001``.
SYNTHRAD_CASE_ID = re.compile(r"(?P<task>[12])(?P<region>[BP])(?P<centre>[A-E])\d{3}")




@dataclass(frozen=True)
class CaseSpec:
    """One MRI/CT pair of the source."""

    case_id: str
    mri: Path
    ct: Path
    site: str | None = None
    mask: Path | None = None
    precomputed: dict[str, Path] = field(default_factory=dict)


def _case_id(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in text.strip())
    if not cleaned:
        raise SubctInputError(None, f"case name {text!r} is empty after cleaning")
    return cleaned


def _find_volume(folder: Path, stem: str) -> Path | None:
    for suffix in VOLUME_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _precomputed_in(folder: Path) -> dict[str, Path]:
    return {case_name(path)[len("seg_"):]: path for path in sorted(folder.glob("seg_*"))
            if is_volume_file(path)}


def discover_cases(source: str | Path) -> list[CaseSpec]:
    """List the MRI/CT pairs of a SynthRAD2023-style folder or a CSV manifest.

    Folder: every directory holding ``mr.*`` and ``ct.*`` is a case; its parent
    directory (when not the source itself) is the site, and case IDs are prefixed with
    it so they stay unique. Folders named like SynthRAD2023 cases (``1BA001``) keep
    their name and take the centre letter in the ID (``A``) as the site, so the
    original ``Task1/brain/1BA001`` layout is split by centre. Manifest: columns
    ``case, mri, ct`` (+ ``site``,
    ``mask``, ``seg_<tool>``), relative paths resolved against the CSV's folder.

    Raises:
        SubctInputError: missing source, no cases, missing columns or duplicate IDs.
    """
    source = Path(source)
    if not source.exists():
        raise SubctInputError(source, "no such file or folder")
    cases: list[CaseSpec] = []
    if source.is_file():
        cases = _cases_from_manifest(source)
    else:
        for mri in sorted(source.rglob("mr.*")):
            folder = mri.parent
            if _find_volume(folder, "mr") != mri:
                continue
            ct = _find_volume(folder, "ct")
            if ct is None:
                # Listed so that the run reports it instead of silently dropping it.
                ct = folder / "ct.nii.gz"
            synthrad = SYNTHRAD_CASE_ID.fullmatch(folder.name)
            if synthrad:  # SynthRAD2023 IDs carry their centre: 1BA001 → centre A
                site: str | None = synthrad.group("centre")
                name = folder.name
            else:
                site = folder.parent.name if folder.parent != source else None
                name = f"{site}_{folder.name}" if site else folder.name
            cases.append(CaseSpec(_case_id(name), mri, ct, site, _find_volume(folder, "mask"),
                                  _precomputed_in(folder)))
    if not cases:
        raise SubctInputError(source, "no cases found (expected <site>/<case>/mr.nii.gz + "
                              "ct.nii.gz folders, or a CSV manifest with case,mri,ct)")
    seen: set[str] = set()
    for case in cases:
        if case.case_id in seen:
            raise SubctInputError(source, f"case ID {case.case_id!r} appears twice")
        seen.add(case.case_id)
    return cases


def _cases_from_manifest(manifest: Path) -> list[CaseSpec]:
    with manifest.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        columns = [c.strip().lower() for c in (reader.fieldnames or [])]
        missing = {"case", "mri", "ct"} - set(columns)
        if missing:
            raise SubctInputError(manifest, f"manifest lacks column(s) {', '.join(sorted(missing))}"
                                  " (needed: case, mri, ct; optional: site, mask, seg_<tool>)")
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in
                reader]

    def resolve(text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else (manifest.parent / path)

    cases = []
    for row in rows:
        precomputed = {key[len("seg_"):]: resolve(value) for key, value in row.items()
                       if key.startswith("seg_") and value}
        cases.append(CaseSpec(
            _case_id(row["case"]), resolve(row["mri"]), resolve(row["ct"]),
            row.get("site") or None, resolve(row["mask"]) if row.get("mask") else None,
            precomputed,
        ))
    return cases
