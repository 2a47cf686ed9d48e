"""The pages a window is shown in hold live traffic's values: none of them may run as script."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from raylane.monitoring.report import render_html, script_safe_json, write_whylogs_html
from raylane.profiling import profile
from raylane.testing import headless_browser, headless_dom

PAYLOAD = '</script><script>alert("pwned")</script><img src=x onerror=alert(2)>'


class _Scripts(HTMLParser):
    """The script elements as a browser's tokenizer splits them, and any element carrying a handler."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.handlers: list[str] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in = tag == "script"
        if self._in:
            self.scripts.append("")
        self.handlers += [f"{tag} {k}" for k, _ in attrs if k.startswith("on")]

    def handle_endtag(self, tag: str) -> None:
        self._in = False if tag == "script" else self._in

    def handle_data(self, data: str) -> None:
        if self._in:
            self.scripts[-1] += data


def _parsed(text: str) -> _Scripts:
    p = _Scripts()
    p.feed(text)
    return p


def _page(tmp_path: Path, plan: str) -> str:
    ref = profile(pd.DataFrame({"plan": ["basic", "pro"] * 50, "x": range(100)}))
    win = profile(pd.DataFrame({"plan": [plan] * 60 + ["basic"] * 40, "x": range(100)}))
    path = write_whylogs_html(win, ref, tmp_path / f"{len(plan)}.html")
    assert path is not None
    return path.read_text()


def test_a_string_feature_cannot_break_out_of_whylogs_script(tmp_path: Path) -> None:
    benign, hostile = _parsed(_page(tmp_path, "basic")), _parsed(_page(tmp_path, PAYLOAD))
    assert len(hostile.scripts) == len(benign.scripts)  # no script element was added
    assert not any(s.strip().startswith("alert(") for s in hostile.scripts)
    assert hostile.handlers == benign.handlers
    # the value is still there, as data the page's code reads
    assert any("\\u003c/script\\u003e" in s for s in hostile.scripts)


@pytest.mark.parametrize("text", ['{"a": "</script>&\u2028"}', '[1, {"b": "<!--"}]'])
def test_script_safe_json_means_the_same(text: str) -> None:
    safe = script_safe_json(text)
    assert json.loads(safe) == json.loads(text) and not any(c in safe for c in "<>&\u2028")


def test_raylanes_report_escapes_what_it_shows() -> None:
    report = {
        "project": PAYLOAD,
        "window": 1,
        "rows": 10,
        "profiles": 1,
        "opened_at": PAYLOAD,
        "closed_at": PAYLOAD,
        "reference_version": PAYLOAD,
        "drift": [{"column": PAYLOAD, "algorithm": PAYLOAD, "statistic": 0.1, "pvalue": 0.5, "drifted": True}],
        "drifted_features": [PAYLOAD],
        "quality": [{"name": PAYLOAD, "passed": False}],
        "live": {"metric": PAYLOAD, "value": 0.5, "labelled": 3, "version": PAYLOAD},
        "challenger": {"metric": PAYLOAD, "value": 0.4, "labelled": 3, "version": PAYLOAD},
        "decision": {"action": PAYLOAD, "reasons": [PAYLOAD], "why": PAYLOAD},
    }
    page = _parsed(render_html(report))
    assert page.scripts == [] and page.handlers == []


# Each part, run as script, marks the page; a page where none ran has no mark. No quotes: JSON
# would escape them, and the payload must stay valid script after a raw paste into JSON.
MARKING = (
    "</script><script>document.documentElement.dataset.pwned=1</script>"
    "<img src=x onerror=document.documentElement.dataset.pwned=2>"
)


def _marked(dom: str) -> bool:
    return re.search(r"<html[^>]*\bdata-pwned=", dom) is not None


@pytest.mark.skipif(headless_browser() is None, reason="no headless Chromium on this machine")
def test_no_value_from_traffic_runs_as_script_in_a_browser(tmp_path: Path) -> None:
    """Both pages of a window, with the payload in a string feature and in every field raylane's
    report shows, opened in headless Chromium: nothing of the payload runs."""
    control = tmp_path / "control.html"  # the same payload written raw: the browser runs it
    control.write_text(f"<!DOCTYPE html><html><body>{MARKING}</body></html>")
    assert _marked(headless_dom(control))
    whylogs = tmp_path / "whylogs.html"
    whylogs.write_text(_page(tmp_path, MARKING))
    report = tmp_path / "report.html"
    report.write_text(
        render_html(
            {
                "project": MARKING,
                "window": 1,
                "rows": 10,
                "profiles": 1,
                "opened_at": MARKING,
                "closed_at": MARKING,
                "reference_version": MARKING,
                "drift": [{"column": MARKING, "algorithm": "ks", "statistic": 0.1, "pvalue": 0.5, "drifted": True}],
                "drifted_features": [MARKING],
                "quality": [{"name": MARKING, "passed": False}],
                "live": {"metric": MARKING, "value": 0.5, "labelled": 3, "version": MARKING},
                "challenger": {"metric": MARKING, "value": 0.4, "labelled": 3, "version": MARKING},
                "decision": {"action": MARKING, "reasons": [MARKING], "why": MARKING},
            }
        )
    )
    for page in (whylogs, report):
        dom = headless_dom(page)
        assert "</html>" in dom and not _marked(dom), page.name
