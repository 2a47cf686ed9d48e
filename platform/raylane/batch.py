"""Batch inference: score many entities with a registered model on Ray Data, with lineage.

`predict` reads the entities (a parquet or csv file or folder, or every entity of the offline
tables), and streams them through a pool of scoring actors (`Scorer`, Ray Data's
``map_batches`` with an ``ActorPoolStrategy``). Each actor loads the registered bundle once (its
weights, no unpickling; a user model's logged code). It then takes each batch's features from
Feast:
- the offline store, as of each row's time: the same point-in-time join the training set uses;
- or the online store.

Request-time feature values in the input win over the stored ones, as on ``/predict``. The
predictions stream, in input order, to this process, which writes them as parquet
(``part-00000.parquet``, ... of up to a million rows each) in a temporary folder beside
``--out``, moved into place only when every row is written: a failed run leaves nothing at
``--out``. ``_summary.json`` is written inside it (readers skip ``_`` files). The run is an
MLflow run (``raylane.kind=batch``) tagged with the model version it used.

Output, one row per input row, in input order: the entity key; ``as_of`` (the time the features
were read as of); ``prediction`` as ``/predict`` answers it (P(class 1), the class, or the value);
``probabilities`` for multiclass (one field per class); ``imputed`` (no stored features);
``model_name``, ``model_version`` and ``batch_run_id``.

When the project's monitor runs, each actor profiles its batches (features and prediction, as a
Serve replica does) and the merged profile becomes a monitor window of its own (``source:
batch``): drift in a nightly scoring run is analysed, reported and decided on like live traffic.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from raylane.config import ProjectConfig
from raylane.errors import ClusterError, UserError
from raylane.lineage import Tag

__all__ = ["BatchReport", "Scorer", "predict", "time_column"]

log = logging.getLogger(__name__)

AS_OF = "as_of"
SUMMARY = "_summary.json"
TASK_CPUS = 0.1  # what each read task reserves: the scoring actors get the rest
ROWS_PER_FILE = 1_000_000  # the output's rows per parquet file (part-00000.parquet, ...)


def _tasks(cfg: ProjectConfig) -> int:
    """How many read tasks run at once: as many as scoring actors (2 at least).
    Without a bound Ray Data runs one per `TASK_CPUS` (20 on 2 CPUs), each in a worker process
    of its own, so the job's memory grew with the rows (more blocks, more processes)."""
    return max(2, cfg.batch.concurrency)


@dataclass
class BatchReport:
    """What a batch scoring run did (also its ``_summary.json``)."""

    out: str
    rows_in: int
    rows_out: int
    rows_missing_features: int
    seconds: float
    model_name: str
    model_version: str
    run_id: str
    features: str
    entities: str
    monitor_window: int | None = None  # the monitor window the batch was reported as (None: no monitor ran)
    ignored_columns: list[str] = field(default_factory=list)  # input columns neither key, time nor feature
    time_column: str | None = None  # the input's per-row time column; None: every row as of `as_of`


def predict(
    cfg: ProjectConfig,
    *,
    entities: str,
    out: Path | None = None,
    model: str = "@champion",
    as_of: datetime | None = None,
    features: Literal["offline", "online"] = "offline",
    overwrite: bool = False,
    step: Any = lambda _: None,
) -> BatchReport:
    """Score ``entities`` (a path, or ``all``) with the model ``model`` into parquet at ``out``
    (``<storage_root>/scores/<model>-v<version>-<UTC time>`` when omitted). Needs Ray.

    Raises:
        UserError: the output exists (without ``overwrite``), an unknown model reference, a
            missing or mistyped key column, an empty input, or features not ingested.
    """
    started = time.perf_counter()
    with _data_context():
        return _predict(cfg, entities, out, model, as_of, features, overwrite, step, started)


@contextlib.contextmanager
def _data_context() -> Iterator[None]:
    """Ray Data settings for a scoring run; datasets take them when they are made.

    * ``preserve_order``: one output row per input row, in the input's order.
    * ``use_datasource_v2`` off: Ray 2.60's new file reads start with a file-listing task that
      reserves a whole CPU and takes no resource arguments. On a cluster whose CPUs are held by
      the scoring actors and a deployment's replicas, it never starts and the run waits forever;
      the classic reader's tasks reserve `TASK_CPUS` like every other task of the run."""
    import ray

    ctx = ray.data.DataContext.get_current()
    was = ctx.execution_options.preserve_order, ctx.use_datasource_v2
    ctx.execution_options.preserve_order, ctx.use_datasource_v2 = True, False
    try:
        yield
    finally:
        ctx.execution_options.preserve_order, ctx.use_datasource_v2 = was


def _predict(
    cfg: ProjectConfig,
    entities: str,
    out: Path | None,
    model: str,
    as_of: datetime | None,
    features: str,
    overwrite: bool,
    step: Any,
    started: float,
) -> BatchReport:
    import mlflow
    import ray

    from raylane.features import FeatureRepo
    from raylane.registry import Registry
    from raylane.training import ensure_experiment

    version = Registry(cfg).version(model if ("@" in model or "/" in model) else f"@{model}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = (out or cfg.storage_root / "scores" / f"{version.name}-v{version.version}-{stamp}").expanduser().absolute()
    if out.exists() and not overwrite:
        raise UserError(f"--out {out} already exists", fix="pass --overwrite to replace it, or choose another path")
    if version.name != cfg.model_name:  # `name@alias` of another registered model
        cfg = cfg.model_copy(update={"registry": cfg.registry.model_copy(update={"model_name": version.name})})
    FeatureRepo(cfg).check_offline()
    step(f"reading the entities ({entities})")
    raw, timed, ignored = _read(cfg, entities)
    rows_in = raw.count()  # parquet: from the files' metadata
    if rows_in == 0:
        raise UserError(f"--entities {entities}: no rows to score", fix="pass a file or folder with entity rows")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.raylane-{uuid.uuid4().hex[:8]}"
    profiles = tmp.with_name(tmp.name + "-profiles")
    watched = cfg.monitor.enabled and _monitor(cfg) is not None  # profiled only when a monitor runs
    if watched:
        profiles.mkdir()
    began = datetime.now(UTC)
    experiment = ensure_experiment(cfg)
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=f"batch-{version.name}-v{version.version}"):
        run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
        mlflow.set_tags(
            {
                Tag.KIND: "batch",
                "raylane.model_name": version.name,
                "raylane.model_version": str(version.version),
                "raylane.model_run_id": version.run_id,
                "raylane.features": features,
            }
        )
        mlflow.log_params({"entities": entities, "features": features, "as_of": str(as_of), **cfg.batch.model_dump()})
        b = cfg.batch
        cpus = _actor_cpus(b.concurrency, b.num_cpus, float(ray.available_resources().get("CPU", 0.0)))
        step(
            f"scoring {rows_in} row(s) with {version.name} v{version.version} on {b.concurrency} actor(s)"
            f" of {cpus:g} CPU"
        )
        try:
            scored = raw.map_batches(
                Scorer,
                fn_constructor_kwargs={
                    "doc": cfg.model_dump(mode="json"),
                    "base_dir": str(cfg.base_dir) if cfg.base_dir else None,
                    "name": version.name,
                    "version": str(version.version),
                    "features": features,
                    "run_id": run_id,
                    "profiles": str(profiles) if watched else None,
                    "as_of": (as_of or datetime.now(UTC)).isoformat(),
                },
                batch_size=b.batch_size,
                batch_format="pandas",
                compute=ray.data.ActorPoolStrategy(size=b.concurrency),
                num_cpus=cpus,
                num_gpus=b.num_gpus,
            )
            _write_in_order(scored, tmp)
            rows_out, missing = _counts(tmp)
            meta = {"run_id": run_id, "model_version": str(version.version), "started_at": began.isoformat()}
            window = _report_to_monitor(cfg, profiles, meta | {"rows": rows_out}) if watched else None
            report = BatchReport(
                str(out),
                rows_in,
                rows_out,
                missing,
                time.perf_counter() - started,
                version.name,
                str(version.version),
                run_id,
                features,
                entities,
                window,
                ignored,
                time_column(cfg) if timed else None,
            )
            (tmp / SUMMARY).write_text(json.dumps(asdict(report), indent=1))
            if out.exists():
                shutil.rmtree(out) if out.is_dir() else out.unlink()
            tmp.rename(out)
        finally:
            for folder in (tmp, profiles):
                if folder.exists():
                    shutil.rmtree(folder, ignore_errors=True)
        mlflow.log_metrics({"rows_in": rows_in, "rows_out": rows_out, "rows_missing_features": missing})
        mlflow.log_metric("seconds", report.seconds)
        mlflow.log_dict(asdict(report), "batch/summary.json")
    return report


def _write_in_order(scored: Any, folder: Path) -> None:
    """The scored rows, streamed in input order by this process into ``folder/part-NNNNN.parquet``.

    Not ``Dataset.write_parquet``: its tasks hand the blocks they get to pyarrow's threaded
    ``write_dataset``, which may write them in any order within a file (whatever
    ``preserve_order`` says; 6 of 300 two-table writes swapped here), and on a cluster each task
    writes on its own node's disk while ``--out`` is a folder of the driver's."""
    import pyarrow.parquet as pq

    folder.mkdir()
    writer, schema, part, rows = None, None, 0, 0
    try:
        for table in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            if table.num_rows == 0:
                continue
            if writer is None or rows >= ROWS_PER_FILE:
                if writer is not None:
                    writer.close()
                schema = schema or table.schema
                writer, part, rows = pq.ParquetWriter(folder / f"part-{part:05d}.parquet", schema), part + 1, 0
            writer.write_table(table if table.schema.equals(schema) else table.cast(schema))
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()


def _actor_cpus(actors: int, wanted: float, free: float) -> float:
    """CPUs per scoring actor: ``batch.num_cpus``, less so that one of the ``free`` CPUs (half,
    when at most 2 are free) stays for the read tasks. Ray Data shares what is
    left among those operators; with less than a task's `TASK_CPUS` each, none starts and the run
    waits for ever (seen with 2 actors of 1 CPU on 2 CPUs, and with a quarter CPU left)."""
    room = free - min(1.0, free / 2)
    if room < 0.05 * actors:
        raise ClusterError(
            f"the cluster has {free:g} CPU free, too few for {actors} scoring actor(s) and their reads",
            fix="lower batch.concurrency, or free CPUs (a deployment's replicas, another job)",
        )
    return min(wanted, round(room / actors, 3))


def time_column(cfg: ProjectConfig) -> str:
    """The entity rows' time column: `batch.time_column`, or the labels source's timestamp column."""
    return cfg.batch.time_column or cfg.data.source(cfg.data.labels.source).timestamp_column


def _read(cfg: ProjectConfig, entities: str) -> tuple[Any, bool, list[str]]:
    """The input rows as a Ray Dataset (the key, the time column if given, request-time features),
    whether they have the time column, and the input's other columns, which are not read."""
    import pyarrow as pa
    import ray

    from raylane.ingest import offline_path

    key = cfg.entity.join_key
    if entities == "all":  # every entity that has a feature row
        paths = [str(offline_path(cfg, s)) for s in sorted({v.source for v in cfg.features.views})]
        # the distinct keys are made before the scoring actors take their CPUs (a shuffle's tasks need some)
        keys = ray.data.read_parquet(paths, columns=[key], num_cpus=TASK_CPUS)
        keys = keys.groupby(key).count().select_columns([key])
        return keys.materialize(), False, []
    path = Path(entities).expanduser()
    if not path.exists():
        raise UserError(f"--entities {path}: no such file or folder", fix="pass a parquet or csv file or folder")
    csv = path.suffix in (".csv", ".gz") or (path.is_dir() and any(path.glob("*.csv")))
    read = ray.data.read_csv if csv else ray.data.read_parquet
    ds = read(str(path), num_cpus=TASK_CPUS, concurrency=_tasks(cfg))
    schema = ds.schema()
    if schema is None or key not in schema.names:
        raise UserError(
            f"--entities {path}: no entity key column `{key}` (columns: {schema.names if schema else []})",
            fix=f"add a `{key}` column with the entity keys",
        )
    key_type = schema.base_schema.field(key).type
    if (cfg.entity.dtype == "int64") != pa.types.is_integer(key_type):
        raise UserError(
            f"--entities {path}: column `{key}` is {key_type}, but the entity key is {cfg.entity.dtype}",
            fix=f"write `{key}` as {cfg.entity.dtype} values",
        )
    when = time_column(cfg)
    known = set(cfg.feature_dtypes()) | {when}
    others = [c for c in schema.names if c != key]
    kept = ds.select_columns([key, *(c for c in others if c in known)])
    return kept, when in others, [c for c in others if c not in known]


class Scorer:
    """A scoring actor: the model loaded once, Feast's features per batch, the predictions."""

    def __init__(
        self,
        doc: dict[str, Any],
        base_dir: str | None,
        name: str,
        version: str,
        features: str,
        run_id: str,
        profiles: str | None,
        as_of: str,
    ) -> None:
        from raylane.features import FeatureRepo
        from raylane.registry import Registry

        cfg = ProjectConfig.model_validate(doc)  # its registry.model_name is the model's
        cfg = cfg.with_base_dir(Path(base_dir)) if base_dir else cfg
        self.name, self.version, self.run_id = name, version, run_id
        # each row's feature time: its own timestamp column, else the run's `--as-of` (or now)
        self.time_column, self.as_of = time_column(cfg), datetime.fromisoformat(as_of)
        self.profiles = Path(profiles) if profiles else None  # each batch's whylogs profile goes there
        self.bundle = Registry(cfg).load_bundle(version)
        self.cfg_text = cfg.text_features()
        self.bundle.to_best_device()
        self.repo = FeatureRepo(cfg)
        self.online = self.repo.online() if features == "online" else None
        self.key, self.names = cfg.entity.join_key, list(cfg.feature_dtypes())

    def __call__(self, batch: Any) -> Any:
        import numpy as np
        import pandas as pd

        key, names = self.key, self.names
        batch = batch.reset_index(drop=True)
        # Ray Data may hand tz-aware times as pyarrow-backed columns: numpy datetimes for Feast
        if self.time_column in batch:
            times = pd.to_datetime(batch.pop(self.time_column), utc=True)
        else:
            times = pd.Series(pd.Timestamp(self.as_of), index=batch.index)
        batch[AS_OF] = times.astype("datetime64[ns, UTC]")
        if self.online is None:
            joined = self.repo.join(batch[[key, AS_OF]]).to_pandas()
            stored = {f: joined[f].astype(object).where(joined[f].notna(), None) for f in names}
        else:
            looked = self.online.get(batch[key].tolist())
            stored = {f: pd.Series(looked[f], dtype=object) for f in names}
        frame = pd.DataFrame({f: stored[f] for f in names}, dtype=object)
        given = [f for f in names if f in batch]
        # as on /predict: a row is imputed when the store has none of its features, unless all are given
        known = frame.notna().any(axis=1).to_numpy() | (len(given) == len(names))
        for f in given:  # request-time values win
            frame[f] = batch[f].astype(object).where(batch[f].notna(), frame[f])
        pred = self.bundle.predict(frame)
        out = pd.DataFrame({key: batch[key], AS_OF: batch[AS_OF]})
        pre = self.bundle.pre
        if self.profiles is not None:  # features and a numeric prediction, as a replica profiles them
            from raylane.monitoring.analysis import AUTHENTICATED

            numeric = pred.argmax(axis=1) if pre.task == "multiclass" else pred
            # a batch run is submitted with the cluster's token: all its rows are authenticated
            self._profile(frame.infer_objects().assign(prediction=numeric, **{AUTHENTICATED: 1}))
        if pre.task == "multiclass":
            classes = [str(c) for c in pre.classes]
            out["prediction"] = np.asarray(classes, dtype=object)[pred.argmax(axis=1)]
            out["probabilities"] = pd.Series([dict(zip(classes, map(float, p), strict=True)) for p in pred])
        else:
            out["prediction"] = pred.astype(np.float64)
        out["imputed"] = ~known
        out["model_name"], out["model_version"], out["batch_run_id"] = self.name, self.version, self.run_id
        return out

    def _profile(self, frame: Any) -> None:
        from raylane.profiling import profile

        assert self.profiles is not None
        blob = bytes(profile(frame, text=self.cfg_text).serialize())
        (self.profiles / f"{uuid.uuid4().hex}.bin").write_bytes(blob)


def _monitor(cfg: ProjectConfig) -> Any:
    """The project's running monitor actor, or None."""
    from raylane.monitoring.control import monitor_handle

    try:
        return monitor_handle(cfg)
    except ValueError:
        return None


def _report_to_monitor(cfg: ProjectConfig, profiles: Path, meta: dict[str, Any]) -> int | None:
    """The batch's merged profile as a monitor window (``source: batch``); its number, or None
    when the monitor is gone (nothing to report to)."""
    import ray
    from whylogs.core import DatasetProfileView

    merged = None
    for path in sorted(profiles.glob("*.bin")):
        view = DatasetProfileView.deserialize(path.read_bytes())
        merged = view if merged is None else merged.merge(view)
    handle = _monitor(cfg)
    if merged is None or handle is None:
        return None
    profile_id = f"batch-{meta['run_id']}"
    report = ray.get(handle.report_batch.remote(profile_id, bytes(merged.serialize()), meta), timeout=120)
    return int(report["window"]) if report else None


def _counts(folder: Path) -> tuple[int, int]:
    """Rows written and rows scored without stored features (parquet metadata and one column)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    data = pads.dataset(str(folder), format="parquet")
    rows = data.count_rows()
    imputed = data.to_table(columns=["imputed"]).column("imputed")
    return rows, int(pc.sum(imputed).as_py() or 0)
