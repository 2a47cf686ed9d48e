"""The CLI without Ray: help, config commands, and how errors are reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from raylane.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "churn.yaml"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_the_command_groups() -> None:
    result = subprocess.run([sys.executable, "-m", "raylane", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for group in ("config", "features", "demo"):
        assert group in result.stdout


def test_config_validate_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "config", "validate", str(EXAMPLE))
    assert code == 0 and "project churn" in out and "10 features" in out
    code, out, _ = _run(capsys, "config", "show", str(EXAMPLE), "--set", "train.epochs=2")
    shown = yaml.safe_load(out)
    assert code == 0 and shown["train"]["epochs"] == 2 and shown["serve"]["max_ongoing_requests"] == 64


def test_config_schema_is_json_schema(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "config", "schema")
    schema = json.loads(out)
    assert code == 0 and schema["title"] == "raylane project config" and "train" in schema["properties"]
    target = tmp_path / "schema.json"
    assert _run(capsys, "config", "schema", "--out", str(target))[0] == 0
    assert json.loads(target.read_text()) == schema


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        (None, "config file not found"),
        ("project: churn\nbogus: 1\n", "bogus: unknown field"),
        (EXAMPLE.read_text().replace("epochs: 8", "epochs: eight"), "train.epochs"),
    ],
)
def test_config_errors_exit_2_without_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, doc: str | None, says: str
) -> None:
    path = tmp_path / "p.yaml"
    if doc is not None:
        path.write_text(doc)
    code, out, err = _run(capsys, "config", "validate", str(path))
    assert code == 2
    assert says in err and "fix:" in err
    assert "Traceback" not in err + out


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "--debug", "config", "validate", str(tmp_path / "missing.yaml"))
    assert code == 2 and "Traceback" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "features", "frobnicate")
    assert code == 2 and "No such command" in err


def test_demo_data_is_deterministic(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert _run(capsys, "demo", "data", "--size", "tiny", "--out", str(tmp_path / name))[0] == 0
    for file in ("profiles.parquet", "activity.parquet", "labels.csv"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
    code, _, err = _run(capsys, "demo", "data", "--size", "huge", "--out", str(tmp_path / "c"))
    assert code == 2 and "tiny, small, medium, large" in err


def test_sweep_rejects_a_bad_search_space_before_starting_anything(capsys: pytest.CaptureFixture[str]) -> None:
    """The config check runs before Ray starts (this suite forbids `ray.init`)."""
    bad = 'tune.space={"model.depth": {"type": "randint", "low": 1, "high": 4}}'
    code, _, err = _run(capsys, "sweep", str(EXAMPLE), "--set", bad)
    assert code == 2
    assert "tune.space.model.depth: `model.depth` is not a parameter of the model" in err
    assert "searchable: ['model.hidden_layers'" in err
    code, _, err = _run(capsys, "sweep", str(EXAMPLE), "--set", "tune.space.model.dropout.low=0.5")
    assert code == 2 and "`low` (0.5) must be below `high` (0.3)" in err


def test_serve_commands_report_what_is_missing_before_ray_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAYLANE_STORAGE", str(tmp_path / "store"))
    monkeypatch.setenv("CHURN_DATA", str(tmp_path / "data"))
    # no model registered yet
    code, _, err = _run(capsys, "serve", "deploy", str(EXAMPLE))
    assert code == 2 and "no version with alias 'champion'" in err and "raylane train" in err
    # an API key that is configured but not set
    monkeypatch.delenv("RAYLANE_NO_SUCH_KEY", raising=False)
    code, _, err = _run(capsys, "serve", "deploy", str(EXAMPLE), "--set", "serve.auth.api_key_env=RAYLANE_NO_SUCH_KEY")
    assert code == 2 and "$RAYLANE_NO_SUCH_KEY" in err and "export RAYLANE_NO_SUCH_KEY" in err
    # a key file that others can read
    key = tmp_path / "key"
    key.write_text("k")
    key.chmod(0o644)
    code, _, err = _run(capsys, "serve", "deploy", str(EXAMPLE), "--set", f"serve.auth.api_key_file={key}")
    assert code == 2 and "chmod 600" in err
    # nothing deployed: status, predict and shutdown say so
    code, out, _ = _run(capsys, "serve", "status", str(EXAMPLE), "--set", "serve.port=1")
    assert code == 1 and "no deployment recorded" in out and "does not answer" in out
    code, _, err = _run(capsys, "serve", "shutdown", str(EXAMPLE))
    assert code == 2 and "raylane serve deploy" in err
    code, _, err = _run(capsys, "serve", "predict", str(EXAMPLE))
    assert code == 2 and "--entity" in err
    code, _, err = _run(capsys, "serve", "predict", str(EXAMPLE), "-e", "abc")
    assert code == 2 and "customer_id is an integer" in err


def test_autoscaling_bounds_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "config", "validate", str(EXAMPLE), "--set", "serve.autoscaling.min_replicas=3")
    assert code == 2 and "min_replicas" in err and "max_replicas" in err


def test_monitor_commands_without_a_monitor(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    store = ["--set", f"storage_root={tmp_path}"]
    code, out, _ = _run(capsys, "monitor", "status", str(EXAMPLE), *store)
    assert code == 0 and "the monitor has not run yet" in out
    code, _, err = _run(capsys, "monitor", "report", str(EXAMPLE), *store)
    assert code == 2 and "no monitor window has closed yet" in err
    code, _, err = _run(capsys, "monitor", "stop", str(EXAMPLE), *store)
    assert code == 2 and "embedded Ray" in err


def test_monitor_config_needs_a_way_to_close_windows(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "config", "validate", str(EXAMPLE), "--set", "monitor.window_rows=null")
    assert code == 2 and "monitor.window_rows or monitor.window_seconds" in err


def test_jobs_run_only_allow_listed_entrypoints(tmp_path: Path) -> None:
    import shlex

    from raylane.errors import UserError
    from raylane.jobs import ENTRYPOINTS, entrypoint

    config = tmp_path / "my config.yaml"
    cmd = shlex.split(entrypoint("retrain", config, ["train.epochs=2"], ["--reason", "drift; rm -rf /"]))
    assert cmd[0] == sys.executable and cmd[1].endswith("jobs/retrain.py")
    assert cmd[2:] == [str(config), "--set", "train.epochs=2", "--reason", "drift; rm -rf /"]  # quoted, not run
    assert set(ENTRYPOINTS) == {"pipeline", "train", "sweep", "retrain", "materialize", "predict"}
    with pytest.raises(UserError, match="not a raylane job entrypoint"):
        entrypoint("bash -c id", config)


def test_quiet_ray_shows_no_ray_data_deprecation_warnings() -> None:
    """Making Ray Data's first DataContext warns about its deprecated fields; quiet mode (no --verbose)
    hides them even where a library has turned DeprecationWarnings on (`serve deploy` printed three)."""
    code = (
        "import warnings; warnings.simplefilter('default')\n"
        "from raylane.runtime import _quiet_ray; _quiet_ray(False)\n"
        "import ray.data; assert ray.data.DataContext.get_current().enable_progress_bars is False"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
