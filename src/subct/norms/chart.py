"""Centile charts for the report: one small inline SVG per structure, the normative cohort's
2.5th–97.5th percentile band and median across age, and the case as a dot at its age.

Plain SVG text (no plotting library: the light install has none), about 2 kB per chart.
"""

from __future__ import annotations

import html
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


@lru_cache(maxsize=64)
def _curves(structure: str, sex: Sex) -> tuple[tuple[float, ...], tuple[tuple[float, float],
                                                                        ...], tuple[float, ...]]:
    """Ages, 2.5th/97.5th percentile bands and medians of a structure's norm (computed
    once per process: the site-mixture models take milliseconds per age)."""
    found = find_model(sex, structure)
    assert found is not None, structure
    model = found[0]
    ages = _ages()
    return (tuple(ages), tuple(model.band_mm3(age) for age in ages),
            tuple(model.expected_mm3(age) for age in ages))


def centile_chart_svg(structure: str, sex: Sex, age_years: float, volume_mm3: float,
                      percentile: float, flagged: bool = False) -> str:
    """An SVG chart of ``structure``'s normative band over age with the case's dot.

    Args:
        structure: the structure (or ``intracranial_volume``), whose normative model for
            ``sex`` is drawn (:func:`subct.norms.models.find_model`).
        sex: the case's sex.
        age_years: the case's age (x of the dot).
        volume_mm3: the case's volume (y of the dot).
        percentile: the case's percentile (title).
        flagged: a QC warning names this structure: the dot is hollow and the title
            says so (the percentile may reflect a segmentation error).
    """
    width, height = CHART_SIZE
    left, right, top, bottom = _MARGIN
    ages, bands, centres = _curves(structure, sex)
    found = find_model(sex, structure)
    assert found is not None, structure
    model = found[0]
    y_low = min(min(low for low, _ in bands), volume_mm3) * 0.95
    y_high = max(max(high for _, high in bands), volume_mm3) * 1.05
    age_low, age_high = ages[0], ages[-1]

    def x(age: float) -> float:
        return left + (age - age_low) / (age_high - age_low) * (width - left - right)

    def y(volume: float) -> float:
        return top + (y_high - volume) / (y_high - y_low) * (height - top - bottom)

    band = " ".join(f"{x(a):.1f},{y(high):.1f}" for a, (_, high) in zip(ages, bands,
                                                                          strict=True))
    band += " " + " ".join(f"{x(a):.1f},{y(low):.1f}"
                           for a, (low, _) in reversed(list(zip(ages, bands, strict=True))))
    median = " ".join(f"{x(a):.1f},{y(c):.1f}" for a, c in zip(ages, centres, strict=True))
    low, high = model.band_mm3(age_years)
    outside = not low <= volume_mm3 <= high
    colour = "#c00" if outside else "#036"
    fill = "none" if flagged else colour
    label = "Intracranial volume" if structure == ICV_KEY else structure
    title = (f"{label}: {percentile_text(percentile)}th pct"
             + (" (QC)" if flagged else ""))
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"role='img' aria-label='{html.escape(title)}' class='centile'>"
        f"<title>{html.escape(title)}: {volume_mm3 / 1000:.2f} cm³ at {age_years:g} years; "
        f"band {low / 1000:.2f}–{high / 1000:.2f} cm³</title>"
        f"<text x='{left - 30}' y='12' font-size='11'>{html.escape(title)}</text>"
        f"<polygon points='{band}' fill='#cde' stroke='none'/>"
        f"<polyline points='{median}' fill='none' stroke='#579' stroke-width='1'/>"
        f"<line x1='{left}' y1='{height - bottom}' x2='{width - right}' y2='{height - bottom}'"
        f" stroke='#999'/><line x1='{left}' y1='{top}' x2='{left}' y2='{height - bottom}' "
        f"stroke='#999'/>"
        f"<text x='{left - 3}' y='{y(y_high) + 8:.0f}' font-size='9' text-anchor='end'>"
        f"{_cm3(y_high)}</text>"
        f"<text x='{left - 3}' y='{y(y_low):.0f}' font-size='9' text-anchor='end'>"
        f"{_cm3(y_low)}</text>"
        f"<text x='{x(age_low):.0f}' y='{height - 6}' font-size='9'>{age_low:g}</text>"
        f"<text x='{x(age_high):.0f}' y='{height - 6}' font-size='9' text-anchor='end'>"
        f"{age_high:g} y</text>"
        f"<text x='{left - 3}' y='{(top + height - bottom) / 2:.0f}' font-size='9' "
        f"text-anchor='end'>cm³</text>"
        f"<circle cx='{x(age_years):.1f}' cy='{y(volume_mm3):.1f}' r='4' fill='{fill}' "
        f"stroke='{colour}' stroke-width='1.5'/></svg>")
