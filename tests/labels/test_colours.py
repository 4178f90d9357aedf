"""Colour tables for FreeView, ITK-SNAP and 3D Slicer: names and IDs match the scheme."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from subct.labels.colours import (
    COLOUR_TABLE_FILES,
    FREESURFER_COLOURS,
    freesurfer_lut_text,
    itksnap_label_text,
    label_colour,
    slicer_ctbl_text,
    write_colour_tables,
)
from subct.labels.schemes import get_scheme


def _entries(text: str, pattern: str) -> dict[int, tuple[str, tuple[int, int, int]]]:
    found = {}
    for line in text.splitlines():
        match = re.match(pattern, line)
        if match:
            found[int(match["id"])] = (match["name"], (int(match["r"]), int(match["g"]),
                                                       int(match["b"])))
    return found


@pytest.mark.parametrize("scheme", ["canonical", "merged", "paper7"])
def test_every_table_lists_exactly_the_scheme(scheme: str) -> None:
    expected = {value: (name, label_colour(value, scheme))
                for value, name in get_scheme(scheme).names.items()}
    lut = _entries(freesurfer_lut_text(scheme),
                   r"^(?P<id>\d+)\s+(?P<name>\S+)\s+(?P<r>\d+)\s+(?P<g>\d+)\s+(?P<b>\d+)\s+0$")
    snap = _entries(itksnap_label_text(scheme),
                    r'^\s*(?P<id>\d+)\s+(?P<r>\d+)\s+(?P<g>\d+)\s+(?P<b>\d+)\s+1\s+1\s+1\s+'
                    r'"(?P<name>[^"]+)"$')
    ctbl = _entries(slicer_ctbl_text(scheme),
                    r"^(?P<id>\d+) (?P<name>\S+) (?P<r>\d+) (?P<g>\d+) (?P<b>\d+) 255$")
    for table in (lut, snap, ctbl):
        table.pop(0, None)  # background / unknown
        assert table == expected


def test_canonical_colours_are_freesurfers(tmp_path: Path) -> None:
    lut = freesurfer_lut_text("canonical")
    assert re.search(r"^17\s+Left-Hippocampus\s+220\s+216\s+20\s+0$", lut, re.M)
    assert re.search(r"^16\s+Brain-Stem\s+119\s+159\s+176\s+0$", lut, re.M)
    assert set(FREESURFER_COLOURS) == set(get_scheme("canonical").labels)
    paths = write_colour_tables(tmp_path, "canonical")
    assert sorted(p.name for p in paths.values()) == sorted(COLOUR_TABLE_FILES.values())
    assert all(p.read_text() for p in paths.values())
