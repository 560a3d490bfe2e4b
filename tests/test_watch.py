"""Watching and relaunching a plan for real: `drn status` on a training held with SIGSTOP and
after it ends, and the small demo killed mid-training (its process group, kill -9), then run again
as `make demo` does (`drn unlock`, then Snakemake): it finishes, the run resumed at its step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pipeline import BIN, environment, one_seed_photos_only, project, run, small_demo

slow = pytest.mark.slow
WAIT_S = 300


def longer_demo(epochs: float = 0.09) -> dict:
    """The small demo at x2 on the photos, one seed, with drn trained `epochs` (long enough to
    catch it mid-run) and its loss ablation a milestone of it at a third of that."""
    params = one_seed_photos_only(small_demo())
    params["evaluation"].update(scales=[2], models=["drn"], ensemble_models=[])
    params["downscaled"] = {"train_photos_x2": {"of": "train_photos", "scale": 2}}
    params["train"]["init_from"] = {"x2": None}
    params["train"]["epochs"]["drn"] = epochs
    params["ablations"] = {"loss": {**params["ablations"]["loss"], "epochs": epochs / 3}}
    return params


def progress(workspace: Path, name: str) -> dict:
    try:
        return json.loads((workspace / f"runs/{name}/progress.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def status(workspace: Path) -> dict:
    return json.loads(run(workspace, BIN / "drn", "status", "--json"))


def by_run(found: dict) -> dict:
    return {r["run"]: r for r in found["runs"]}


@slow
def test_drn_status_on_a_training_held_with_sigstop_then_finished(tmp_path):
    workspace = project(tmp_path, longer_demo())
    before = status(workspace)  # before anything ran: every run not started, the projection
    assert {r["state"] for r in before["runs"]} == {"not started"}
    assert before["total"]["evaluations_done"] == 0 < before["total"]["evaluations"]
    run(workspace, BIN / "snakemake", "--cores", "1", "data/cache/train/x2", "data/photos")
    trainer = subprocess.Popen([BIN / "drn", "train", "--run", "drn_x2"], cwd=workspace,
                               env=environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: progress(workspace, "drn_x2").get("step", 0) >= 9
                 or trainer.poll() is not None, "training")  # fmt: skip
        assert trainer.poll() is None, "drn train ended before it could be held"
        trainer.send_signal(signal.SIGSTOP)
        held = by_run(status(workspace))["drn_x2"]
        assert held["state"] == "running" and held["pid"] == trainer.pid
        assert 9 <= held["step"] < held["iterations"] == 90 and held["it_per_s"] > 0
        assert held["eta_s"] >= 0 and held["latest_val_psnr"] is not None
        assert by_run(status(workspace))["drn_x2_e0.03_l2"]["state"] == "not started"
        trainer.send_signal(signal.SIGCONT)
        assert trainer.wait(timeout=WAIT_S) == 0
    finally:
        trainer.kill()
    done = by_run(status(workspace))["drn_x2"]
    assert done["state"] == "finished" and done["step"] == 90
    assert [m["kept"] for m in done["milestones"]] == [True]  # step 30 kept for the ablation


@slow
def test_the_demo_killed_mid_training_then_run_again_as_make_demo_does_resumes(tmp_path):
    workspace = project(tmp_path, longer_demo(0.3))
    snakemake = subprocess.Popen(
        [BIN / "snakemake", "--cores", "1"], cwd=workspace, env=environment(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: progress(workspace, "drn_x2").get("checkpoint_step", 0) >= 9
                 or snakemake.poll() is not None, "a checkpoint of drn_x2")  # fmt: skip
        assert snakemake.poll() is None, "the demo finished before it could be killed"
        os.killpg(snakemake.pid, signal.SIGKILL)  # Snakemake and its job's supervisor
    finally:
        snakemake.wait(timeout=WAIT_S)
    # the trainer, in a process group of its own, is told by its supervisor's death (SIGTERM)
    wait_for(lambda: progress(workspace, "drn_x2").get("state") == "stopped", "the checkpoint")
    stopped = progress(workspace, "drn_x2")["checkpoint_step"]
    assert 9 <= stopped < 300
    found = status(workspace)
    assert by_run(found)["drn_x2"]["state"] == "stopped, will resume"
    assert "drn unlock" in (found["lock"] or ""), found["lock"]  # Snakemake's lock, left behind

    out = run(workspace, BIN / "drn", "unlock", ".")  # as `make demo` does, then Snakemake
    assert "removed" in out
    assert "100%) done" in run(workspace, BIN / "snakemake", "--cores", "1")
    log = (workspace / "runs/drn_x2/train.log").read_text()
    assert f"resumed from step {stopped} (of 300)" in log
    assert (workspace / "runs/drn_x2/model.pt").is_file()
    assert {r["state"] for r in status(workspace)["runs"]} == {"finished"}
