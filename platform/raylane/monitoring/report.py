"""The pages a closed window is shown in: raylane's self-contained HTML report, and whylogs' own
interactive drift page.

The report is one file with no script and no network access, so it opens on an air-gapped cluster
too; whylogs' page loads its scripts from public CDNs. Both show numbers `raylane.monitoring.analysis`
computed; nothing here computes drift or decides anything.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

__all__ = ["render_html", "script_safe_json", "write_whylogs_html"]


def write_whylogs_html(window: Any, reference: Any | None, path: Path) -> Path | None:
    """whylogs' interactive drift summary (the window against the reference) as an HTML page.
    It loads jQuery and fonts from public CDNs, so it needs a browser with internet access.

    The page is whylogs' own template, filled with whylogs' own summaries, but the JSON that lands
    inside its ``<script>`` blocks is made script-safe first: values come from live traffic, and a
    string feature holding ``</script><script>…`` must stay a string (whylogs' notebook page
    pastes the JSON in raw)."""
    if reference is None:
        return None
    from whylogs.viz.enums.enums import PageSpecEnum
    from whylogs.viz.utils.html_template_utils import _get_compiled_template
    from whylogs.viz.utils.profile_viz_calculations import generate_summaries_with_drift_score

    summaries = generate_summaries_with_drift_score(window, reference, config=None, drift_map=None)
    template = _get_compiled_template(PageSpecEnum.SUMMARY_REPORT.value.html)
    path.write_text(template({k: script_safe_json(v) for k, v in summaries.items()}), encoding="utf-8")
    return path


_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_safe_json(text: str) -> str:
    """JSON text that can sit inside an HTML ``<script>``: ``<``, ``>``, ``&`` and the JS line
    separators only occur inside JSON strings, where their ``\\uXXXX`` escapes mean the same."""
    return re.sub("[<>&\u2028\u2029]", lambda m: _SCRIPT_UNSAFE[m.group(0)], text)


_STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f3f3f3}.drift{background:#fde2e1}
.fail{color:#b00020}.ok{color:#1b7f3b}code{background:#f3f3f3;padding:1px 4px}"""


_HOW = {"shadow": "shadow, the same requests", "canary": "canary, its own share of entities"}


def _version(live: dict[str, Any]) -> str:
    return f" <code>v{html.escape(str(live['version']))}</code>" if live.get("version") else ""


def render_html(report: dict[str, Any]) -> str:
    """A window's report as one self-contained HTML page (no script, no network)."""
    e = html.escape

    def num(x: Any) -> str:
        return "—" if x is None else f"{x:.4g}"

    drifted = report.get("drifted_features") or []
    rows = "".join(
        f"<tr class='{'drift' if d['drifted'] else ''}'><td>{e(d['column'])}</td><td>{e(d['algorithm'])}</td>"
        f"<td>{num(d['pvalue'])}</td><td>{num(d['statistic'])}</td><td>{'drifted' if d['drifted'] else 'no'}</td></tr>"
        for d in report.get("drift", [])
    )
    checks = "".join(
        f"<tr><td>{e(q['name'])}</td><td class='{'ok' if q['passed'] else 'fail'}'>"
        f"{'passed' if q['passed'] else 'FAILED'}</td></tr>"
        for q in report.get("quality", [])
    )
    live_text = "no labels"
    if live := report.get("live") or {}:
        live_text = (
            f"champion{_version(live)}: {e(str(live.get('metric')))} {num(live.get('value'))}"
            f" on {live.get('labelled', 0)} labelled predictions"
        )
    if shadow := report.get("challenger") or {}:
        live_text += (
            f"<br>challenger{_version(shadow)} ({_HOW.get(str(shadow.get('source')), 'shadow, the same requests')}):"
            f" {e(str(shadow.get('metric')))}"
            f" {num(shadow.get('value'))} on {shadow.get('labelled', 0)} labelled predictions"
        )
    decision = report.get("decision") or {}
    reasons = "; ".join(decision.get("reasons", []))
    title = f"raylane monitor · {report['project']} · window {report['window']}"
    batch = report.get("batch") or {}
    source = (
        f"a batch scoring run (MLflow run <code>{e(str(batch.get('run_id')))}</code>, model"
        f" v{e(str(batch.get('model_version')))})"
        if report.get("source") == "batch"
        else "live traffic"
    )
    interactive = (
        "<p>whylogs' interactive drift page (it needs internet for its scripts):"
        " <a href='whylogs.html'>whylogs.html</a></p>"
        if report.get("whylogs_html")
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title><style>{_STYLE}</style></head>
<body><h1>{e(title)}</h1>
<p>{report["rows"]} rows of {source} ({float(report.get("authenticated_share") or 0):.0%} with the API key)
from {report["profiles"]} profiles,
{e(str(report["opened_at"]))} → {e(str(report["closed_at"]))},
against the reference profile of champion <code>v{e(str(report.get("reference_version")))}</code>.</p>
<h2>Drift: {len(drifted)} features drifted</h2>
<p class="{"fail" if drifted else "ok"}">{e(", ".join(drifted)) or "none"}</p>
<table><tr><th>column</th><th>algorithm</th><th>p-value</th><th>statistic</th><th>drifted</th></tr>{rows}</table>
<h2>Data quality</h2><table><tr><th>check</th><th>result</th></tr>{checks}</table>
<h2>Live metric</h2><p>{live_text}</p>
<h2>Decision</h2><p><b>{e(str(decision.get("action", "none")))}</b> {e(reasons)}
{e(str(decision.get("why") or decision.get("job_id") or ""))}</p>
{interactive}
</body></html>
"""
