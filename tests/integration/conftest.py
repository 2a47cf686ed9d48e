"""Integration fixtures: the session's Ray, and the example project ingested and applied once."""

from __future__ import annotations

from pathlib import Path

import pytest

from raylane.config import ProjectConfig
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.testing import example_project


@pytest.fixture(scope="session")
def churn(ray_runtime: object, tmp_path_factory: pytest.TempPathFactory) -> ProjectConfig:
    """The tiny churn project: data generated, ingested, applied and materialized (read-only)."""
    cfg = example_project(tmp_path_factory.mktemp("churn"), size="tiny")
    ingest(cfg)
    repo = FeatureRepo(cfg)
    repo.apply()
    repo.materialize()
    return cfg


@pytest.fixture
def fresh_churn(ray_runtime: object, tmp_path: Path) -> ProjectConfig:
    """A private tiny churn project with data generated but nothing ingested (tests may modify it)."""
    return example_project(tmp_path, size="tiny")
