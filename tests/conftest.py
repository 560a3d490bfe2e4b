"""Shared fixtures: the test data shipped in tests/data, the larger benchmark sets where a machine
has them, and the repo root.

A clone of the repository alone runs every core test from ``tests/data``. The benchmark sets
(the whole of Set14, B100, Urban100) are looked up in ``$DRN_BENCHMARK_DATA``, then
``../shared/data`` beside the checkout, then ``data/`` (after ``drn fetch``); a test that needs one
and finds none is skipped with the reason in pytest's summary, or fails where
``DRN_REQUIRE_BENCHMARK_DATA=1`` says the machine must have them (CI's first pass).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
REFS = DATA / "refs"
SET5 = DATA / "Set5"
T91 = DATA / "T91"
SET14_SAMPLES = DATA / "Set14"  # baboon (colour) and bridge (grayscale) only
SET5_NAMES = ("baby", "bird", "butterfly", "head", "woman")

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def benchmark_roots() -> list[Path]:
    """Where the benchmark sets are looked for, in order."""
    roots = [REPO.parent / "shared" / "data", REPO / "data"]
    if os.environ.get("DRN_BENCHMARK_DATA"):
        roots.insert(0, Path(os.environ["DRN_BENCHMARK_DATA"]))
    return roots


def benchmark_set(name: str) -> Path:
    """The folder of a whole benchmark set, or a skip that says where it was looked for."""
    for root in benchmark_roots():
        if (root / name).is_dir() and any((root / name).iterdir()):
            return root / name
    where = ", ".join(str(r) for r in benchmark_roots())
    reason = f"benchmark set {name} not found in {where} (set DRN_BENCHMARK_DATA)"
    if os.environ.get("DRN_REQUIRE_BENCHMARK_DATA") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def pytest_collection_modifyitems(items):
    """A test that needs the demo pipeline's run is slow, like the pipeline itself; a test of a
    module that looks for benchmark sets (imports :func:`benchmark_set`) is marked
    ``benchmark_data``: the only tests a clone without ``../shared`` runs differently."""
    for item in items:
        if "demo_workspace" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
        if getattr(getattr(item, "module", None), "benchmark_set", None) is benchmark_set:
            item.add_marker(pytest.mark.benchmark_data)


@pytest.fixture(autouse=True)
def no_tracking_uri_left_over(monkeypatch):
    """A training in the test process sets MLFLOW_TRACKING_URI (mlflow.set_tracking_uri does),
    which would send the next test's runs to that store: every test starts and ends without it
    (ends: a module's fixture that trains runs before the next test's start)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A data folder for small trainings: sources t91 (12 T91 images) and Set5 (validation)."""
    folder = tmp_path_factory.mktemp("data")
    shutil.copytree(T91, folder / "t91")
    shutil.copytree(SET5, folder / "Set5")
    return folder


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory):
    """The small demo pipeline run once with Snakemake (MLflow on), shared by the tests that
    read its results; tests must leave it as they found it."""
    from pipeline import BIN, project, run, small_demo

    workspace = project(tmp_path_factory.mktemp("demo"), small_demo(tracking=True))
    run(workspace, BIN / "snakemake", "--cores", "2")
    return workspace
