"""MLflow: the record of every training run, and fetching weights back from it.

Everything that talks to MLflow lives here. A training run logs its resolved settings as params,
metrics by step, tags (variant, scale, loss, git commit, data version), its final checkpoint and a
few SR samples as artifacts, and the model through ``mlflow.pytorch`` with a signature. The
tracking URI comes from params.yaml (``tracking.uri``; default a local sqlite file), or from
``MLFLOW_TRACKING_URI`` when that is set, so every job of a cluster run can point at one server.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from drn.errors import DataError, UsageError

CHECKPOINT_ARTIFACT = "checkpoint"  # artifact folder of the final checkpoint


def tracking_uri(configured: str) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or configured


def flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as MLflow params: ``{"train.optimizer.lr": "0.0001", ...}``."""
    flat: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def git_commit(folder: str | os.PathLike = ".") -> str:
    """The checkout's commit, with ``-dirty`` when it has uncommitted changes; else 'unknown'."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def _artifacts_beside(uri: str) -> str | None:
    """Artifacts of a local sqlite store go to mlartifacts/ beside the database file (instead of
    ./mlruns wherever a job happens to start); a server decides for itself."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock beside a local sqlite store (a no-op for servers)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        yield


class Tracker:
    """One training run in MLflow; resuming a run reopens the same MLflow run."""

    def __init__(self, uri: str, experiment: str, run_name: str, run_id: str | None = None):
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self._mlflow = mlflow
        self.uri = tracking_uri(uri)
        with _store_lock(self.uri):  # parallel jobs must not both create (migrate) a sqlite store
            mlflow.set_tracking_uri(self.uri)
            self.client = MlflowClient(self.uri)
            try:
                self.client.search_experiments(max_results=1)  # opens (and creates) the store
            except MlflowException as error:  # a server that is down, after MLflow's retries
                text = " ".join(str(error).split())
                errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)  # e.g. Connection refused
                reason = errno.group(0) if errno else text[:200]
                raise DataError(
                    f"MLflow tracking store {self.uri} cannot be reached ({reason}); start it, "
                    "set tracking.uri (or MLFLOW_TRACKING_URI) to another store, or train "
                    "with --no-track"
                ) from None
            if run_id is None:
                experiment_id = self._experiment_id(experiment)
                run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
            else:
                self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def _experiment_id(self, name: str) -> str:
        """The experiment's ID, creating it if needed. Jobs that start together against one
        server can both find it missing; the one that loses the race to create it reads it."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(
                name, artifact_location=_artifacts_beside(self.uri)
            )
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        return self.client.get_experiment_by_name(name).experiment_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        new = [Param(k, v[:6000]) for k, v in flatten(params).items() if k not in existing]
        for start in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[start : start + 100])

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: str | os.PathLike, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_model(self, model: nn.Module, checkpoint: str | os.PathLike) -> None:
        """The model through mlflow.pytorch (torch.export's pt2 format, dynamic batch and image
        size), with a signature and our checkpoint beside it as an extra file."""
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        from drn import __version__

        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))]),
        )
        torch_version = torch.__version__.split("+")[0]
        example = np.random.default_rng(0).random((2, 3, 24, 24), dtype=np.float32)
        with self._mlflow.start_run(run_id=self.run_id):
            self._mlflow.pytorch.log_model(  # pt2: torch.export with dynamic sizes, no pickle
                model.to("cpu").eval(),
                name="model",
                signature=signature,
                input_example=example,
                serialization_format="pt2",
                pip_requirements=[f"torch=={torch_version}", f"drn-repro=={__version__}"],
                extra_files=[str(checkpoint)],
            )  # fmt: skip

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


def resolve_weights(weights: str, uri: str | None = None, option: str = "--weights") -> Path:
    """A local checkpoint path for ``weights``: a file, or an MLflow URI (runs:/, models:/, ...)."""
    if Path(weights).is_file():
        return Path(weights)
    if ":/" not in weights:
        raise UsageError(
            f"{option} {weights}: no such checkpoint file (nor an MLflow URI such as runs:/...)"
        )
    import mlflow

    try:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=weights, tracking_uri=tracking_uri(uri or "")
            )
        )
    except Exception as error:
        raise DataError(f"{option} {weights}: could not fetch it from MLflow ({error})") from None
    if local.is_file():
        return local
    found = sorted(local.rglob("*.pt"))
    if len(found) != 1:
        raise DataError(
            f"--weights {weights}: expected one .pt checkpoint there, found {len(found)}"
        )
    return found[0]
