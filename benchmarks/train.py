"""Training benchmark: Ray Train (1 worker) against a plain torch loop on the same data and model.

Reports, on the same machine in one process:
- steady-state epoch time (median over epochs after the first) of the training pass:
  Ray Train worker (`iter_torch_batches` from a materialized Ray Dataset) vs a plain loop over
  in-memory tensors; target ratio <= 1.15;
- MLflow logging time as a share of training time (target <= 2%);
- start-up overhead of Ray Train (fit wall time minus the epochs), reported apart.

Run: `make bench` or `.venv/bin/python benchmarks/train.py [--size medium] [--epochs 8]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from raylane import runtime
from raylane.bundle import ModelBundle
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.model import loss_fn, prepare_target
from raylane.preprocess import fit_preprocessor
from raylane.testing import example_project
from raylane.training import split, train


def plain_torch(cfg, train_raw, epochs: int) -> list[float]:  # type: ignore[no-untyped-def]
    dtypes = cfg.feature_dtypes()
    pre = fit_preprocessor(
        train_raw,
        dtypes=dtypes,
        label=cfg.data.labels.column,
        task=cfg.model.task,
        max_categories=cfg.model.max_categories,
    )
    frame = train_raw.to_pandas()
    arrays = pre.batch(frame)
    x_num, x_cat, y = (torch.from_numpy(arrays[k]) for k in ("x_num", "x_cat", "y"))
    torch.manual_seed(cfg.train.seed)
    model = ModelBundle.create(cfg.model, pre, list(dtypes)).model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay)
    criterion = loss_fn(cfg.model.task)
    bs = cfg.train.batch_size
    times = []
    shuffler = torch.Generator().manual_seed(cfg.train.seed)
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(y), generator=shuffler)  # a fresh shuffle per epoch, as Ray Train's loop
        for i in range(0, len(y), bs):
            idx = order[i : i + bs]
            out, target = prepare_target(cfg.model.task, model(x_num[idx], x_cat[idx]), y[idx])
            loss = criterion(out, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="medium")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the Ray Train worker reserves one CPU; compare like with like
    with tempfile.TemporaryDirectory(prefix="raylane-bench-") as tmp:
        overrides = [f"train.epochs={args.epochs}", "train.early_stopping=null"]
        cfg = example_project(Path(tmp), size=args.size, overrides=overrides)
        with runtime.ray_session(cfg.backends.ray):
            ingest(cfg)
            repo = FeatureRepo(cfg)
            repo.apply()
            train_raw, _ = split(cfg, repo.training_set().materialize())
            rows = train_raw.count()
            plain = plain_torch(cfg, train_raw, args.epochs)
            t0 = time.perf_counter()
            result = train(cfg, register=False)
            wall = time.perf_counter() - t0
            from mlflow import MlflowClient

            client = MlflowClient(cfg.mlflow_tracking_uri)
            epochs = [
                m.value for m in sorted(client.get_metric_history(result.run_id, "epoch_seconds"), key=lambda m: m.step)
            ]
            logs = client.get_metric_history(result.run_id, "mlflow_log_seconds")
            log_s = max((m.value for m in logs), default=0.0)
    plain_ss, ray_ss = statistics.median(plain[1:]), statistics.median(epochs[1:])
    print(f"training rows {rows:,}, batch {cfg.train.batch_size}, {args.epochs} epochs, torch threads 1")
    print(
        f"steady-state epoch: plain torch {plain_ss:.3f} s, Ray Train {ray_ss:.3f} s, "
        f"ratio {ray_ss / plain_ss:.3f} (target <= 1.15)"
    )
    train_s = sum(epochs)
    print(f"MLflow logging {log_s:.3f} s of {train_s:.2f} s training = {100 * log_s / train_s:.2f}% (target <= 2%)")
    print(
        f"Ray Train start-up and wrap-up overhead: {wall - train_s:.1f} s of {wall:.1f} s wall "
        "(training set, preprocessing, worker group, evaluation, model logging)"
    )
    print(
        f"holdout: {', '.join(f'{k} {v:.4f}' for k, v in result.metrics.items())}; "
        f"plain epochs {np.round(plain, 3).tolist()}, Ray epochs {np.round(epochs, 3).tolist()}"
    )


if __name__ == "__main__":
    main()
