"""Shared fixtures: the reference data beside the checkout (../shared/data) and the repo root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DRN_SHARED_DATA", REPO.parent / "shared" / "data"))
REFS = SHARED / "refs"
SET5_NAMES = ("baby", "bird", "butterfly", "head", "woman")

if not SHARED.is_dir():  # CI always has it; a silent skip would hide every reference check
    raise RuntimeError(f"reference data not found at {SHARED} (set DRN_SHARED_DATA)")

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def shared() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def refs() -> Path:
    return REFS


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory):
    """The small demo pipeline run once with Snakemake (MLflow on), shared by the tests that
    read its results; tests must leave it as they found it."""
    from pipeline import BIN, project, run, small_demo

    workspace = project(tmp_path_factory.mktemp("demo"), small_demo(tracking=True))
    run(workspace, BIN / "snakemake", "--cores", "2")
    return workspace
