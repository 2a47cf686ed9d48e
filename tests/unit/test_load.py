"""The load generator behind the serve tests, the demo and the benchmarks, against a real HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from raylane.serving.load import run_load


class _Handler(BaseHTTPRequestHandler):
    """/ok answers 200 with a model version, /refused 422, /busy 503."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status = {"/ok": 200, "/refused": 422, "/busy": 503}[self.path]
        body = json.dumps({"model": {"version": "7"}} if status == 200 else {"detail": "no"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_answers_count_as_ok_and_carry_the_version(server: str) -> None:
    report = run_load(server + "/ok", lambda i: {"i": i}, concurrency=2, requests=10)
    assert (report.sent, report.ok, report.failed, report.raw_errors) == (10, 10, 0, 0)
    assert {v for _, v in report.versions} == {"7"} and len(report.latencies_ms) == 10


def test_a_4xx_fails_its_request_without_a_retry(server: str) -> None:
    report = run_load(server + "/refused", lambda i: {"i": i}, concurrency=2, requests=6, retries=3)
    assert (report.ok, report.failed, report.raw_errors) == (0, 6, 6)
    assert report.statuses == {422: 6} and report.errors == {"HTTP 422": 6}


def test_a_5xx_is_retried_then_counted_failed(server: str) -> None:
    report = run_load(server + "/busy", lambda i: {"i": i}, concurrency=1, requests=3, retries=2)
    assert (report.ok, report.failed, report.raw_errors) == (0, 3, 9)
    assert report.statuses == {503: 9}
