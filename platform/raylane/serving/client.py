"""Reaching a project's running service: its URL, its API key, and a small synchronous HTTP client.

`Client` is what the CLI (``raylane serve predict``), the demo and the tests talk to the API with;
`url` and `api_key` are what it (and `deploy`, which hands the replicas the key's digest) reads
from the config.
"""

from __future__ import annotations

import os
from typing import Any

from raylane.config import ProjectConfig
from raylane.errors import ServeError

__all__ = ["Client", "api_key", "origin", "url"]


def origin(cfg: ProjectConfig) -> str:
    """``http://host:port`` of the service as seen from this machine: a wildcard bind is reached on
    127.0.0.1, an IPv6 address in brackets."""
    host = "127.0.0.1" if cfg.serve.host in ("0.0.0.0", "::") else cfg.serve.host
    return f"http://{f'[{host}]' if ':' in host else host}:{cfg.serve.port}"


def url(cfg: ProjectConfig) -> str:
    """The service's base URL (`origin` and ``serve.route_prefix``)."""
    return origin(cfg) + cfg.serve.route_prefix.rstrip("/")


def api_key(cfg: ProjectConfig) -> str | None:
    """The configured API key, or None when auth is off; a clear error when it cannot be read."""
    auth = cfg.serve.auth
    if auth.api_key_env:
        value = os.environ.get(auth.api_key_env, "").strip()
        if value:
            return value
        if auth.api_key_file is None:
            raise ServeError(
                f"serve.auth.api_key_env names ${auth.api_key_env}, which is not set or empty",
                fix=f"export {auth.api_key_env}=<key> (e.g. `openssl rand -hex 32`), or set serve.auth.api_key_file",
            )
    if auth.api_key_file is not None:
        try:
            value = auth.api_key_file.read_text().strip()
        except OSError as exc:
            raise ServeError(
                f"serve.auth.api_key_file {auth.api_key_file} cannot be read: {exc.strerror}",
                fix="write the key into that file (chmod 600), or fix the path",
            ) from None
        if not value:
            raise ServeError(f"serve.auth.api_key_file {auth.api_key_file} is empty", fix="write the key into it")
        if os.name == "posix" and auth.api_key_file.stat().st_mode & 0o077:
            raise ServeError(
                f"serve.auth.api_key_file {auth.api_key_file} can be read by other users",
                fix=f"chmod 600 {auth.api_key_file}",
            )
        return value
    return None


class Client:
    """A small synchronous client of a project's API (the CLI's, the demo's and the tests').

    Every answer of 400 or above raises `ServeError` with the service's ``detail``; so does a
    service that cannot be reached.
    """

    def __init__(self, cfg: ProjectConfig, *, timeout_s: float | None = None, base_url: str | None = None) -> None:
        import httpx

        self.cfg = cfg
        key = api_key(cfg)
        headers = {"X-API-Key": key} if key else {}
        self.http = httpx.Client(
            base_url=base_url or url(cfg), headers=headers, timeout=timeout_s or cfg.serve.request_timeout_s + 5
        )

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        import httpx

        try:
            r = self.http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ServeError(
                f"cannot reach {self.http.base_url}{path}: {exc}",
                fix="is the service deployed? `raylane serve status CONFIG`",
            ) from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ServeError(f"{method} {path} answered {r.status_code}: {detail}")
        return dict(r.json())

    def get(self, path: str) -> dict[str, Any]:
        return self._call("GET", path)

    def predict(self, entities: list[dict[str, Any]]) -> dict[str, Any]:
        return self._call("POST", "/predict", {"entities": entities})

    def feedback(self, request_id: str, label: Any, **key: Any) -> dict[str, Any]:
        return self._call("POST", "/feedback", {"request_id": request_id, "label": label, **key})

    def close(self) -> None:
        self.http.close()
