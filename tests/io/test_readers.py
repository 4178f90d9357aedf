"""Input discovery and the reader registry (issue 24)."""

from __future__ import annotations

from pathlib import Path


def test_every_volume_suffix_has_a_reader_and_inputs_are_discovered(tmp_path: Path) -> None:
    from subct.io.files import VOLUME_SUFFIXES, discover_inputs
    from subct.io.readers import INPUT_FORMATS

    declared = [suffix for entry in INPUT_FORMATS for suffix in entry.suffixes]
    assert sorted(declared) == sorted(VOLUME_SUFFIXES) and len(set(declared)) == len(declared)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.nii.gz").write_bytes(b"")
    (tmp_path / "b.nii.gz").write_bytes(b"")
    listed = tmp_path / "list.txt"
    listed.write_text(f"{tmp_path / 'b.nii.gz'}\n# a comment\nmissing.nii.gz\n")
    cases, problems = discover_inputs([tmp_path / "a", listed, tmp_path / "notes.doc"])
    assert cases == [("x", tmp_path / "a" / "x.nii.gz"), ("b", tmp_path / "b.nii.gz")]
    assert [path.name for path, _ in problems] == ["missing.nii.gz", "notes.doc"]
