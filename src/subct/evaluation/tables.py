"""Summary tables of evaluation metrics (console).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

from subct.evaluation.metrics import CaseMetrics, summarise

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
