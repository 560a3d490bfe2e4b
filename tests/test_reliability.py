"""Faults, injected for real: what a user can rely on when things go wrong (docs/RELIABILITY.md).

* Six trainings at once log to one MLflow store, a sqlite file or a server: no "database is
  locked", every run FINISHED, every metric of every step recorded.
* ``kill -9`` of ``drn train`` inside a checkpoint write, of ``drn evaluate`` mid-set and of
  ``drn fetch`` mid-download: the next run completes the work, and no file gets its final name
  before it is complete.
* A full disk while a checkpoint is written: one line ``drn: error: ...`` naming the file, and
  the previous checkpoint intact.

Faults hit windows found by watching the process, not by timing: a process is frozen (SIGSTOP)
the moment its temporary file is seen, then killed only if it is still inside the window.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, SET5
from pipeline import free_port, serving

from drn.core.images import read_image
from drn.engine.checkpoint import load_checkpoint, save_checkpoint
from drn.engine.inference import evaluate_model
from drn.models import build_model

pytestmark = pytest.mark.slow  # a dozen trainings, a server, real kills

BIN = Path(sys.executable).parent
TINY = {"channels": 8, "block_channels": 8, "distill": 2, "blocks": 1, "groups": 1}
# A model whose checkpoint (weights and Adam's moments, ~7 MB) takes a while to write, but whose
# iterations on 8x8 patches are cheap: most of a run's time is spent writing checkpoints.
HEAVY = {"channels": 96, "block_channels": 96, "distill": 24, "blocks": 2, "groups": 1}
STEP_METRICS = ("loss", "lr", "it_per_s", "data_wait_fraction")
WAIT_S = 600  # the bound on every wait for a process; generous for a loaded 2-core machine


# ---------------------------------------------------------------- helpers


def environment(**extra):
    env = {
        **os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1", **extra,
    }  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)  # the params file says where to log
    return env


def drn(args, log: Path, **extra_env) -> subprocess.Popen:
    """``drn ARGS`` in the background, stdout and stderr into ``log`` (and ``log``.err)."""
    with open(log, "w") as out, open(log.with_suffix(".err"), "w") as err:
        return subprocess.Popen(
            [BIN / "drn", *map(str, args)], env=environment(**extra_env), stdout=out, stderr=err
        )


def finish(process: subprocess.Popen) -> int:
    try:
        return process.wait(timeout=WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def output(log: Path) -> str:
    return log.read_text() + log.with_suffix(".err").read_text()


def training_params(data, folder, iterations, model=TINY, tracking=None, **train):
    """A params.yaml (written into ``folder``) for a small run on t91, without validation."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["paths"].update(data=str(data), runs=str(folder / "runs"))
    params["sources"].update(t91={"local": None}, Set5={"local": None})
    params["train"]["data"].update(hr="t91", lr_prefix=None, cache=str(folder / "cache"))
    params["train"]["validation"].update(source=None, images=0)
    params["train"].update(
        iterations_per_epoch=1, epochs={"drn": iterations}, batch=2, patch=8, log_every=1000,
        checkpoint_every=1000, workers=0, seeds=[3], compile="off",
    )  # fmt: skip
    params["train"].update(train)
    params["models"]["drn"] = dict(model)
    params["controls"] = []
    params["tracking"].update(enabled=tracking is not None, uri=tracking or "sqlite:///unused.db")
    params["evaluation"].update(models=["drn"], ensemble_models=[])
    params["ablations"]["distillation"]["models"] = ["drn"]
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def train_args(params, run_dir):
    return ["train", "--model", "drn", "--scale", "2", "--params", params, "--run-dir", run_dir,
            "--device", "cpu"]  # fmt: skip


def temporaries(folder: Path, stem: str) -> list[Path]:
    """The temporary files of an atomic write of ``{stem}.*`` in ``folder``."""
    return sorted(folder.glob(f".{stem}.*")) if folder.is_dir() else []


def freeze(process: subprocess.Popen) -> None:
    """SIGSTOP, returning once the kernel reports the process stopped (or gone)."""
    process.send_signal(signal.SIGSTOP)
    status = Path(f"/proc/{process.pid}/stat")
    while status.read_text().rsplit(")", 1)[1].split()[0] not in ("T", "t", "Z", "X"):
        time.sleep(0.001)


def thaw(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGCONT)


def kill_while(process: subprocess.Popen, inside) -> None:
    """SIGKILL ``process`` at a moment where ``inside()`` holds: poll, freeze it when it seems
    to, check again while it cannot move, and kill it, or let it go on and look again."""
    while process.poll() is None:
        if inside():
            freeze(process)
            if inside():
                process.kill()
                process.wait()
                return
            thaw(process)
        time.sleep(0.002)
    pytest.fail(f"the process ended (exit {process.returncode}) before the fault was injected")


# ---------------------------------------------------------------- concurrent MLflow logging


def train_six_at_once(data, tmp_path, uri, iterations=30):
    """Six tiny trainings started together, each logging its 4 metrics at every step."""
    params = training_params(data, tmp_path, iterations, tracking=uri, log_every=1)
    processes = {
        f"run{k}": drn(train_args(params, tmp_path / f"run{k}"), tmp_path / f"run{k}.log")
        for k in range(6)
    }
    for name, process in processes.items():
        log = tmp_path / f"{name}.log"
        assert finish(process) == 0, output(log)[-3000:]
        assert "database is locked" not in output(log)
    return sorted(processes), iterations


def assert_every_step_recorded(uri, tmp_path, names, iterations):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("drn-repro")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == names
    for name, run in runs.items():
        assert run.info.status == "FINISHED", name
        for metric in STEP_METRICS:
            history = client.get_metric_history(run.info.run_id, metric)
            logged = sorted((m.step, m.value) for m in history)
            assert [step for step, _ in logged] == list(range(1, iterations + 1)), (name, metric)
            if metric == "loss":  # and the values: those of the run's own curve
                curve = np.loadtxt(tmp_path / name / "train_curve.csv", delimiter=",", skiprows=1)
                np.testing.assert_allclose([v for _, v in logged], curve[:, 1], rtol=1e-8)


def test_six_trainings_at_once_log_every_step_to_one_sqlite_file(data, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"  # a store none of them has created yet
    names, iterations = train_six_at_once(data, tmp_path, uri)
    assert_every_step_recorded(uri, tmp_path, names, iterations)


@pytest.fixture
def mlflow_server(tmp_path):
    """``mlflow server`` on 127.0.0.1 with a sqlite backend, as README's cluster setup."""
    with serving(f"sqlite:///{tmp_path}/server.db", tmp_path / "mlartifacts",
                 tmp_path / "server.log") as url:  # fmt: skip
        yield url


def test_six_trainings_at_once_log_every_step_to_one_server(data, tmp_path, mlflow_server):
    names, iterations = train_six_at_once(data, tmp_path, mlflow_server)
    assert_every_step_recorded(mlflow_server, tmp_path, names, iterations)


def test_an_unreachable_tracking_server_is_one_line_naming_it(data, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    params = training_params(data, tmp_path, 5, tracking=uri)
    log = tmp_path / "train.log"
    process = drn(train_args(params, tmp_path / "run"), log, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    assert finish(process) == 1
    err = log.with_suffix(".err").read_text()
    assert err.count("\n") == 1 and err.startswith(f"drn: error: MLflow tracking store {uri}")
    assert "--no-track" in err


# ---------------------------------------------------------------- kill -9


def test_kill_9_inside_checkpoint_writes_resumes_to_the_uninterrupted_weights(data, tmp_path):
    params = training_params(
        data, tmp_path, 24, model=HEAVY, checkpoint_every=1, deterministic=True
    )
    straight = drn(train_args(params, tmp_path / "straight"), tmp_path / "straight.log")
    assert finish(straight) == 0, output(tmp_path / "straight.log")

    run_dir = tmp_path / "killed"
    checkpoints = run_dir / "checkpoints"
    for attempt in range(2):  # killed twice inside a write of last.pt, each time resumed
        stale = set(temporaries(checkpoints, "last"))  # the previous attempt's leftover

        def writing(stale=stale):  # a new write of last.pt, with a previous one to resume from
            started = set(temporaries(checkpoints, "last")) - stale
            return bool(started) and (checkpoints / "last.pt").is_file()

        process = drn(train_args(params, run_dir), tmp_path / f"attempt{attempt}.log")
        kill_while(process, writing)
        assert process.returncode == -signal.SIGKILL
        assert temporaries(checkpoints, "last"), "killed inside the write: its temporary is left"
        saved = load_checkpoint(checkpoints / "last.pt")["training"]  # the previous one, whole
        assert 1 <= saved["step"] < 24 and not (run_dir / "model.pt").exists()

    log = tmp_path / "resumed.log"
    assert finish(drn(train_args(params, run_dir), log)) == 0, output(log)
    assert temporaries(checkpoints, "last") == []  # the dead writers' leftovers are gone
    a = load_checkpoint(tmp_path / "straight/model.pt")["state_dict"]
    b = load_checkpoint(run_dir / "model.pt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_kill_9_mid_evaluation_leaves_no_json_and_the_rerun_writes_it_whole(tmp_path):
    model = build_model("drn", 2, **TINY)
    save_checkpoint(tmp_path / "model.pt", model)
    out, saved = tmp_path / "results/Set5.json", tmp_path / "sr"
    args = ["evaluate", "--model", tmp_path / "model.pt", "--hr", SET5, "--scale", "2",
            "--device", "cpu", "--self-ensemble", "--json", out, "--save-sr", saved]  # fmt: skip

    def finished_images():
        return [p for p in saved.glob("*.png") if not p.name.startswith(".")]

    process = drn(args, tmp_path / "killed.log")
    kill_while(process, lambda: 1 <= len(finished_images()) < 5)
    assert not out.exists() and not temporaries(out.parent, "Set5")  # no JSON, not even part
    for image in finished_images():  # every SR image with its final name is whole
        read_image(image)

    log = tmp_path / "rerun.log"
    assert finish(drn(args, log)) == 0, output(log)
    result = json.loads(out.read_text())
    expected = evaluate_model(model.eval(), SET5, 2, self_ensemble=True)
    assert [i["name"] for i in result["images"]] == [i.name for i in expected.images]
    assert result["psnr"] == pytest.approx(expected.psnr, abs=1e-3)  # threads: last bits
    # the saved SR images score as the JSON says (a killed write's temporary is not an image)
    log = tmp_path / "score.log"
    assert finish(drn(["score", "--sr", saved, "--hr", SET5, "--scale", 2], log)) == 0
    assert f"{result['psnr']:.2f}" in output(log)


class StallingServer:
    """Serves one archive on 127.0.0.1 with HTTP Range support; the first response stops
    half way and hangs (a stalled connection) until ``release`` is set."""

    def __init__(self, body: bytes):
        self.body, self.ranges = body, []
        self.release, self.stalled = threading.Event(), threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                start = 0
                server.ranges.append(self.headers.get("Range"))
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    total = len(server.body)
                    self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(server.body) - start))
                self.end_headers()
                payload = server.body[start:]
                if not server.stalled.is_set():
                    server.stalled.set()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    server.release.wait(WAIT_S)
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/benchmark.tar"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def benchmark_archive() -> bytes:
    """Set5 laid out as in the EDSR benchmark archive, plus 3 MB of other data: big enough that
    the client has written some of it to disk when the server stalls half way."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as bundle:
        for image in sorted(SET5.glob("*.png")):
            bundle.add(image, f"benchmark/Set5/HR/{image.name}")
        padding = np.random.default_rng(0).bytes(3 << 20)
        info = tarfile.TarInfo("benchmark/padding.bin")
        info.size = len(padding)
        bundle.addfile(info, io.BytesIO(padding))
    return buffer.getvalue()


def test_kill_9_mid_download_then_fetch_resumes_and_verifies(tmp_path):
    body = benchmark_archive()
    server = StallingServer(body)
    try:
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        data = tmp_path / "data"
        params["paths"].update(data=str(data), sources_lock=str(tmp_path / "sources.lock.json"))
        params["sources"]["Set5"] = {
            "url": server.url, "sha256": hashlib.sha256(body).hexdigest(),
            "member": "benchmark/Set5/HR",
        }  # fmt: skip
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        args = ["fetch", "Set5", "--params", tmp_path / "params.yaml"]
        part = data / "downloads/benchmark.tar.part"

        process = drn(args, tmp_path / "killed.log")
        kill_while(process, lambda: part.is_file() and part.stat().st_size > 0)
        server.release.set()
        assert not (data / "Set5").exists() and not (data / "downloads/benchmark.tar").exists()
        done = part.read_bytes()
        assert 0 < len(done) < len(body) and body.startswith(done)  # a true prefix, no more

        log = tmp_path / "rerun.log"
        assert finish(drn(args, log)) == 0, output(log)
        assert server.ranges[-1] == f"bytes={len(done)}-"  # resumed, not downloaded again
    finally:
        server.close()
    assert (data / "downloads/benchmark.tar").read_bytes() == body
    for image in SET5.glob("*.png"):
        np.testing.assert_array_equal(read_image(data / "Set5" / image.name), read_image(image))
    assert sorted(p.name for p in data.iterdir()) == ["Set5", "downloads"]  # no staging left


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs of its own (we are root in CI), unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)],
        capture_output=True, text=True,
    )  # fmt: skip
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs: {mounted.stderr.strip() or mounted.returncode}"
        print(reason)
        pytest.skip(reason)
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_a_full_disk_while_checkpointing_is_one_line_and_the_last_checkpoint_survives(
    data, tmp_path, small_disk
):
    params = training_params(data, tmp_path, 100_000, model=HEAVY, checkpoint_every=5)
    run_dir = small_disk / "run"
    checkpoints, last = run_dir / "checkpoints", run_dir / "checkpoints/last.pt"
    log = tmp_path / "train.log"
    process = drn([*train_args(params, run_dir), "--no-track"], log)
    try:
        while not last.is_file():  # the first checkpoint, then the disk fills up
            assert process.poll() is None, output(log)
            time.sleep(0.01)
        freeze(process)
        stats = os.statvfs(small_disk)
        free = stats.f_bavail * stats.f_frsize
        with open(small_disk / "filler", "wb") as filler:  # another job takes the rest but half
            filler.truncate(0)
            filler.write(b"\0" * max(free - last.stat().st_size // 2, 0))
        thaw(process)
        assert finish(process) == 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = log.with_suffix(".err").read_text()
    assert err.count("\n") == 1 and err.startswith(f"drn: error: {last}: "), err
    assert "No space left on device" in err and "Traceback" not in output(log)
    saved = load_checkpoint(last)["training"]  # intact, and loadable
    assert saved["step"] % 5 == 0 and saved["step"] > 0
    assert temporaries(checkpoints, "last") == []  # the failed write left nothing behind
