"""Colours of the labels and the colour tables viewers read.

The label maps carry FreeSurfer IDs; these tables give them names and FreeSurfer's
colours in FreeView (FreeSurferColorLUT format), ITK-SNAP (label description file) and
3D Slicer (``.ctbl`` colour table), so no one has to write a table by hand. NiiVue and
other viewers that read FreeSurfer LUTs use the first one.
"""

from __future__ import annotations

from pathlib import Path

from subct.io.writers import atomic_write_text
from subct.labels.schemes import LabelScheme, get_scheme

#: FreeSurfer colour table (FreeSurferColorLUT.txt) RGB of the 17 structures.
FREESURFER_COLOURS: dict[int, tuple[int, int, int]] = {
    4: (120, 18, 134), 43: (120, 18, 134),
    10: (0, 118, 14), 49: (0, 118, 14),
    11: (122, 186, 220), 50: (122, 186, 220),
    12: (236, 13, 176), 51: (236, 13, 176),
    13: (12, 48, 255), 52: (13, 48, 255),
    17: (220, 216, 20), 53: (220, 216, 20),
    18: (103, 255, 255), 54: (103, 255, 255),
    26: (255, 165, 0), 58: (255, 165, 0),
    16: (119, 159, 176),
}

#: paper7 classes 1..7 drawn with the colour of the FreeSurfer structure they stand for.
PAPER7_AS_FREESURFER: dict[int, int] = {1: 4, 2: 10, 3: 11, 4: 12, 5: 13, 6: 17, 7: 16}

#: File names of the tables written next to the label maps.
COLOUR_TABLE_FILES: dict[str, str] = {
    "freesurfer": "labels_freesurfer_lut.txt",
    "itksnap": "labels_itksnap.txt",
    "slicer": "labels_slicer.ctbl",
}


def label_colour(label: int, scheme: str | LabelScheme = "canonical") -> tuple[int, int, int]:
    """RGB (0..255) of a label value of ``scheme`` (white for unknown values)."""
    if get_scheme(scheme).name == "paper7":
        label = PAPER7_AS_FREESURFER.get(label, 0)
    return FREESURFER_COLOURS.get(label, (255, 255, 255))


def _rows(scheme: str | LabelScheme) -> list[tuple[int, str, tuple[int, int, int]]]:
    resolved = get_scheme(scheme)
    return [(value, name, label_colour(value, resolved)) for value, name in resolved.names.items()]


def freesurfer_lut_text(scheme: str | LabelScheme = "canonical") -> str:
    """FreeSurferColorLUT format: ``value name R G B A`` (A = 0: opaque in FreeView)."""
    lines = ["#No. Label Name                     R   G   B   A",
             f"{0:<4} {'Unknown':<30} 0   0   0   0"]
    lines += [f"{value:<4} {name:<30} {r:<3} {g:<3} {b:<3} 0"
              for value, name, (r, g, b) in _rows(scheme)]
    return "\n".join(lines) + "\n"


def itksnap_label_text(scheme: str | LabelScheme = "canonical") -> str:
    """ITK-SNAP label description file (Segmentation → Import Label Descriptions)."""
    lines = ["# ITK-SNAP Label Description File (subct)",
             "#    IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
             '      0     0    0    0     0   0   0    "Clear Label"']
    lines += [f"{value:7d} {r:5d} {g:4d} {b:4d} {1:5d} {1:3d} {1:3d}    \"{name}\""
              for value, name, (r, g, b) in _rows(scheme)]
    return "\n".join(lines) + "\n"


def slicer_ctbl_text(scheme: str | LabelScheme = "canonical") -> str:
    """3D Slicer colour table (``.ctbl``): ``value name R G B A`` with A = 255."""
    lines = ["# Color table file (subct)", "0 Background 0 0 0 0"]
    lines += [f"{value} {name} {r} {g} {b} 255" for value, name, (r, g, b) in _rows(scheme)]
    return "\n".join(lines) + "\n"


def write_colour_tables(folder: str | Path, scheme: str | LabelScheme = "canonical"
                        ) -> dict[str, Path]:
    """Write the three tables (:data:`COLOUR_TABLE_FILES`) into ``folder`` atomically."""
    folder = Path(folder)
    texts = {"freesurfer": freesurfer_lut_text(scheme), "itksnap": itksnap_label_text(scheme),
             "slicer": slicer_ctbl_text(scheme)}
    return {kind: atomic_write_text(folder / COLOUR_TABLE_FILES[kind], text)
            for kind, text in texts.items()}
