"""`job submit --pip` installs only what the project pinned: a job's packages run as code on the cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from raylane.config import load_config
from raylane.errors import ConfigError, UserError
from raylane.jobs import submit_project_job
from raylane.testing import example_config_path


def _cfg(tmp_path: Path, *pins: str):  # type: ignore[no-untyped-def]
    env = {"CHURN_DATA": str(tmp_path / "data"), "RAYLANE_STORAGE": str(tmp_path / "store")}
    sets = [f"backends.ray.job_pip=[{','.join(pins)}]"] if pins else []
    return load_config(example_config_path(), sets, env=env)


@pytest.mark.parametrize("req", ["rich", "rich>=13", "rich==13.*", "rich @ https://evil.example/rich.whl", "not a req"])
def test_a_pin_must_be_one_version(tmp_path: Path, req: str) -> None:
    with pytest.raises(ConfigError, match=r"backends\.ray\.job_pip"):
        _cfg(tmp_path, f'"{req}"')


@pytest.mark.parametrize("req", ["rich==14.0.0", "evil-package==1.0", "rich", "Rich==13.9.4; python_version>'3'"])
def test_submit_refuses_what_the_project_did_not_pin(tmp_path: Path, req: str) -> None:
    cfg = _cfg(tmp_path, "rich==13.9.4")
    with pytest.raises(UserError, match="not one of the project's pinned job requirements") as info:
        submit_project_job(cfg, "train", pip=[req], address="http://127.0.0.1:1")  # refused before any connection
    assert "backends.ray.job_pip" in str(info.value.fix)


def test_a_pinned_requirement_passes_in_any_spelling(tmp_path: Path) -> None:
    from raylane.jobs import _check_pip

    _check_pip(_cfg(tmp_path, "rich==13.9.4"), ["Rich==13.9.4", "rich == 13.9.4"])


def test_an_undeclared_job_is_exit_2_listing_the_declared_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from raylane.cli import main

    monkeypatch.setenv("CHURN_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("RAYLANE_STORAGE", str(tmp_path / "store"))
    code = main(["job", "submit", str(example_config_path()), "label_reprot", "--address", "http://127.0.0.1:1"])
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())  # rich wraps long lines
    assert code == 2, text
    assert "'label_reprot' is not a raylane job entrypoint" in text and "config's jobs (label_report)" in text, text


def test_a_project_job_script_must_live_in_the_project_folder(tmp_path: Path) -> None:
    from raylane.jobs import project_script

    cfg = _cfg(tmp_path)
    assert project_script(cfg, "label_report") == example_config_path().parent / "scripts" / "label_report.py"
    for script, needle in [("../jobs/train.py", "outside the project's folder"), ("scripts/nope.py", "does not exist")]:
        moved = cfg.model_copy(update={"jobs": {"j": cfg.jobs["label_report"].model_copy(update={"script": script})}})
        moved = moved.with_base_dir(cfg.base_dir)
        with pytest.raises(UserError, match=needle):
            submit_project_job(moved, "j", address="http://127.0.0.1:1")  # refused before any connection
    with pytest.raises(ConfigError, match=r"jobs\.x\.script"):
        load_config(example_config_path(), ["jobs.x.script=run.sh"], env={"CHURN_DATA": "d", "RAYLANE_STORAGE": "s"})
