"""Training: the Feast training set → preprocessing → Ray Train (TorchTrainer) → MLflow → registry.

One code path for every task (binary, multiclass, regression):

1. The point-in-time training set (`FeatureRepo.training_set`) is split by time (newest rows
   validate) or at random, and fingerprinted (views, label time range, rows, content hash).
2. Preprocessing is fitted on the training split only and applied with Ray Data.
3. A `TorchTrainer` runs `train_loop` on ``train.num_workers`` workers (DDP over gloo or NCCL):
   raylane's `epoch_loop` or the project's ``train.loop``, both given a `TrainContext` whose
   ``report`` checkpoints every epoch (weights, optimizer, preprocessing) and stops early; a killed
   worker resumes from the last checkpoint up to ``train.max_failures`` times.
4. The driver evaluates the best checkpoint on the holdout, logs the model (a bundle, no pickles),
   the resolved config, lineage tags and whylogs reference profiles to MLflow, registers a version
   with alias ``challenger`` and runs the promotion gate (`Registry.gate_and_promote`).

Before anything starts, the request is checked against the cluster: ``use_gpu`` on a cluster
without GPUs, or more CPUs per worker than any node has, is a `ClusterError` at once instead of
Ray's endless wait.

Where things live: `data` (steps 1–2, `prepare`, `Prepared`, `holdout_frame`), `loop` (step 3's
per-worker loop and its context), `trainer` (`make_trainer`, `train`, `finish`), `tracking` (the MLflow experiment,
run header and logged model), `reproduce` (retraining a version from its recorded config).
"""

from raylane.training.data import Prepared, check_resources, holdout_frame, prepare, split
from raylane.training.loop import TrainContext, epoch_loop, train_loop
from raylane.training.reproduce import REPRODUCE_TOLERANCE, Reproduction, recorded_config, reproduce
from raylane.training.tracking import ensure_experiment, flat_params, log_model, log_run_header
from raylane.training.trainer import TrainResult, finish, make_trainer, train

__all__ = [
    "REPRODUCE_TOLERANCE",
    "Prepared",
    "Reproduction",
    "TrainContext",
    "TrainResult",
    "check_resources",
    "ensure_experiment",
    "epoch_loop",
    "finish",
    "flat_params",
    "holdout_frame",
    "log_model",
    "log_run_header",
    "make_trainer",
    "prepare",
    "recorded_config",
    "reproduce",
    "split",
    "train",
    "train_loop",
]
