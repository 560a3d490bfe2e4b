"""Helpers for the tests that run the pipeline: a workspace, the small demo settings, commands."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from drn.pipeline.dvc_stages import dvc_yaml
from drn.pipeline.params import validate_params
from drn.pipeline.plan import build_plan

BIN = Path(sys.executable).parent
TINY = {"channels": 8, "block_channels": 8, "distill": 4, "blocks": 1, "groups": 1}


def environment(extra=None):
    env = {
        **os.environ, **(extra or {}), "MLFLOW_DISABLE_TELEMETRY": "true",
        "PATH": f"{BIN}{os.pathsep}{(extra or os.environ)['PATH']}",
    }  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)  # set by mlflow.set_tracking_uri in other tests
    return env


RUN_TIMEOUT_S = 900  # the longest pipeline a test runs takes minutes: past this, it hangs


def run(cwd, *command, env=None, check=True, timeout=RUN_TIMEOUT_S):
    """Run `command` in `cwd`; its output. A command still running after `timeout` fails the
    test with what it printed (a Slurm job pending forever, say), never hangs the suite."""
    try:
        done = subprocess.run([str(c) for c in command], cwd=cwd, env=environment(env),
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired as error:
        said = [x.decode(errors="replace") if isinstance(x, bytes) else x or ""
                for x in (error.stdout, error.stderr)]  # fmt: skip
        pytest.fail(f"{command[0]} still running after {timeout} s: "
                    + said[0][-3000:] + said[1][-3000:])  # fmt: skip
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def project(tmp_path, params, dvc=True):
    """A workspace with the workflow, environment.yml, the given params.yaml and the dvc.yaml
    generated from it (`dvc`; a test of settings that fail validation asks for none)."""
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    shutil.copy(REPO / "environment.yml", tmp_path / "environment.yml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if dvc:
        validate_params(params)
        (tmp_path / "dvc.yaml").write_text(dvc_yaml(params, build_plan(params)))
    return tmp_path


def small_demo(tracking=False):
    """demo/params.yaml at two scales with tiny models and a few iterations: every stage, fast."""
    params = yaml.safe_load((REPO / "demo/params.yaml").read_text())
    params["sources"]["photos"] = {"skimage": ["astronaut.png", "camera.png"]}
    params["sources"]["Set5"] = {"local": str(REPO / "tests/data/Set5")}
    params["downscaled"] = {
        f"train_photos_x{s}": {"of": "train_photos", "scale": s} for s in (2, 3)
    }
    params["evaluation"]["scales"] = [2, 3]
    params["models"] = {name: dict(TINY) for name in ("drn", "drn_plus")}
    params["models"]["drn_no_rd"] = {**TINY, "distill": 0}  # as drn_no_rd is drn without it
    params["models"]["edsr_baseline"] = {"channels": 8, "blocks": 1}  # the control, as tiny
    # the ablations: half as long as the main runs, so that drn's and drn_plus's arms are
    # milestones (step 3) of the main runs drn_x2, drn_x2_s1 and drn_plus_x2
    params["ablations"]["distillation"]["epochs"] = params["ablations"]["loss"]["epochs"] = 0.003
    train = params["train"]
    train.update(batch=4, patch=16, log_every=3, checkpoint_every=3, workers=0)
    train["epochs"] = {"drn": 0.006, "drn_plus": 0.006, "drn_no_rd": 0.006, "edsr_baseline": 0.006}
    train["validation"].update(images=1, every=3)
    train["init_from"] = {"x2": None, "x3": None}
    params["tracking"]["enabled"] = tracking
    params["report"]["visuals"] = [
        {"dataset": "photos", "image": "astronaut", "scale": 2},
        {"dataset": "photos", "image": "camera", "scale": 3},
        {"dataset": "Urban100", "image": "img_074", "scale": 4},  # not in the demo: "not run"
    ]
    return params


def one_seed_photos_only(params):
    """``params`` without the second seed, the control and Set5: the small demo's DAG of the
    tests that exercise a tool (DVC, Slurm) rather than what the pipeline computes."""
    params["train"]["seeds"] = [0]
    params["controls"] = []
    params["evaluation"]["datasets"] = ["photos"]
    del params["sources"]["Set5"]
    return params


WAIT_S = 600  # the bound on a wait for a server; generous for a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(store: str, artifacts: Path, log: Path) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 over the backend ``store``; yields its URL (the wait for it
    asks the local server's /health, nothing else)."""
    port = free_port()
    with open(log, "w") as server_log:
        server = subprocess.Popen(
            [BIN / "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "2", "--backend-store-uri", store,
             "--artifacts-destination", str(artifacts)],
            env=environment(), stdout=server_log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with its workers below
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(WAIT_S):
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail(f"mlflow server did not answer on {url}: {log.read_text()[-3000:]}")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
