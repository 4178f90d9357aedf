"""The batch's ``index.html``.
"""

from __future__ import annotations

import html
import typing
from collections.abc import Sequence

from subct.norms.chart import centile_chart_svg, chart_symbols_svg, percentile_text
from subct.norms.models import ICV_KEY
from subct.qc.viewer import label_lut_json

#: The page script: NiiVue on the canvas, the selected case's CT and labels.
_VIEWER_SCRIPT = """<script>
const SUBCT_LUT = %(lut)s;
// Radiological convention (patient's right on screen left), as the overlay PNGs; the
// checkbox switches to neurological.
const nv = new niivue.Niivue({backColor: [0, 0, 0, 1], show3Dcrosshair: false,
                              isRadiologicalConvention: true});
// Each case's data script (viewer/<case>.js, about 1.4 MB) is loaded only when the case
// is shown, so a report of hundreds of cases opens as fast as one of a single case.
function subctLoad(name) {
  window.SUBCT_CASES = window.SUBCT_CASES || {};
  if (window.SUBCT_CASES[name]) { return Promise.resolve(window.SUBCT_CASES[name]); }
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = 'viewer/' + encodeURIComponent(name) + '.js';
    script.onload = () => resolve(window.SUBCT_CASES[name]);
    script.onerror = () => reject(new Error('cannot load ' + script.src));
    document.head.appendChild(script);
  });
}
async function subctShow(name) {
  const data = await subctLoad(name);
  const ct = await niivue.NVImage.loadFromBase64({base64: data.ct,
    name: name + '_ct.nii.gz', colormap: 'gray', cal_min: -10, cal_max: 90});
  const labels = await niivue.NVImage.loadFromBase64({base64: data.labels,
    name: name + '_labels.nii.gz', opacity: 0.6});
  labels.setColormapLabel(SUBCT_LUT);
  while (nv.volumes.length) { nv.removeVolume(nv.volumes[0]); }
  nv.addVolume(ct);
  nv.addVolume(labels);
  nv.setSliceType(nv.sliceTypeMultiplanar);
  nv.setMultiplanarLayout(3);  // ROW: the three planes side by side
  document.title = 'subct: ' + name;
}
nv.attachTo('subct-viewer').then(() => subctShow(%(first)s));
document.getElementById('subct-case').onchange = (e) => subctShow(e.target.value);
document.getElementById('subct-radiological').onchange = (e) => {
  nv.setRadiologicalConvention(e.target.checked);
  document.getElementById('subct-convention').textContent =
    e.target.checked ? 'radiological: R on the left' : 'neurological: L on the left';
};
</script>"""


def _viewer_section(records: Sequence[dict[str, object]], scheme: str) -> list[str]:
    """A NiiVue slice viewer of the CT with its labels, one case at a time (the cases'
    ``viewer/<case>.js`` data scripts, loaded when a case is chosen, and the bundled
    ``viewer/niivue.umd.js``)."""
    import json

    cases = [str(r["case"]) for r in records
             if isinstance(r.get("outputs"), dict)
             and "view" in r["outputs"]]  # type: ignore[operator]
    if not cases:
        return []
    options = "".join(f"<option>{html.escape(c)}</option>" for c in cases)
    return [
        "<h2>Viewer</h2><p>Case <select id='subct-case'>" + options + "</select> "
        "(click a slice to move the cross; labels in FreeSurfer colours) &nbsp; "
        "<label><input type='checkbox' id='subct-radiological' checked> radiological "
        "convention, as the overlay images</label> "
        "(<b id='subct-convention'>radiological: R on the left</b>)</p>",
        "<div style='width:min(100%,1500px);height:480px;background:#000'>"
        "<canvas id='subct-viewer'></canvas></div>",
        "<script src='viewer/niivue.umd.js'></script>",
        _VIEWER_SCRIPT % {"lut": label_lut_json(scheme), "first": json.dumps(cases[0])},
    ]


#: What a user should do about each QC flag (the table of docs/segment.md, short form).
FLAG_ADVICE: dict[str, str] = {
    "no_air": "check this is the head CT you meant; do not use the volumes",
    "no_bone": "check this is the head CT you meant; do not use the volumes",
    "brain_hu": "check this is the head CT you meant; do not use the volumes",
    "fov_large": "a body CT? crop it to the head",
    "hu_range": "the values are not Hounsfield units; check the file",
    "orientation_unknown": "find the true orientation and rerun with --assume-orientation",
    "fov_thin": "expect missing structures",
    "no_skull_ring": "the crop may be misplaced: check the viewer",
    "icv_range": "partial coverage or an unusual head: check the viewer",
    "icv_cut_by_field_of_view": "do not compare this ICV (or ICV-normalised volumes)",
    "csf_dominant": "hydrocephalus or severe atrophy: expect large ventricles",
    "not_in_field_of_view": "use only the structures present",
    "cut_by_field_of_view": "these volumes are lower bounds",
    "labels_on_bone": "the brain may be mislocated: check the viewer",
    "labels_outside_skull": "the brain may be mislocated or the skull open: check the viewer",
    "ventricle_on_tissue": "the ventricle label covers brain; its volume is too large",
    "dense_in_structure": "haemorrhage or calcification: that volume is unreliable",
    "hyperdense_lesion": "likely haemorrhage: the named structures' volumes are unreliable",
    "asymmetry": "a lesion, unilateral atrophy or an error: look at the viewer",
    "low_reliability": "treat those volumes with caution",
    "mc_dropout_cv": "treat those volumes as uncertain",
    "structure_missing": "the segmentation failed there",
    "volume_range": "look at the case (these wide ranges are not adjusted; the "
                    "percentiles are, when age and sex are known)",
}

#: Click-to-sort for the batch table (numbers as numbers, text as text).
_SORT_SCRIPT = """<script>
document.querySelectorAll('table.sortable th').forEach((th, column) => {
  th.style.cursor = 'pointer';
  th.onclick = () => {
    const body = th.closest('table').tBodies[0];
    const rows = Array.from(body.rows);
    const up = th.dataset.up !== '1';
    th.dataset.up = up ? '1' : '0';
    const key = (row) => {
      const text = row.cells[column].innerText.trim();
      const number = parseFloat(text);
      return isNaN(number) ? text : number;
    };
    rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (up ? 1 : -1));
    rows.forEach((row) => body.appendChild(row));
  };
});
</script>"""


def structure_warnings(flags: Sequence[dict[str, typing.Any]], structure: str) -> list[str]:
    """Codes (sorted, unique) of the warning flags (``qc.json`` dicts) that name
    ``structure`` among the structures they put in doubt."""
    return sorted({flag["code"] for flag in flags if flag.get("severity") == "warning"
                   and structure in (flag.get("structures") or ())})


def _normative_block(record: dict[str, typing.Any], flags: list[dict[str, typing.Any]],
                     frames: set[tuple[str, typing.Any]]) -> list[str]:
    """The case's normative section: who the norms compare it with and a centile chart
    per structure and the ICV, or one line saying why there are no percentiles; the
    (structure, sex) frames its charts use are added to ``frames``."""
    normative = record.get("normative") or {}
    if not normative:
        return []
    if not normative.get("available"):
        reason = html.escape(str(normative.get("reason")))
        return [f"<p class='norm'>No normative percentiles: {reason}.</p>"]
    people = normative.get("demographics") or {}
    age, sex = float(people["age_years"]), str(people["sex"])
    sources = {str(people.get("age_source")), str(people.get("sex_source"))}
    volumes = {**(record.get("volumes_mm3") or {}),
               ICV_KEY: record.get("intracranial_volume_mm3")}
    entries = {**(normative.get("structures") or {}), ICV_KEY: normative.get(ICV_KEY) or {}}
    drawn = [name for name, entry in entries.items()
             if "percentile" in entry and volumes.get(name) is not None]
    frames.update((name, sex) for name in drawn)
    charts = [centile_chart_svg(name, sex, age, float(volumes[name]),  # type: ignore[arg-type]
                                float(entries[name]["percentile"]),
                                bool(structure_warnings(flags, name)),
                                tuple(entries[name]["band_mm3"]))  # from the record
              for name in drawn]
    names = ", ".join(html.escape(str(s.get("name"))) for s in normative.get("sources") or [])
    return [f"<p class='norm'>Against healthy {html.escape(sex)}s of the same age ({age:g} "
            f"years; from {html.escape(' and '.join(sorted(sources)))}; norms: {names}): "
            "band = 2.5th–97.5th percentile, line = median; adjusted for age and sex, not "
            "head size; the norms are FreeSurfer volumes on MRI (docs/segment.md, "
            "\"Normative percentiles\"). A hollow dot: a QC warning names the structure.</p>",
            "<div class='charts'>" + "".join(charts) + "</div>"]


def _structure_row(name: str, row: dict[str, typing.Any], flags: list[dict[str, typing.Any]],
                   low_high: typing.Any, norm: dict[str, typing.Any]) -> str:
    """One structure's table row: volume, its band (normative when known, else the
    unadjusted adult range) as text and as a bar, percentile, HU, TTA agreement, flags."""
    volume = row.get("volume_mm3")
    unadjusted = "band_mm3" not in norm and "reason" in norm  # percentiles, but not here
    if "band_mm3" in norm:
        low_high = norm["band_mm3"]
    bar = ""
    if volume is not None and low_high:
        low, high = low_high
        position = (volume - low) / (high - low) if high > low else 0.5
        outside = not 0.0 <= position <= 1.0
        left = min(max(position, 0.0), 1.0) * 100
        colour = "#c00" if outside else "#080"
        bar = (f"<div class='bar'><div class='dot' style='left:{left:.0f}%;"
               f"background:{colour}'></div></div>")
    volume_text = "–" if volume is None else f"{volume / 1000:.2f}"
    range_text = "" if not low_high else f"{low_high[0] / 1000:.1f}–{low_high[1] / 1000:.1f}"
    if range_text and unadjusted:
        range_text += " (unadjusted: no norm)"
    percentile = "" if "percentile" not in norm else percentile_text(float(norm["percentile"]))
    agreement = row.get("tta_agreement_dice")
    own = structure_warnings(flags, name)
    volume_class = " class='flag'" if own else ""
    return (f"<tr><td class='l'>{html.escape(name)}</td><td{volume_class}>{volume_text}</td>"
            f"<td>{range_text}</td><td>{bar}</td><td>{percentile}</td>"
            f"<td>{'' if row.get('mean_hu') is None else row['mean_hu']}</td>"
            f"<td>{'' if agreement is None else f'{agreement:.2f}'}</td>"
            f"<td class='l'>{html.escape(' '.join(own))}</td></tr>")


def _case_panels(records: Sequence[dict[str, object]]) -> list[str]:
    """Per case: the QC flags in plain words with what to do, the centile charts, and
    each structure's volume against its band (the age- and sex-specific normative band
    when age and sex are known, else the unadjusted adult range; a bar, outside red),
    percentile and reliability."""

    def esc(value: object) -> str:
        return html.escape(str(value))

    parts = ["<h2>Cases</h2>"]
    frames: set[tuple[str, typing.Any]] = set()  # the chart frames the page must define
    for record in records:
        qc = typing.cast(dict[str, typing.Any], record.get("qc") or {})
        flags = [f for f in qc.get("flags", []) if f.get("severity") == "warning"]
        ranges = qc.get("normal_volume_ranges_mm3", {})
        statistics = typing.cast(dict[str, typing.Any], record.get("statistics") or {})
        normative = typing.cast(dict[str, typing.Any], record.get("normative") or {})
        norms = normative.get("structures") or {}
        title = f"{esc(record['case'])}: " + (f"{len(flags)} QC warning(s)" if flags
                                              else "no QC warning")
        parts.append(f"<details id='panel-{esc(record['case'])}'><summary>{title}</summary>")
        if flags:
            parts.append("<ul>" + "".join(
                f"<li><b>{esc(f['code'])}</b>: {esc(f['message'])} — "
                f"<i>{esc(FLAG_ADVICE.get(f['code'], 'see docs/segment.md'))}</i></li>"
                for f in flags) + "</ul>")
        parts.extend(_normative_block(typing.cast(dict[str, typing.Any], record), flags,
                                      frames))
        band = ("normative band (cm³)" if normative.get("available")
                else "normal adult range, unadjusted (cm³)")
        parts.append(f"<table><tr><th>structure</th><th>volume (cm³)</th><th>{band}</th>"
                     "<th>within it</th><th>percentile</th><th>mean HU</th>"
                     "<th>TTA agreement</th><th>QC warnings naming it</th></tr>")
        parts.extend(_structure_row(name, row, flags, ranges.get(name), norms.get(name) or {})
                     for name, row in statistics.items())
        parts.append("</table></details>")
    parts.append(chart_symbols_svg(frames))
    return parts


def _esc(value: object) -> str:
    return html.escape(str(value))


def _volume_row(record: dict[str, object], names: list[str]) -> str:
    """One case's row of the volume table: overlay thumbnail, QC status, ICV (cm³),
    MC-dropout CV (%) and each structure's volume (mm³; flagged cells shaded)."""
    qc = record.get("qc") if isinstance(record.get("qc"), dict) else {}
    assert isinstance(qc, dict)
    is_flagged = bool(qc.get("flagged"))
    outputs = record.get("outputs") if isinstance(record.get("outputs"), dict) else {}
    assert isinstance(outputs, dict)
    overlay = outputs.get("overlay")
    thumb = (f"<a href='{_esc(overlay)}'><img src='{_esc(overlay)}' alt='overlay'></a>"
             if overlay else "")
    icv = record.get("intracranial_volume_mm3")
    icv_text = "–" if not isinstance(icv, int | float) else f"{icv / 1000:.0f}"
    mc = qc.get("mc_dropout")
    mc_text = f"{mc['mean_cv_percent']:.2f}" if isinstance(mc, dict) else "–"
    volumes = record.get("volumes_mm3") if isinstance(record.get("volumes_mm3"), dict) else {}
    assert isinstance(volumes, dict)
    case_flags = qc.get("flags", [])
    cells = ""
    for name in names:
        volume = volumes.get(name, 0.0)
        own = structure_warnings(case_flags, name)
        opening = f"<td class='flag' title='{_esc(' '.join(own))}'>" if own else "<td>"
        cells += "<td>–</td>" if volume is None else f"{opening}{float(volume):.0f}</td>"
    status = "<td class='flag'>flagged</td>" if is_flagged else "<td class='ok'>ok</td>"
    return (f"<tr id='{_esc(record['case'])}'><td class='l'>{_esc(record['case'])}</td>"
            f"<td>{thumb}</td>{status}<td>{icv_text}</td><td>{mc_text}</td>{cells}</tr>")


def render_segmentation_index(records: Sequence[dict[str, object]],
                              failures: Sequence[tuple[str, str]] = ()) -> str:
    """The batch ``index.html`` of ``subct segment``: one self-contained HTML page.

    ``records`` are the cases' ``<case>_qc.json`` contents. The page has a flagged-cases
    list, a row per case with its overlay thumbnail (linked, relative path), QC status,
    intracranial volume and every structure's volume (mm³), and the failed cases.
    """

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
        "th{background:#eee}.flag{background:#fdd}.ok{background:#dfd}img{width:240px}"
        "td.l{text-align:left;position:sticky;left:0;background:#fff}.bar{position:relative;width:160px;height:8px;"
        "background:#dfe;border:1px solid #9a9}.dot{position:absolute;top:-3px;"
        "width:6px;height:12px;margin-left:-3px}details{margin:4px 0}"
        ".charts{display:flex;flex-wrap:wrap;gap:4px}.norm{max-width:60em}</style></head><body>",
        f"<h1>subct segment: {len(records)} case(s)</h1>",
        *_viewer_section(records, str(records[0].get("scheme", "canonical"))
                         if records else "canonical"),
        f"<h2>Flagged cases ({len(flagged)})</h2><ul>",
    ]
    for record in flagged:
        flags: typing.Any = typing.cast(dict[str, typing.Any], record["qc"]).get("flags", [])
        warnings = [f for f in flags if f.get("severity") == "warning"]
        codes = ", ".join(sorted({esc(f.get("code", "")) for f in warnings}))
        # one line per case (its warning codes), the messages one per line when opened
        items = "".join(f"<li><b>{esc(f.get('code', ''))}</b>: {esc(f.get('message', ''))}"
                        "</li>" for f in warnings)
        parts.append(f"<li><details><summary><a href='#{esc(record['case'])}'>"
                     f"{esc(record['case'])}</a>: {len(warnings)} warning(s): {codes}"
                     f"</summary><ul>{items}</ul></details></li>")
    parts.append("</ul>")
    if failures:
        parts.append(f"<h2>Failed cases ({len(failures)})</h2><ul>")
        parts.extend(f"<li>{esc(name)}: {esc(error)}</li>" for name, error in failures)
        parts.append("</ul>")
    parts.extend(_case_panels(records))
    parts.append("<h2>Volumes (mm³; click a column to sort)</h2>"
                 "<div style='overflow-x:auto;max-width:100%'><table class='sortable'>"
                 "<thead><tr><th>case</th><th>overlay</th><th>QC</th>"
                 "<th>ICV (cm³)</th><th>MC-dropout CV (%)</th>"
                 + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr></thead><tbody>")
    parts.extend(_volume_row(record, names) for record in records)
    parts.append("</tbody></table></div>" + _SORT_SCRIPT
                 + "<p>Volumes are measured on the written label maps (input grid). "
                 "QC flags: input not like head CT, volumes outside normal adult ranges, "
                 "MC-dropout CV above 10 % per structure. See each case's _qc.json and "
                 "docs/segment.md.</p></body></html>\n")
    return "\n".join(parts)
