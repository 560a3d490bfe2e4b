"""MLflow: the record of every training run, its evaluations, and fetching weights back from it.

Everything that talks to MLflow lives here. The tracking URI comes from params.yaml
(``tracking.uri``; default a local sqlite file), or from ``MLFLOW_TRACKING_URI`` when that is set,
so every job of a cluster run can point at one server.

Training (:class:`Tracker`): a run named as its run directory logs its resolved settings as
params, metrics by step, tags (variant, scale, loss, git commit, data version, the plan's roles),
its training and validation data as dataset inputs (digests: the data version of
:mod:`drn.engine.dataset`, and :func:`images_digest` of the validation images), its final checkpoint
and
a few SR samples as artifacts, and the model through ``mlflow.pytorch`` with a signature. Its
model.pt records the run ID and the store (:meth:`Tracker.record`; a relative sqlite path made
absolute), see :mod:`drn.engine.checkpoint`.

Imported weights (:func:`track_import`, ``drn import --track``): a run of their own, named
``{variant}-released_x{scale}`` by the command and tagged with the file (``origin_*``), which their
checkpoint records like a trained model.pt, so that their evaluations log there too.

Evaluation (:func:`evaluated_run`, :func:`log_evaluation`): ``drn evaluate`` adds its scores to
the run that trained the checkpoint, as ``{dataset}_x{scale}_psnr`` and ``..._ssim`` (``_ensemble``
appended for self-ensemble, ``_shave{N}`` before it for a non-standard shave, ``_psnr_rgb`` with
``--rgb``), so MLflow's compare page puts the Table 3 numbers of several runs side by side. The
store is ``MLFLOW_TRACKING_URI`` if set, else the one the checkpoint records (for a ``runs:/``
URI: the run it names, in the store it was fetched from). A checkpoint without a record logs
nothing. Logging to a finished run from several processes at once is safe: a sqlite store is
written under the lock beside it (:func:`_store_lock`), a server serialises writes itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from drn.core.errors import DataError, UsageError

if TYPE_CHECKING:
    from drn.protocol.scoring import SetScore

CHECKPOINT_ARTIFACT = "checkpoint"  # artifact folder of the final checkpoint

# MLflow's artifact upload and download progress bars (tqdm) fill batch job logs with
# "Downloading artifacts: 100%|..." lines: off where stderr is not a terminal (unless set).
if not (sys.stderr and sys.stderr.isatty()):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


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


def recorded_uri(uri: str) -> str:
    """``uri`` as a checkpoint records it: a relative sqlite path made absolute (relative to the
    directory training ran in), so evaluating from anywhere finds the same file."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def _reason(error: BaseException) -> str:
    """A store's failure in a few words: the OS error (e.g. Connection refused) if there is one."""
    text = " ".join(str(error).split())
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    return errno.group(0) if errno else (text[:200] or type(error).__name__)


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
    """One training run in MLflow; resuming a run reopens the same MLflow run. Without a
    ``run_id``, ``reopen`` (tags) reopens an earlier run of ``run_name`` with those tags, if
    there is one, instead of creating another (an import of the same file again)."""

    def __init__(self, uri: str, experiment: str, run_name: str, run_id: str | None = None,
                 reopen: dict[str, str] | None = None) -> None:  # fmt: skip
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
                raise DataError(
                    f"MLflow tracking store {self.uri} cannot be reached ({_reason(error)}); "
                    "start it, set tracking.uri (or MLFLOW_TRACKING_URI) to another store, or "
                    "train with --no-track"
                ) from None
            if run_id is None and reopen:
                run_id = self._earlier(self._experiment_id(experiment), run_name, reopen)
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

    def _earlier(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> str | None:
        """The ID of the newest run of ``run_name`` with ``tags``, None: none."""
        conditions = [f"tags.`mlflow.runName` = '{run_name}'"]
        conditions += [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
        newest = ["attributes.start_time DESC"]
        found = self.client.search_runs([experiment_id], " and ".join(conditions),
                                        max_results=1, order_by=newest)  # fmt: skip
        return found[0].info.run_id if found else None

    def record(self) -> dict[str, str]:
        """What a checkpoint records of this run: its ID and its store."""
        return {"run_id": self.run_id, "tracking_uri": recorded_uri(self.uri)}

    def log_dataset(
        self, name: str, digest: str, source: str | os.PathLike, context: str,
        profile: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """A dataset input of the run: ``name`` and ``digest`` identify it, ``source`` is the
        folder it was read from (a local dataset source, as ``mlflow.data`` records one),
        ``context`` says what for ("training", "validation"). Logged again on a resumed run,
        MLflow keeps one input."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        dataset = Dataset(
            name=name, digest=digest, source_type="local",
            source=json.dumps({"uri": str(Path(source).resolve())}),
            profile=json.dumps(profile) if profile else None,
        )  # fmt: skip
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, context)]
        for attempt in range(3):
            try:
                with _store_lock(self.uri):
                    self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset, tags)])
                return
            except Exception as error:
                # Runs that start at once on the same data race to insert one new dataset row
                # (unique per experiment, name and digest); the loser's insert fails, but the row
                # exists now and a second try only links it (six trainings on one server did).
                if "UNIQUE constraint failed" not in str(error) or attempt == 2:
                    raise
                time.sleep(0.5 * (attempt + 1))

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


def track_import(uri: str, experiment: str, name: str, tags: dict[str, Any]) -> dict[str, str]:
    """The MLflow run of weights trained elsewhere (``drn import --track``): named ``name``,
    tagged with ``tags`` (their file's ``origin_sha256`` among them), reopened by a second import
    of the same file, finished at once. ``drn evaluate`` of the checkpoint then logs its scores to
    it, beside the runs trained here. Returns what the checkpoint records of it."""
    tracker = Tracker(uri, experiment, name, reopen={"origin_sha256": str(tags["origin_sha256"])})
    tracker.set_tags(tags)
    tracker.finish("FINISHED")
    return tracker.record()


def images_digest(images: list[tuple[str, np.ndarray]]) -> str:
    """16 hex digits of sha256 over (name, shape, pixels) of named images, in the given order:
    the version of a small image set such as training's validation images, already in memory."""
    digest = hashlib.sha256()
    for name, image in images:
        digest.update(f"{name}|{image.dtype}|{image.shape}|".encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- evaluations


@dataclass(frozen=True)
class EvaluatedRun:
    """The MLflow run an evaluated checkpoint came from: ``run_id`` and its store ``uri``, or
    ``run_id`` None and ``why`` (the line saying why nothing is logged)."""

    run_id: str | None
    uri: str | None = None
    why: str = ""


def evaluated_run(model: str) -> EvaluatedRun:
    """The run that trained ``model`` (``drn evaluate --model``: a checkpoint file or an MLflow
    URI). ``runs:/ID/...`` names run ID, in the store it is fetched from; a file (or a fetched
    checkpoint) names its run in its ``mlflow`` record (:mod:`drn.engine.checkpoint`), and its
    store:
    used unless ``MLFLOW_TRACKING_URI`` is set."""
    from drn.engine.checkpoint import mlflow_record

    if model.startswith("runs:/") and not Path(model).is_file():
        import mlflow

        run_id = model.removeprefix("runs:/").lstrip("/").split("/")[0]
        return EvaluatedRun(run_id, tracking_uri(mlflow.get_tracking_uri()))
    record = mlflow_record(resolve_weights(model, option="--model"))
    if record is None:
        return EvaluatedRun(
            None, why=f"{model} names no MLflow run (only the model.pt of a run trained with "
            "tracking on names one; older checkpoints, last.pt and best.pt do not)",
        )  # fmt: skip
    return EvaluatedRun(record["run_id"], tracking_uri(record["tracking_uri"]))


def evaluation_metrics(score: SetScore) -> dict[str, float]:
    """MLflow metric names and values of an evaluation: ``{dataset}_x{scale}_psnr`` and
    ``_ssim`` (``_psnr_rgb`` when scored), ``_shave{N}`` appended for a shave other than the
    scale, then ``_ensemble`` for self-ensemble. An infinite PSNR (identical images) is left out."""
    dataset = re.sub(r"[^\w\-. /]", "_", score.dataset or "images")
    suffix = f"_shave{score.shave}" if score.shave != score.scale else ""
    suffix += "_ensemble" if score.self_ensemble else ""
    values = {"psnr": score.psnr, "ssim": score.ssim, "psnr_rgb": score.psnr_rgb}
    return {
        f"{dataset}_x{score.scale}_{name}{suffix}": float(value)
        for name, value in values.items()
        if value is not None and math.isfinite(value)
    }


def log_evaluation(
    run: EvaluatedRun, score: SetScore, prefix: str = "", tags: dict[str, str] | None = None
) -> str:
    """Add an evaluation's metrics (named with ``prefix`` first, e.g. ``milestone_100000_`` for
    a milestone's, never the final names) and ``tags`` to its training run; returns the line to
    print. A missing store or run, or a store that cannot be reached, is a DataError naming it."""
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    assert run.run_id is not None and run.uri is not None
    uri = run.uri
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        if not database.is_file():
            raise DataError(f"MLflow store {uri} does not exist (no file {database.resolve()})")
    metrics = {f"{prefix}{name}": value for name, value in evaluation_metrics(score).items()}
    now = int(time.time() * 1000)
    try:
        with _store_lock(uri):  # evaluations of one run log at once: one writer at a time
            client = MlflowClient(uri)
            found = client.get_run(run.run_id)
            client.log_batch(
                run.run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                tags=[RunTag(k, v) for k, v in (tags or {}).items()],
            )  # fmt: skip
    except Exception as error:
        code = getattr(error, "error_code", "")
        reason = (
            f"it has no run {run.run_id}" if code == "RESOURCE_DOES_NOT_EXIST" else _reason(error)
        )
        raise DataError(f"MLflow store {uri}: {reason}") from None
    name = found.info.run_name or run.run_id
    logged = ", ".join([*metrics, *(f"tag {tag}" for tag in tags or {})])
    return f"MLflow: {logged} logged to run {name} ({run.run_id}) in {uri}"


# ---------------------------------------------------------------- weights

_fetched: dict[tuple[str, str], Path] = {}  # MLflow URI -> its download, once per process


def resolve_weights(weights: str, uri: str | None = None, option: str = "--weights") -> Path:
    """A local checkpoint path for ``weights``: a file, or an MLflow URI (runs:/, models:/, ...),
    fetched once per process."""
    if Path(weights).is_file():
        return Path(weights)
    if ":/" not in weights:
        raise UsageError(
            f"{option} {weights}: no such checkpoint file (nor an MLflow URI such as runs:/...)"
        )
    import mlflow

    if (weights, tracking_uri(uri or "")) in _fetched:
        return _fetched[weights, tracking_uri(uri or "")]
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=weights, tracking_uri=tracking_uri(uri or "")
            )
        )
    except Exception as error:
        raise DataError(f"{option} {weights}: could not fetch it from MLflow ({error})") from None
    if not local.is_file():
        found = sorted(local.rglob("*.pt"))
        if len(found) != 1:
            raise DataError(
                f"{option} {weights}: expected one .pt checkpoint there, found {len(found)}"
            )
        local = found[0]
    _fetched[weights, tracking_uri(uri or "")] = local
    return local
