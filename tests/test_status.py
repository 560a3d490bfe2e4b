"""`drn status`: where every trained run of the plan stands, read-only, from the files the jobs
write (progress.json, holder.json, model.pt, the attempts records, squeue, the evaluation JSONs),
before anything ran, mid-run and on a finished plan; a damaged file is one line, never a
traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from pipeline import BIN, environment, project, small_demo

from drn.cli import main
from drn.engine.holder import Holder
from drn.pipeline.job import supervise
from drn.pipeline.params import validate_params
from drn.pipeline.plan import build_plan
from drn.pipeline.status import (
    FAILED,
    FINISHED,
    NOT_STARTED,
    QUEUED,
    RUNNING,
    STOPPED,
    plan_status,
)

NOW = datetime(2026, 12, 2, 13, 0, 0, tzinfo=UTC)


def stamp(seconds_before: float = 0.0) -> str:
    return datetime.fromtimestamp(NOW.timestamp() - seconds_before, UTC).isoformat()


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """The small demo's workspace as the current directory, with a milestone (the ablations'
    runs are the first half of the main runs: served by their checkpoint at step 3), trained on
    one GPU each, and a squeue on PATH that fails (no Slurm here) unless a test says what it
    prints."""
    params = small_demo()
    params["ablations"]["distillation"]["epochs"] = params["ablations"]["loss"]["epochs"] = 0.003
    params["resources"]["train"]["gpu"] = 1
    validate_params(params)
    project(tmp_path, params, dvc=False)
    monkeypatch.chdir(tmp_path)
    squeue(tmp_path, None)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return params


def squeue(workspace: Path, lines: list[str] | None) -> None:
    """A fake squeue: prints ``lines`` (None: fails as squeue does without a cluster)."""
    script = workspace / "bin" / "squeue"
    script.parent.mkdir(exist_ok=True)
    body = "echo 'squeue: fatal: Could not establish a configuration source' >&2; exit 1"
    if lines is not None:
        body = "\n".join(f"echo '{line}'" for line in lines)
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)


def status(params, **options):
    return plan_status(params, build_plan(params), now=NOW.timestamp(), **options)


def row(found, name):
    return next(r for r in found.runs if r.run == name)


def progress(params, run: str, **fields) -> Path:
    """runs/<run>/progress.json as the trainer writes it, with ``fields`` changed."""
    plan = build_plan(params)
    record = {
        "run": run, "step": 2, "iterations": plan.run(run).iterations, "checkpoint_step": 0,
        "it_per_s": 0.5, "train_seconds": 7200.0, "gpus": 1, "device": "1 x NVIDIA H100",
        "latest_val_psnr": 30.1, "latest_val_step": 2, "best_val_psnr": 30.3,
        "state": "running", "until": None, "updated": stamp(), "host": "node7", "pid": 4242,
        "slurm_job": None,
    }  # fmt: skip
    path = Path(plan.run(run).directory) / "progress.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**record, **fields}))
    return path


def holder(params, run: str, pid: int, host: str | None = None) -> None:
    """runs/<run>/holder.json naming ``pid`` on ``host`` (default: this one)."""
    record = Holder(host or socket.gethostname(), pid, None, stamp(60), stamp(), "drn train",
                    "0123456789abcdef")  # fmt: skip
    path = Path(build_plan(params).run(run).directory) / "holder.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(record)))


def dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


# ------------------------------------------------------------------------------ before anything


def test_a_plan_not_started_shows_every_run_not_started_and_the_projection(workspace, capsys):
    plan = build_plan(workspace)
    assert plan.served_runs(), "the fixture's plan has a milestone"
    found = status(workspace)
    assert [r.run for r in found.runs] == [r.name for r in plan.trained_runs()]
    assert {r.state for r in found.runs} == {NOT_STARTED}
    assert all(r.gpu_hours == 0 and r.gpu_hours_projected > 0 for r in found.runs)
    assert found.total.evaluations_done == 0
    assert found.total.evaluations == len(plan.evaluations)
    assert found.total.eta_s is None and found.total.step == 0
    assert main(["status", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["total"]["states"] == {NOT_STARTED: len(plan.trained_runs())}
    assert printed["total"]["gpu_hours_projected"] > 0
    assert printed["slurm"] is False and printed["lock"] is None
    served = [m for r in printed["runs"] for m in r["milestones"]]
    assert {m["run"] for m in served} == {r.name for r in plan.served_runs()}


def test_the_status_module_loads_no_torch():
    code = "import sys, drn.pipeline.status; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_released_weights_are_not_there_to_import_or_imported_with_their_evaluations(
    workspace, capsys
):
    """controls_released: a file not there is named with where to download it; one there is to
    import, then imported, its evaluations counted as they are written."""
    params = {
        **workspace,
        "controls_released": {"edsr_baseline": {"x2": "downloads/x2.pt", "x3": "downloads/x3.pt"}},
    }
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    Path("downloads").mkdir()
    Path("downloads/x2.pt").write_bytes(b"x")
    x2, x3 = status(params).released  # in scale order
    assert (x2.key, x3.key) == tuple(f"controls_released.edsr_baseline.x{s}" for s in (2, 3))
    assert (x2.state, x2.evaluations_done, x2.evaluations) == ("to import", 0, 2)  # photos, Set5
    assert (x3.state, x3.evaluations) == ("not there", 0)
    plan = build_plan(params)
    Path("runs/released").mkdir(parents=True)
    Path("runs/released/edsr_baseline_x2.pt").write_bytes(b"imported")
    evaluation = next(e for e in plan.evaluations if e.weights)
    Path(evaluation.path).parent.mkdir(parents=True)
    Path(evaluation.path).write_text("{}")
    x2 = status(params).released[0]
    assert (x2.state, x2.evaluations_done) == ("imported", 1)
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "released controls_released.edsr_baseline.x2: imported; evaluations 1 of 2" in out
    assert ("released controls_released.edsr_baseline.x3: downloads/x3.pt is not there: left out "
            "of the plan (download it from https://cv.snu.ac.kr/research/EDSR/models/"
            "edsr_baseline_x3-abf2a44e.pt)") in out  # fmt: skip


def test_plain_lines_when_stdout_is_not_a_terminal(workspace, tmp_path):
    progress(workspace, "drn_x2", state="stopped", step=3, checkpoint_step=3)
    done = subprocess.run([BIN / "drn", "status"], capture_output=True, text=True,
                          env=environment({"PATH": os.environ["PATH"]}))  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for start in ("drn_x2 (main): stopped, will resume; step 3 of 6",
                  "  milestone drn_x2_e0.003 at step 3: ", "plan: "):  # fmt: skip
        assert any(line.startswith(start) for line in lines), (start, done.stdout)
    assert not set("┃│┏━") & set(done.stdout), "no table in a pipe"


# ------------------------------------------------------------------------------ mid-run


def test_a_run_with_a_live_holder_is_running_with_its_step_rate_and_eta(workspace):
    progress(workspace, "drn_x2", step=2, it_per_s=0.5, updated=stamp(2), host="elsewhere")
    holder(workspace, "drn_x2", os.getpid())
    found = status(workspace)
    run = row(found, "drn_x2")
    assert run.state == RUNNING
    assert (run.step, run.iterations, run.it_per_s) == (2, 6, 0.5)
    assert run.eta_s == pytest.approx(4 / 0.5 - 2)  # less the time since progress.json
    assert (run.host, run.pid) == (socket.gethostname(), os.getpid())  # the holder's
    assert run.gpu_hours == pytest.approx(2.0) and run.best_val_psnr == 30.3
    assert found.total.at_once == 1 and found.total.eta_s >= run.eta_s
    assert found.total.step == 2


def test_a_running_progress_whose_holder_is_gone_is_stopped_will_resume(workspace):
    progress(workspace, "drn_x2", state="running")
    holder(workspace, "drn_x2", dead_pid())
    run = row(status(workspace), "drn_x2")
    assert run.state == STOPPED
    assert "its trainer is gone" in run.note and run.eta_s is None
    assert run.host is None


def test_a_run_with_its_model_is_finished(workspace):
    plan = build_plan(workspace)
    model = Path(plan.run("drn_x2").directory) / "model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    progress(workspace, "drn_x2", state="finished", step=6)
    Path(plan.run("drn_x2").model).write_bytes(b"weights")
    done = next(e for e in plan.evaluations if e.run == "drn_x2")
    Path(done.path).parent.mkdir(parents=True)
    Path(done.path).write_text("{}")
    run = row(status(workspace), "drn_x2")
    assert run.state == FINISHED and run.step == 6
    assert run.evaluations_done == 1 < run.evaluations


def test_a_failed_attempt_that_is_not_retried_is_failed_with_its_cause_and_message(workspace):
    progress(workspace, "drn_x3", state="stopped")
    log = Path(workspace["paths"]["results"]) / "logs" / "train" / "drn_x3.log"
    error = "drn train: error: data/cache/train: corrupt image coffee.png"
    command = [sys.executable, "-c", f"import sys; print({error!r}); sys.exit(1)"]
    assert supervise(log, 1, command) == 1  # the record as the workflow's supervisor writes it
    run = row(status(workspace), "drn_x3")
    assert run.state == FAILED
    assert (run.cause, run.message) == ("data_error", error)


def test_a_retried_failure_is_stopped_will_resume_and_says_why(workspace):
    log = Path(workspace["paths"]["results"]) / "logs" / "train" / "drn_plus_x2_step3.log"
    assert supervise(log, 1, [sys.executable, "-c", "import os; os.abort()"]) != 0  # a segment's
    run = row(status(workspace), "drn_plus_x2")
    assert run.state == STOPPED and run.cause == "failed"
    assert "attempt 1: failed" in run.note and "retried" in run.note


def test_a_milestone_shows_its_checkpoint_and_the_verdicts_of_its_evaluations(workspace):
    plan = build_plan(workspace)
    served = plan.served_runs("drn_x2")[0]
    Path(served.model).parent.mkdir(parents=True)
    Path(served.model).write_bytes(b"weights")
    evaluation = next(e for e in plan.evaluations if e.run == served.name)
    Path(evaluation.path).parent.mkdir(parents=True)
    verdict = {"run": served.name, "of": "drn_x2", "step": served.iterations, "expected": 30.0,
               "reference": "bicubic", "tolerance_db": 0.1, "delta_db": 0.5,
               "verdict": "ahead"}  # fmt: skip
    Path(evaluation.path).write_text(json.dumps({"psnr": 30.5, "milestone": verdict}))
    milestone = row(status(workspace), "drn_x2").milestones[0]
    assert (milestone.run, milestone.step, milestone.kept) == (served.name, 3, True)
    assert (milestone.evaluations_done, milestone.evaluations) == (1, 2)  # its two labels
    assert [(v.dataset, v.psnr, v.verdict, v.delta_db) for v in milestone.verdicts] == [
        (evaluation.dataset, 30.5, "ahead", 0.5)
    ]


# ------------------------------------------------------------------------------ damaged files


def test_a_truncated_progress_or_attempts_record_is_one_line_naming_it(workspace, capsys):
    path = progress(workspace, "drn_x2")
    path.write_text(path.read_text()[:40])
    record = Path(workspace["paths"]["results"]) / "logs" / "train" / "drn_plus_x2.attempts.jsonl"
    record.parent.mkdir(parents=True)
    record.write_text('{"attempt": 1, "cause": "stopped", "started": "2026-12-02T12:00:00Z"}\n'
                      '{"attempt": 2, "cau')  # fmt: skip
    found = status(workspace)
    assert row(found, "drn_x2").problems == (
        f"unreadable: runs/drn_x2/progress.json ({_json_error(path)})",
    )
    assert row(found, "drn_plus_x2").problems == (
        f"unreadable: {record} (1 of 2 lines are not attempts)",
    )
    assert main(["status"]) == 0
    out = capsys.readouterr()
    assert "  unreadable: runs/drn_x2/progress.json (" in out.out
    assert f"  unreadable: {record} (1 of 2 lines are not attempts)" in out.out
    assert "Traceback" not in out.out + out.err


def _json_error(path: Path) -> str:
    try:
        json.loads(path.read_text())
    except ValueError as error:
        return str(error)
    raise AssertionError("valid JSON")


def test_a_damaged_holder_record_is_named(workspace):
    progress(workspace, "drn_x2")
    path = Path(build_plan(workspace).run("drn_x2").directory) / "holder.json"
    path.write_text('{"host": ')
    run = row(status(workspace), "drn_x2")
    assert run.state == STOPPED
    assert [p for p in run.problems if p.startswith(f"unreadable: {path}: damaged holder")]


# ------------------------------------------------------------------------------ Slurm, Snakemake


def test_a_run_squeue_lists_is_queued_with_its_job_id(workspace, tmp_path, capsys):
    squeue(tmp_path, [
        "4242|PENDING|rule_train_wildcards_drn_x2",
        "4243|RUNNING|rule_train_segment_wildcards_drn_plus_x2_3",
        "4244|PENDING|rule_evaluate_wildcards_drn_photos_2",
        "4245|PENDING|rule_train_wildcards_drn_x2_e0.003",
    ])  # fmt: skip
    found = status(workspace)
    assert found.slurm is True
    x2, plus = row(found, "drn_x2"), row(found, "drn_plus_x2")
    assert (x2.state, x2.slurm_job, x2.slurm_state) == (QUEUED, "4242", "PENDING")
    assert (plus.state, plus.slurm_job) == (RUNNING, "4243")  # its job starts: no trainer yet
    others = {r.state for r in found.runs if r.run not in ("drn_x2", "drn_plus_x2")}
    assert others == {NOT_STARTED}
    assert main(["status"]) == 0
    assert "drn_x2 (main): queued; " in capsys.readouterr().out


def test_without_slurm_there_is_no_slurm_column_and_no_error(workspace, capsys):
    assert status(workspace).slurm is False
    assert main(["status", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["slurm"] is False and out.err == ""


def test_a_stale_snakemake_lock_is_named_with_the_command_that_clears_it(workspace, capsys):
    locks = Path(".snakemake/locks")
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("")
    found = status(workspace)
    assert found.lock is not None and found.lock.endswith("clear it with: drn unlock .")
    assert main(["status"]) == 0
    assert "stale Snakemake lock: .snakemake/locks" in capsys.readouterr().out
