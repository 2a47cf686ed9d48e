"""Request ids that prove where they came from: ``/feedback`` takes labels only for ids we issued.

A request id is 32 hex digits: 16 random, then the first 16 of their HMAC-SHA256 under the
service's secret. Every replica (and every later deployment of the project) holds the same secret,
so any replica can tell an id it or another replica issued from one a client made up, without
shared state. The secret lives in ``<storage_root>/serve/request-id.key`` (mode 0600), made on the
first deploy; deleting it invalidates every id issued so far.
"""

from __future__ import annotations

import hmac
import os
import secrets
from hashlib import sha256
from pathlib import Path

__all__ = ["RequestIds", "secret_path", "service_secret"]


class RequestIds:
    """Issue and check request ids under one secret (hex)."""

    def __init__(self, secret_hex: str) -> None:
        self._key = bytes.fromhex(secret_hex)

    def _mac(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), sha256).hexdigest()[:16]

    def new(self) -> str:
        nonce = secrets.token_hex(8)
        return nonce + self._mac(nonce)

    def issued(self, request_id: str) -> bool:
        """True for an id `new` made under this secret (compared in constant time)."""
        if len(request_id) != 32:
            return False
        return hmac.compare_digest(self._mac(request_id[:16]), request_id[16:])


def secret_path(storage_root: Path) -> Path:
    return storage_root / "serve" / "request-id.key"


def service_secret(storage_root: Path) -> str:
    """The project's request-id secret (hex), made (0600) when there is none yet."""
    path = secret_path(storage_root)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another deploy made it meanwhile
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret
