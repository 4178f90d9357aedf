"""Centile charts for the report: one small inline SVG per structure, the normative cohort's
2.5th–97.5th percentile band and median across age, and the case as a dot at its age.

Plain SVG text (no plotting library: the light install has none). The frame of a chart
(band, median, axes) depends only on the structure and sex, so a page defines it once as
a ``<symbol>`` (:func:`chart_symbols_svg`) and each case's chart references it with
``<use>``: about 0.6 kB per chart instead of 2.3 kB, which matters for batches of hundreds.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import lru_cache

from subct.norms.models import ICV_KEY, NORM_AGE_RANGE_YEARS, Sex, find_model

#: Chart size (px) and inner margins (left, right, top, bottom).
CHART_SIZE = (240, 130)
_MARGIN = (34, 8, 18, 20)
#: Ages (years) where the curves are sampled.
_AGE_STEP_YEARS = 2.0


def _ages() -> list[float]:
    low, high = NORM_AGE_RANGE_YEARS
    count = int((high - low) / _AGE_STEP_YEARS)
    return [low + index * (high - low) / count for index in range(count + 1)]


def _cm3(volume_mm3: float) -> str:
    """An axis label in cm³: one decimal below 100 cm³, none above."""
    return f"{volume_mm3 / 1000:.1f}" if volume_mm3 < 100_000 else f"{volume_mm3 / 1000:.0f}"


def percentile_text(percentile: float) -> str:
    """``<0.1``/``>99.9`` at the ends (a normal tail says little more), else one decimal."""
    if percentile < 0.1:
        return "<0.1"
    if percentile > 99.9:
        return ">99.9"
    return f"{percentile:.1f}"


@dataclass(frozen=True)
class _Frame:
    """One structure's chart frame for one sex: the fixed axes (volume range with room
    beside the band) and the symbol's SVG (band, median, axes, their labels)."""

    y_low: float
    y_high: float
    symbol: str

    def x(self, age: float) -> float:
        width, _ = CHART_SIZE
        left, right, _, _ = _MARGIN
        low, high = NORM_AGE_RANGE_YEARS
        return left + (age - low) / (high - low) * (width - left - right)

    def y(self, volume: float) -> float:
        _, height = CHART_SIZE
        _, _, top, bottom = _MARGIN
        clamped = min(max(volume, self.y_low), self.y_high)  # off-scale: on the edge
        return top + (self.y_high - clamped) / (self.y_high - self.y_low) \
            * (height - top - bottom)


def symbol_id(structure: str, sex: Sex) -> str:
    """The id of the shared chart frame of ``structure`` for ``sex`` in the page."""
    return f"norm-{sex}-{structure}"


@lru_cache(maxsize=64)
def _frame(structure: str, sex: Sex) -> _Frame:
    """The chart frame of a structure's norm, computed once per process (the
    site-mixture models take milliseconds per age)."""
    found = find_model(sex, structure)
    assert found is not None, structure
    model = found[0]
    ages = _ages()
    bands = [model.band_mm3(age) for age in ages]
    y_low = min(low for low, _ in bands) * 0.7
    y_high = max(high for _, high in bands) * 1.3
    frame = _Frame(y_low, y_high, "")
    width, height = CHART_SIZE
    left, right, top, bottom = _MARGIN
    x, y = frame.x, frame.y
    band = " ".join(f"{x(a):.1f},{y(high):.1f}" for a, (_, high) in zip(ages, bands,
                                                                          strict=True))
    band += " " + " ".join(f"{x(a):.1f},{y(low):.1f}"
                           for a, (low, _) in reversed(list(zip(ages, bands, strict=True))))
    median = " ".join(f"{x(a):.1f},{y(model.expected_mm3(a)):.1f}" for a in ages)
    age_low, age_high = NORM_AGE_RANGE_YEARS
    symbol = (
        f"<symbol id='{html.escape(symbol_id(structure, sex))}' "
        f"viewBox='0 0 {width} {height}'>"
        f"<polygon points='{band}' fill='#cde' stroke='none'/>"
        f"<polyline points='{median}' fill='none' stroke='#579' stroke-width='1'/>"
        f"<line x1='{left}' y1='{height - bottom}' x2='{width - right}' y2='{height - bottom}'"
        f" stroke='#999'/><line x1='{left}' y1='{top}' x2='{left}' y2='{height - bottom}' "
        f"stroke='#999'/>"
        f"<text x='{left - 3}' y='{top + 8}' font-size='9' text-anchor='end'>"
        f"{_cm3(y_high)}</text>"
        f"<text x='{left - 3}' y='{height - bottom}' font-size='9' text-anchor='end'>"
        f"{_cm3(y_low)}</text>"
        f"<text x='{x(age_low):.0f}' y='{height - 6}' font-size='9'>{age_low:g}</text>"
        f"<text x='{x(age_high):.0f}' y='{height - 6}' font-size='9' text-anchor='end'>"
        f"{age_high:g} y</text>"
        f"<text x='{left - 3}' y='{(top + height - bottom) / 2:.0f}' font-size='9' "
        f"text-anchor='end'>cm³</text></symbol>")
    return _Frame(y_low, y_high, symbol)


def chart_symbols_svg(charts: set[tuple[str, Sex]]) -> str:
    """The hidden SVG that defines the shared frames of the charts on a page (each
    structure and sex once, however many cases use it)."""
    if not charts:
        return ""
    return ("<svg xmlns='http://www.w3.org/2000/svg' style='display:none'><defs>"
            + "".join(_frame(structure, sex).symbol for structure, sex in sorted(charts))
            + "</defs></svg>")


def centile_chart_svg(structure: str, sex: Sex, age_years: float, volume_mm3: float,
                      percentile: float, flagged: bool = False,
                      band_mm3: tuple[float, float] | None = None) -> str:
    """A case's chart of ``structure``: the shared frame of its norm for ``sex``
    (:func:`chart_symbols_svg` must be on the page) and the case's dot.

    Args:
        structure: the structure (or ``intracranial_volume``), whose normative model for
            ``sex`` is drawn (:func:`subct.norms.models.find_model`).
        sex: the case's sex.
        age_years: the case's age (x of the dot).
        volume_mm3: the case's volume (y of the dot; off the scale: on its edge).
        percentile: the case's percentile (title).
        flagged: a QC warning names this structure: the dot is hollow and the title
            says so (the percentile may reflect a segmentation error).
        band_mm3: the case's 2.5th/97.5th percentile volumes when already known (the
            ``qc.json`` record has them; the site-mixture models take milliseconds each).
    """
    width, height = CHART_SIZE
    left, _, _, _ = _MARGIN
    frame = _frame(structure, sex)
    if band_mm3 is None:
        found = find_model(sex, structure)
        assert found is not None, structure
        band_mm3 = found[0].band_mm3(age_years)
    low, high = band_mm3
    outside = not low <= volume_mm3 <= high
    colour = "#c00" if outside else "#036"
    fill = "none" if flagged else colour
    label = "Intracranial volume" if structure == ICV_KEY else structure
    title = (f"{label}: {percentile_text(percentile)}th pct"
             + (" (QC)" if flagged else ""))
    reference = html.escape(f"#{symbol_id(structure, sex)}")
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' xmlns:xlink='http://www.w3.org/1999/xlink' "
        f"width='{width}' height='{height}' role='img' aria-label='{html.escape(title)}' "
        f"class='centile'><title>{html.escape(title)}: {volume_mm3 / 1000:.2f} cm³ at "
        f"{age_years:g} years; band {low / 1000:.2f}–{high / 1000:.2f} cm³</title>"
        f"<use href='{reference}' xlink:href='{reference}' width='{width}' "
        f"height='{height}'/>"
        f"<text x='{left - 30}' y='12' font-size='11'>{html.escape(title)}</text>"
        f"<circle cx='{frame.x(age_years):.1f}' cy='{frame.y(volume_mm3):.1f}' r='4' "
        f"fill='{fill}' stroke='{colour}' stroke-width='1.5'/></svg>")
