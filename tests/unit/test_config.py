from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from raylane.config import ProjectConfig, config_schema, load_config
from raylane.errors import ConfigError
from raylane.testing import example_config_path

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "churn.yaml"


def _write(tmp_path: Path, doc: dict[str, Any] | str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def _minimal() -> dict[str, Any]:
    return {
        "project": "shop",
        "data": {
            "sources": [
                {
                    "name": "orders",
                    "path": "raw/orders.parquet",
                    "timestamp_column": "ts",
                    "columns": {"user_id": "int64", "amount": "float64", "country": "string"},
                },
                {
                    "name": "labels",
                    "path": "raw/labels.csv",
                    "timestamp_column": "ts",
                    "columns": {"user_id": "int64", "bought": "int64"},
                },
            ],
            "labels": {"source": "labels", "column": "bought"},
        },
        "entity": {"name": "user", "join_key": "user_id"},
        "features": {"views": [{"name": "user_orders", "source": "orders", "ttl": "7d"}]},
        "model": {"task": "binary"},
    }


def test_example_config_loads_with_defaults() -> None:
    cfg = load_config(EXAMPLE, env={})
    assert cfg.project == "churn"
    assert cfg.storage_root == (EXAMPLE.parent / "../.raylane/churn").resolve()
    assert cfg.data.source("labels").file_format == "csv"
    assert cfg.features.views[1].ttl == timedelta(days=3)
    assert cfg.backends.ray.address == "local"
    assert cfg.backends.feast.online_store.type == "sqlite"
    assert cfg.serve.host == "127.0.0.1"
    assert len(cfg.feature_dtypes()) == 10
    assert cfg.mlflow_tracking_uri == f"sqlite:///{cfg.storage_root / 'mlflow.db'}"


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, _minimal()))
    assert cfg.data.sources[0].path == tmp_path / "raw/orders.parquet"
    assert cfg.storage_root == tmp_path / ".raylane/shop"
    assert cfg.view_features(cfg.features.views[0]) == ["amount", "country"]


def test_overrides_and_env(tmp_path: Path) -> None:
    doc = _minimal()
    doc["data"]["sources"][0]["path"] = "${DATA_DIR:-raw}/orders.parquet"
    doc["description"] = "owner ${OWNER}"
    path = _write(tmp_path, doc)
    env = {"OWNER": "ana", "RAYLANE__TRAIN__EPOCHS": "4", "DATA_DIR": "/srv/data"}
    cfg = load_config(
        path, ["train.learning_rate=0.5", "model.hidden_layers=[8, 4]", "data.sources.1.name=labels"], env=env
    )
    assert cfg.description == "owner ${OWNER}"  # free text is published: never expanded
    assert cfg.data.sources[0].path == Path("/srv/data/orders.parquet")
    assert cfg.train.epochs == 4
    assert cfg.train.learning_rate == 0.5
    assert cfg.model.hidden_layers == [8, 4]


def test_fingerprint_is_stable_and_sensitive(tmp_path: Path) -> None:
    path = _write(tmp_path, _minimal())
    a, b = load_config(path), load_config(path)
    c = load_config(path, ["train.seed=1"])
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE, env={})
    again = ProjectConfig.model_validate(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"config file not found: nope\.yaml") as info:
        load_config("nope.yaml")
    assert info.value.fix and "configs/churn.yaml" in info.value.fix
    assert info.value.exit_code == 2


def test_unknown_key_names_the_path_and_suggests(tmp_path: Path) -> None:
    doc = _minimal()
    doc["train"] = {"epohcs": 3}
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, doc))
    text = str(info.value)
    assert "p.yaml" in text and "train.epohcs: unknown field" in text
    assert "did you mean 'epochs'?" in text


def test_wrong_type_names_path_and_value(tmp_path: Path) -> None:
    doc = _minimal()
    doc["train"] = {"epochs": "ten"}
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, doc))
    assert "train.epochs" in str(info.value) and "'ten'" in str(info.value)


def test_override_errors_are_marked(tmp_path: Path) -> None:
    path = _write(tmp_path, _minimal())
    with pytest.raises(ConfigError, match=r"train.epochs: .*\(from an override\)"):
        load_config(path, ["train.epochs=-1"])
    with pytest.raises(ConfigError, match="has no '='"):
        load_config(path, ["train.epochs"])
    with pytest.raises(ConfigError, match="not an index"):
        load_config(path, ["data.sources.7.name=x"])


def test_missing_env_var(tmp_path: Path) -> None:
    doc = _minimal()
    doc["data"]["sources"][0]["path"] = "${NOT_SET_ANYWHERE}/x.parquet"
    with pytest.raises(ConfigError, match=r"data.sources.0.path: environment variable \$\{NOT_SET_ANYWHERE\}"):
        load_config(_write(tmp_path, doc), env={})


def test_bad_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML at line 2"):
        load_config(_write(tmp_path, "project: x\n  bad: [\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["features"]["views"][0].update(source="nope"), "features.views.0.source: unknown source 'nope'"),
        (lambda d: d["features"]["views"][0].update(features=["amount", "ghost"]), "'ghost' is not a column"),
        (lambda d: d["data"]["labels"].update(column="ghost"), "data.labels.column: 'ghost'"),
        (lambda d: d["data"]["sources"][0]["columns"].pop("user_id"), "the entity key `user_id` is not among"),
        (lambda d: d["features"]["views"][0].update(ttl="soon"), "features.views.0.ttl"),
        (lambda d: d.update(project="Bad-Name"), "project: String should match pattern"),
        (lambda d: d["backends"].update(feast={"online_store": {"type": "cassandra"}}), "online_store"),
        (lambda d: d["data"]["sources"][0]["columns"].update(amount="decimal"), "columns.amount.dtype"),
    ],
)
def test_cross_field_errors(tmp_path: Path, change: Any, message: str) -> None:
    doc = _minimal()
    doc.setdefault("backends", {})
    change(doc)
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, doc))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"model.dropout": {"type": "normal", "low": 0, "high": 1}}, "tune.space.model.dropout.type: Input should be"),
        ({"model.dropout": {"type": "choice", "values": []}}, "tune.space.model.dropout: `choice` needs a non-empty"),
        ({"model.dropout": {"type": "grid"}}, "`grid` needs a non-empty `values` list"),
        (
            {"train.learning_rate": {"type": "loguniform", "low": 0.1, "high": 0.01}},
            "tune.space.train.learning_rate: `low` (0.1) must be below `high` (0.01)",
        ),
        ({"train.learning_rate": {"type": "loguniform", "low": 0, "high": 0.01}}, "`loguniform` needs `low` > 0"),
        ({"model.depth": {"type": "randint", "low": 1, "high": 4}}, "`model.depth` is not a parameter of the model"),
        ({"learning_rate": {"type": "uniform", "low": 0.1, "high": 1}}, "`learning_rate` is not a parameter"),
        ({"model.max_categories": {"type": "randint", "low": 8, "high": 64}}, "cannot be searched"),
        ({"train.num_workers": {"type": "choice", "values": [1, 2]}}, "cannot be searched"),
        ({"model.dropout": {"type": "uniform", "low": 0.1, "high": 1.5}}, "1.5 is not a valid `model.dropout`"),
        ({"model.activation": {"type": "choice", "values": ["relu", "swish"]}}, "'swish' is not a valid"),
        ({"train.batch_size": {"type": "uniform", "low": 16, "high": 64}}, "takes integers; use `randint`"),
    ],
)
def test_a_bad_search_space_names_the_parameter(tmp_path: Path, space: dict[str, Any], message: str) -> None:
    doc = _minimal()
    doc["tune"] = {"space": space}
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, doc))
    assert message in str(info.value)


def test_a_good_search_space_and_scheduler_bounds(tmp_path: Path) -> None:
    doc = _minimal()
    doc["tune"] = {
        "space": {
            "train.learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
            "model.hidden_layers": {"type": "grid", "values": [[32], [64, 32]]},
            "train.batch_size": {"type": "randint", "low": 64, "high": 512},
        }
    }
    assert len(load_config(_write(tmp_path, doc)).tune.space) == 3
    doc["tune"] = {"scheduler": {"max_t": 2, "grace_period": 3}}
    with pytest.raises(ConfigError, match="must not exceed `max_t`"):
        load_config(_write(tmp_path, doc))


def test_every_field_is_described() -> None:
    schema = config_schema()
    undocumented = []
    for name, model in schema["$defs"].items():
        for field, spec in model.get("properties", {}).items():
            if not spec.get("description"):
                undocumented.append(f"{name}.{field}")
    for field, spec in schema["properties"].items():
        if not spec.get("description"):
            undocumented.append(f"ProjectConfig.{field}")
    assert undocumented == []
    assert schema["additionalProperties"] is False


def test_docs_config_reference_is_generated_from_the_models() -> None:
    from raylane.config import config_reference

    docs = Path(__file__).resolve().parents[2] / "docs" / "config.md"
    text = config_reference()
    assert docs.read_text() == text, "docs/config.md is stale: run `raylane config reference -o docs/config.md`"
    for path in ("`monitor.triggers.drifted_features`", "`cluster.kuberay.storage_claim`", "`data.sources[].path`"):
        assert path in text


def test_free_text_is_never_expanded(tmp_path: Path) -> None:
    """`description` is published at /openapi.json: an environment value must not leak through it."""
    text = (
        example_config_path()
        .read_text()
        .replace(
            "description: Predict which subscribers cancel within 30 days.", "description: 'key: ${SECRET_KEY}'", 1
        )
    )
    path = tmp_path / "churn.yaml"
    path.write_text(text)
    env = {"SECRET_KEY": "s3cret", "CHURN_DATA": str(tmp_path), "RAYLANE_STORAGE": str(tmp_path / "s")}
    cfg = load_config(path, env=env)
    assert cfg.description == "key: ${SECRET_KEY}" and cfg.storage_root == tmp_path / "s"


def test_a_service_beyond_loopback_needs_an_api_key(tmp_path: Path) -> None:
    env = {"CHURN_DATA": str(tmp_path), "RAYLANE_STORAGE": str(tmp_path / "s")}
    with pytest.raises(ConfigError, match="reachable from other machines"):
        load_config(example_config_path(), ["serve.host=0.0.0.0"], env=env)
    with pytest.raises(ConfigError, match=r"serve\.auth\.api_key_env"):
        load_config(example_config_path(), ["serve.host=10.1.2.3"], env=env)
    keyed = load_config(example_config_path(), ["serve.host=0.0.0.0", "serve.auth.api_key_env=KEY"], env=env)
    assert keyed.serve.exposure_warning and "every network interface" in keyed.serve.exposure_warning
    open_ = load_config(example_config_path(), ["serve.host=10.1.2.3", "serve.auth.allow_anonymous=true"], env=env)
    assert open_.serve.exposure_warning is None and not open_.serve.auth.enabled
    assert load_config(example_config_path(), env=env).serve.exposure_warning is None  # 127.0.0.1


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", "http://127.0.0.1:8000"), ("0.0.0.0", "http://127.0.0.1:8000"), ("::1", "http://[::1]:8000")],
)
def test_the_service_origin_reaches_wildcard_binds_on_loopback_and_brackets_ipv6(host: str, expected: str) -> None:
    from raylane.serving.client import origin, url

    cfg = load_config(EXAMPLE, overrides=[f"serve.host={host}", "serve.auth.allow_anonymous=true", "serve.port=8000"])
    assert origin(cfg) == expected and url(cfg) == expected + cfg.serve.route_prefix.rstrip("/")


def test_scoring_actors_leave_cpu_for_reading_and_writing() -> None:
    from raylane.batch import TASK_CPUS, _actor_cpus
    from raylane.errors import ClusterError

    assert _actor_cpus(2, 1.0, 16.0) == 1.0  # room to spare: as configured
    # 2 actors of 1 CPU on 2 free CPUs would leave the read and write tasks none
    assert _actor_cpus(2, 1.0, 2.0) == 0.5 and TASK_CPUS < 1.0 / 3  # three task operators share the CPU left
    assert _actor_cpus(1, 1.0, 1.5) == 0.75 and _actor_cpus(2, 1.0, 1.0) == 0.25  # a deployment holds the rest
    with pytest.raises(ClusterError, match=r"lower batch\.concurrency"):
        _actor_cpus(4, 1.0, 0.3)


def test_a_share_of_authenticated_traffic_needs_an_api_key(tmp_path: Path) -> None:
    env = {"CHURN_DATA": str(tmp_path), "RAYLANE_STORAGE": str(tmp_path / "s")}
    share = "monitor.triggers.min_authenticated_share=0.9"
    with pytest.raises(ConfigError, match=r"no request is\s+authenticated.*serve\.auth\.api_key_env"):
        load_config(example_config_path(), [share], env=env)
    with pytest.raises(ConfigError, match="min_authenticated_share"):
        load_config(example_config_path(), ["monitor.triggers.min_authenticated_share=1.5"], env=env)
    cfg = load_config(example_config_path(), [share, "serve.auth.api_key_env=KEY"], env=env)
    assert cfg.monitor.triggers.min_authenticated_share == 0.9


def test_a_shadow_rollout_needs_the_inference_log(tmp_path: Path) -> None:
    env = {"CHURN_DATA": str(tmp_path), "RAYLANE_STORAGE": str(tmp_path / "s")}
    with pytest.raises(ConfigError, match=r"serve\.inference_log\.enabled is false"):
        load_config(example_config_path(), ["serve.rollout.mode=shadow", "serve.inference_log.enabled=false"], env=env)
    with pytest.raises(ConfigError, match=r"serve\.rollout\.mode"):
        load_config(example_config_path(), ["serve.rollout.mode=canary-ish"], env=env)
    assert load_config(example_config_path(), env=env).serve.rollout.mode == "immediate"
