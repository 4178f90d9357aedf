"""The batch's ``index.html``.
"""

from __future__ import annotations

from collections.abc import Sequence

from subct.qc.viewer import label_lut_json

#: The page script: NiiVue on the canvas, the selected case's CT and labels.
_VIEWER_SCRIPT = """<script>
const SUBCT_LUT = %(lut)s;
const nv = new niivue.Niivue({backColor: [0, 0, 0, 1], show3Dcrosshair: false});
async function subctShow(name) {
  const data = window.SUBCT_CASES[name];
  const ct = await niivue.NVImage.loadFromBase64({base64: data.ct,
    name: name + '_ct.nii.gz', colormap: 'gray', cal_min: -10, cal_max: 90});
  const labels = await niivue.NVImage.loadFromBase64({base64: data.labels,
    name: name + '_labels.nii.gz', opacity: 0.6});
  labels.setColormapLabel(SUBCT_LUT);
  while (nv.volumes.length) { nv.removeVolume(nv.volumes[0]); }
  nv.addVolume(ct);
  nv.addVolume(labels);
  nv.setSliceType(nv.sliceTypeMultiplanar);
  document.title = 'subct: ' + name;
}
nv.attachTo('subct-viewer').then(() => subctShow(%(first)s));
document.getElementById('subct-case').onchange = (e) => subctShow(e.target.value);
</script>"""


def _viewer_section(records: Sequence[dict[str, object]], scheme: str) -> list[str]:
    """A NiiVue slice viewer of the CT with its labels, one case at a time (the cases'
    ``viewer/<case>.js`` data scripts and the bundled ``viewer/niivue.umd.js``)."""
    import html
    import json

    cases = [str(r["case"]) for r in records
             if isinstance(r.get("outputs"), dict)
             and "view" in r["outputs"]]  # type: ignore[operator]
    if not cases:
        return []
    options = "".join(f"<option>{html.escape(c)}</option>" for c in cases)
    scripts = "".join(f"<script src='viewer/{html.escape(c)}.js'></script>" for c in cases)
    return [
        "<h2>Viewer</h2><p>Case <select id='subct-case'>" + options + "</select> "
        "(click a slice to move the cross; labels in FreeSurfer colours)</p>",
        "<div style='width:960px;height:420px;background:#000'>"
        "<canvas id='subct-viewer'></canvas></div>",
        "<script src='viewer/niivue.umd.js'></script>" + scripts,
        _VIEWER_SCRIPT % {"lut": label_lut_json(scheme), "first": json.dumps(cases[0])},
    ]


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
        *_viewer_section(records, str(records[0].get("scheme", "canonical"))
                         if records else "canonical"),
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
        cells = "".join("<td>–</td>" if volumes.get(n, 0.0) is None
                        else f"<td>{float(volumes.get(n, 0.0)):.0f}</td>" for n in names)
        status = "<td class='flag'>flagged</td>" if is_flagged else "<td class='ok'>ok</td>"
        parts.append(f"<tr id='{esc(record['case'])}'><td class='l'>{esc(record['case'])}</td>"
                     f"<td>{thumb}</td>{status}<td>{icv_text}</td><td>{mc_text}</td>{cells}</tr>")
    parts.append("</table><p>Volumes are measured on the written label maps (input grid). "
                 "QC flags: input not like head CT, volumes outside normal adult ranges, "
                 "MC-dropout CV above 10 % per structure. See each case's _qc.json and "
                 "docs/segment.md.</p></body></html>\n")
    return "\n".join(parts)
