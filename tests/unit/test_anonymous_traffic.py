"""Anonymous and authenticated traffic: the API key check's answer, and how a replica's profile
carries it to the monitor (the share of a window's rows that came with the key)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from raylane.config import load_config
from raylane.monitoring.analysis import AUTHENTICATED, analyse, authenticated_rows_of
from raylane.monitoring.sink import ProfileSink
from raylane.serving.api import ApiError, ApiKeyCheck
from raylane.testing import example_config_path

DIGEST = hashlib.sha256(b"the-key").hexdigest()


def _status(check: ApiKeyCheck, headers: dict[str, str], **kw: bool) -> int | bool:
    try:
        return check(headers, **kw)
    except ApiError as exc:
        return exc.status


def test_the_key_check_tells_authenticated_from_anonymous_requests() -> None:
    strict, open_ = ApiKeyCheck(DIGEST), ApiKeyCheck(DIGEST, allow_anonymous=True)
    keyed, bearer, wrong = {"x-api-key": "the-key"}, {"authorization": "Bearer the-key"}, {"x-api-key": "nope"}
    assert _status(strict, keyed) is True and _status(strict, bearer) is True
    assert _status(strict, {}) == 401 and _status(strict, wrong) == 403
    assert _status(open_, keyed) is True
    assert _status(open_, {}) is False  # answered, as anonymous
    assert _status(open_, wrong) == 403  # a wrong key is never anonymous
    assert _status(open_, {}, anonymous_ok=False) == 401  # /feedback: labels need the key
    assert _status(ApiKeyCheck(None), {}) is False and _status(ApiKeyCheck(None), keyed) is False
    assert open_.anonymous and not strict.anonymous and ApiKeyCheck(None).anonymous


@pytest.mark.parametrize(("keyed", "anonymous"), [(30, 70), (100, 0), (0, 5)])
def test_a_replicas_profile_counts_the_rows_that_came_with_the_key(tmp_path: Path, keyed: int, anonymous: int) -> None:
    env = {"CHURN_DATA": str(tmp_path), "RAYLANE_STORAGE": str(tmp_path / "s")}
    cfg = load_config(example_config_path(), ["serve.auth.api_key_env=KEY"], env=env)
    sink = ProfileSink(cfg, "test")
    row = {"tenure_months": 12, "monthly_charges": 50.0, "plan": "basic", "prediction": 0.3}
    rows = [{**row, AUTHENTICATED: 1}] * keyed + [{**row, AUTHENTICATED: 0}] * anonymous
    from whylogs.core import DatasetProfileView

    view = DatasetProfileView.deserialize(sink._profile(rows))
    assert authenticated_rows_of(view) == keyed
    analysis = analyse(cfg, view, None, None)
    assert analysis.rows == keyed + anonymous and analysis.authenticated_rows == keyed
    assert analysis.to_dict()["authenticated_share"] == round(keyed / (keyed + anonymous), 4)
    # a profile without the column (made before it existed) counts no row as authenticated
    assert authenticated_rows_of(DatasetProfileView.deserialize(sink._profile([row]))) == 0
