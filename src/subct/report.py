"""Summary tables of evaluation results (mean ± sd per structure and overall).

The layout follows Table 1/2 of the ensemble label-transfer paper: one row per
structure, one column per metric (DSC, HD95, ASSD, AVD), and an ``Overall`` row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

from subct.metrics import CaseMetrics, summarise

#: Metrics shown in the summary table: (attribute, column title, decimals).
SUMMARY_METRICS: tuple[tuple[str, str, int], ...] = (
    ("dice", "DSC", 3),
    ("hd95_mm", "HD95 (mm)", 2),
    ("assd_mm", "ASSD (mm)", 2),
    ("abs_volume_diff_mm3", "AVD (mm³)", 0),
)


@dataclass(frozen=True)
class SummaryCell:
    """Mean and sd over cases of one metric; ``n`` finite values, ``n_infinite`` missed."""

    mean: float
    sd: float
    n: int
    n_infinite: int

    def text(self, decimals: int) -> str:
        """``mean ± sd`` (``–`` when nothing was scored), with ``(k ∞)`` for missed cases."""
        body = "–" if self.n == 0 else f"{self.mean:.{decimals}f} ± {self.sd:.{decimals}f}"
        return body + (f" ({self.n_infinite} ∞)" if self.n_infinite else "")


@dataclass(frozen=True)
class SummaryRow:
    """One structure (or ``Overall``): a :class:`SummaryCell` per summary metric."""

    structure: str
    cells: dict[str, SummaryCell]


def summary_rows(cases: Sequence[CaseMetrics]) -> list[SummaryRow]:
    """Mean ± sd over cases for each structure, then an ``Overall`` row.

    Per structure: statistics over the cases where the metric is defined (NaN =
    structure absent from both maps is skipped; inf = missing from one map is counted
    apart). Overall: statistics over cases of each case's mean over its structures
    (finite values), i.e. the "Average" column of the paper's tables.
    """
    if not cases:
        return []
    names = [structure.name for structure in cases[0].structures]
    rows: list[SummaryRow] = []
    for index, name in enumerate(names):
        cells = {}
        for attribute, _, _ in SUMMARY_METRICS:
            values = [float(getattr(case.structures[index], attribute)) for case in cases]
            cells[attribute] = SummaryCell(*summarise(values))
        rows.append(SummaryRow(name, cells))
    overall = {}
    for attribute, _, _ in SUMMARY_METRICS:
        per_case = []
        missed = 0
        for case in cases:
            values = [float(getattr(s, attribute)) for s in case.structures]
            mean, _, n_finite, n_infinite = summarise(values)
            missed += n_infinite
            if n_finite:
                per_case.append(mean)
        mean, sd, n, _ = summarise(per_case)
        overall[attribute] = SummaryCell(mean, sd, n, missed)
    rows.append(SummaryRow("Overall", overall))
    return rows


def summary_table(cases: Sequence[CaseMetrics], title: str = "") -> Table:
    """A rich table of :func:`summary_rows`, with volume-weighted Dice in the caption."""
    table = Table(title=title or None, show_lines=False)
    table.add_column("Structure")
    for _, column, _ in SUMMARY_METRICS:
        table.add_column(column, justify="right")
    rows = summary_rows(cases)
    for row in rows:
        cells = [row.cells[attribute].text(decimals) for attribute, _, decimals in
                 SUMMARY_METRICS]
        table.add_row(row.structure, *cells, end_section=row is rows[-2])
    weighted = summarise([case.volume_weighted_dice for case in cases])
    if not math.isnan(weighted[0]):
        table.caption = (
            f"{len(cases)} case(s); volume-weighted DSC {weighted[0]:.3f} ± {weighted[1]:.3f}; "
            "mean ± sd over cases; (k ∞) = k case(s) with the structure missing in one map"
        )
    return table


# ------------------------------------------------------------ subct segment: index.html


def render_segmentation_index(records: Sequence[dict[str, object]],
                              failures: Sequence[tuple[str, str]] = ()) -> str:
    """The batch ``index.html`` of ``subct segment``: one self-contained HTML page.

    ``records`` are the cases' ``<case>_qc.json`` contents. The page has a flagged-cases
    list, a row per case with its overlay thumbnail (linked, relative path), QC status,
    intracranial volume and every structure's volume (mm³), and the failed cases.
    """
    import html
    import typing

    def esc(value: object) -> str:
        return html.escape(str(value))

    names: list[str] = []
    for record in records:
        volumes = record.get("volumes_mm3")
        if isinstance(volumes, dict):
            names = list(volumes)
            break
    flagged = [r for r in records if isinstance(r.get("qc"), dict)
               and typing.cast(dict[str, typing.Any], r["qc"]).get("flagged")]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>subct segment report</title>",
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:12px;text-align:right}"
        "th{background:#eee}.flag{background:#fdd}.ok{background:#dfd}img{width:360px}"
        "td.l{text-align:left}</style></head><body>",
        f"<h1>subct segment: {len(records)} case(s)</h1>",
        f"<h2>Flagged cases ({len(flagged)})</h2><ul>",
    ]
    for record in flagged:
        flags: typing.Any = typing.cast(dict[str, typing.Any], record["qc"]).get("flags", [])
        messages = "; ".join(esc(f.get("message", "")) for f in flags
                             if f.get("severity") == "warning")
        parts.append(f"<li><a href='#{esc(record['case'])}'>{esc(record['case'])}</a>: "
                     f"{messages}</li>")
    parts.append("</ul>")
    if failures:
        parts.append(f"<h2>Failed cases ({len(failures)})</h2><ul>")
        parts.extend(f"<li>{esc(name)}: {esc(error)}</li>" for name, error in failures)
        parts.append("</ul>")
    parts.append("<h2>Volumes (mm³)</h2><table><tr><th>case</th><th>overlay</th><th>QC</th>"
                 "<th>ICV (cm³)</th><th>MC-dropout CV (%)</th>"
                 + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>")
    for record in records:
        qc = record.get("qc") if isinstance(record.get("qc"), dict) else {}
        assert isinstance(qc, dict)
        is_flagged = bool(qc.get("flagged"))
        outputs = record.get("outputs") if isinstance(record.get("outputs"), dict) else {}
        assert isinstance(outputs, dict)
        overlay = outputs.get("overlay")
        thumb = (f"<a href='{esc(overlay)}'><img src='{esc(overlay)}' alt='overlay'></a>"
                 if overlay else "")
        icv = record.get("intracranial_volume_mm3")
        icv_text = "–" if not isinstance(icv, int | float) else f"{icv / 1000:.0f}"
        mc = qc.get("mc_dropout")
        mc_text = f"{mc['mean_cv_percent']:.2f}" if isinstance(mc, dict) else "–"
        volumes = record.get("volumes_mm3") if isinstance(record.get("volumes_mm3"), dict) else {}
        assert isinstance(volumes, dict)
        cells = "".join(f"<td>{float(volumes.get(n, 0.0)):.0f}</td>" for n in names)
        status = "<td class='flag'>flagged</td>" if is_flagged else "<td class='ok'>ok</td>"
        parts.append(f"<tr id='{esc(record['case'])}'><td class='l'>{esc(record['case'])}</td>"
                     f"<td>{thumb}</td>{status}<td>{icv_text}</td><td>{mc_text}</td>{cells}</tr>")
    parts.append("</table><p>Volumes are measured on the written label maps (input grid). "
                 "QC flags: input not like head CT, volumes outside normal adult ranges, "
                 "MC-dropout CV above 2.5 %. See each case's _qc.json.</p></body></html>\n")
    return "\n".join(parts)
