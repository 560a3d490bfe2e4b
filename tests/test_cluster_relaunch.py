"""The small demo on a real single-node Slurm (tests/slurm_cluster.py) through the Slurm profile,
watched and interrupted as on a cluster: `drn status` names the training Slurm runs and those it
queues, each with its Slurm job; a Snakemake killed while a training job runs leaves the job
training, and the Snakemake started again finishes the workflow without a second trainer in
that run directory and without losing what the first job wrote (its step checkpoint, model.pt).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime

import pytest
from pipeline import BIN, environment, one_seed_photos_only, project, run, small_demo
from slurm_cluster import running_cluster

from drn.pipeline.job import read_record

PROFILE = ("--profile", "workflow/profiles/slurm", "--slurm-status-command", "squeue",
           "--slurm-init-seconds-before-status-checks", "1",
           "--seconds-between-status-checks", "2", "--latency-wait", "10")  # fmt: skip
DATA = ("data/cache/train/x2", "data/photos")  # the training cache and the validation source
WAIT_S = 300  # the bound on every wait: generous for a busy 2-core machine


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("slurm")) as env:
        yield env


def demo_at_scale_2(steps: int):
    """The small demo (one seed, photos only, scale 2) with main runs of `steps` iterations and
    ablations of half as many: drn's and drn_plus's ablation arms are milestones of the main runs
    (drn_x2 and drn_plus_x2 train in two segments)."""
    params = one_seed_photos_only(small_demo())
    params["evaluation"].update(scales=[2])
    params["downscaled"] = {"train_photos_x2": {"of": "train_photos", "scale": 2}}
    train = params["train"]
    train.update(log_every=10, checkpoint_every=100, init_from={"x2": None})
    train["validation"]["every"] = 100
    epochs = steps / train["iterations_per_epoch"]
    train["epochs"].update(drn=epochs, drn_plus=epochs)
    params["ablations"]["distillation"]["epochs"] = epochs / 2
    params["ablations"]["loss"]["epochs"] = epochs / 2
    return params


def snakemake(workspace, env, output):
    """The Slurm-profile Snakemake in the background, in a session (process group) of its own,
    its output in `output`."""
    with output.open("w") as out:
        return subprocess.Popen(
            [BIN / "snakemake", *PROFILE], cwd=workspace, env=environment(env), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def kill(process):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def squeue(env):
    """This user's Slurm jobs: {job id: (state, comment)}."""
    out = run(".", "squeue", "--me", "-h", "-o", "%i|%T|%k", env=env)
    return {job: (state, comment) for job, state, comment in
            (line.split("|", 2) for line in out.splitlines() if line.count("|") >= 2)}  # fmt: skip


def cancel_every_job(env):
    """scancel this cluster's jobs and wait until Slurm has ended them."""
    subprocess.run(["scancel", "--me"], env=environment(env), capture_output=True)
    deadline = time.time() + 90
    while time.time() < deadline and any(
        state not in ("COMPLETED", "CANCELLED", "FAILED") for state, _ in squeue(env).values()
    ):
        time.sleep(1)


def status(workspace, env):
    return json.loads(run(workspace, BIN / "drn", "status", "--json", env=env))


def wait_for(what, check, process, output):
    """Poll `check()` until it returns something true (returned), while `process` runs."""
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        found = check()
        if found:
            return found
        if process.poll() is not None:
            pytest.fail(f"Snakemake ended before {what}: {output.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {what} within {WAIT_S} s: {output.read_text()[-3000:]}")


RECORD_LAG_S = 1  # an attempt's "ended" after its trainer's exit, in whole seconds


def when(stamp):
    return datetime.fromisoformat(stamp).timestamp()


@pytest.mark.slow  # a minute or two: the demo's data, then its trainings on Slurm
def test_drn_status_names_the_training_slurm_runs_and_those_it_queues_with_their_jobs(
    tmp_path, slurm
):
    params = demo_at_scale_2(steps=3000)
    # a training job asks for 5 of the node's 8 GB: one trains, the other training jobs queue
    params["resources"]["train"]["mem_mb"] = 5000
    workspace = project(tmp_path, params)
    run(workspace, BIN / "snakemake", "--cores", "2", *DATA)  # the data, locally
    output = workspace / "snakemake.out"
    workflow = snakemake(workspace, slurm, output)
    try:

        def running_and_queued():
            runs = status(workspace, slurm)["runs"]
            running = [r for r in runs if r["state"] == "running" and r["pid"]]  # its trainer
            queued = [r for r in runs if r["state"] == "queued"]
            return (runs, squeue(slurm)) if running and queued else None

        runs, jobs = wait_for("run running beside a queued one", running_and_queued, workflow,
                              output)  # fmt: skip
        shown = {r["slurm_job"] for r in runs if r["state"] in ("running", "queued")}

        def submitted():  # the jobs Snakemake says it submitted, once it names those shown
            found = re.findall(r"submitted with SLURM jobid (\d+)", output.read_text())
            return found if shown <= set(found) else None

        submitted = wait_for("line of each job shown", submitted, workflow, output)
        for state, slurm_state in (("running", "RUNNING"), ("queued", "PENDING")):
            for r in (r for r in runs if r["state"] == state):
                assert r["slurm_job"] in submitted, (r, submitted)
                assert r["slurm_state"] == slurm_state, r
                job_state, comment = jobs[r["slurm_job"]]  # squeue's, a moment later
                # the job of that run: snakemake-executor-plugin-slurm's comment names it
                assert re.fullmatch(rf"rule_train(_segment)?_wildcards_{r['run']}(_\d+)?",
                                    comment), (r, comment)  # fmt: skip
                assert job_state in (slurm_state, "COMPLETING", "COMPLETED") or (
                    state == "queued" and job_state == "RUNNING"  # its turn came meanwhile
                ), (r, job_state)
        [trained] = [r for r in runs if r["state"] == "running"]  # one training at a time
        assert trained["host"] and trained["pid"]  # its holder: the live trainer
    finally:
        kill(workflow)
        cancel_every_job(slurm)


@pytest.mark.slow  # two or three minutes: a training paused, two Snakemakes, the whole DAG
def test_a_snakemake_killed_while_a_training_job_runs_and_started_again_keeps_one_trainer(
    tmp_path, slurm
):
    params = demo_at_scale_2(steps=4000)
    # the DAG of one trained run (drn_x2, in two segments) and its milestone, evaluated
    params["evaluation"].update(models=["drn"], ensemble_models=[])
    del params["ablations"]["distillation"]
    params["ablations"]["loss"]["losses"] = ["l1"]
    segment = 2000  # the loss ablation's l1 arm (drn_x2_e2): drn_x2's checkpoint there
    workspace = project(tmp_path, params)
    run(workspace, BIN / "snakemake", "--cores", "2", *DATA)  # the data, locally
    run_dir = workspace / "runs/drn_x2"
    records = workspace / "results/logs/train"
    first_out, second_out = workspace / "first.out", workspace / "second.out"
    first = snakemake(workspace, slurm, first_out)
    holder_pid, second = None, None
    try:

        def training():
            with contextlib.suppress(OSError, ValueError):
                progress = json.loads((run_dir / "progress.json").read_text())
                holder = json.loads((run_dir / "holder.json").read_text())
                if 0 < progress["step"] < segment:
                    return holder
            return None

        holder = wait_for("training of drn_x2's first segment", training, first, first_out)
        holder_job, holder_pid = holder["slurm_job"], holder["pid"]
        # the trainer pauses (a live holder: on its own host its pid decides), so that the
        # Snakemake started again finds it still training, however fast this machine trains
        os.kill(holder_pid, signal.SIGSTOP)
        kill(first)
        assert squeue(slurm)[holder_job][0] == "RUNNING"  # the job goes on without Snakemake
        # on this one node the job's own Snakemake works in the workspace: drn unlock refuses
        refused = subprocess.run(
            [BIN / "drn", "unlock", "."], cwd=workspace, env=environment(slurm),
            capture_output=True, text=True,
        )  # fmt: skip
        assert refused.returncode == 75 and "works there" in refused.stderr, refused
        run(workspace, BIN / "snakemake", "--unlock", env=slurm)  # Snakemake's own, regardless
        second = snakemake(workspace, slurm, second_out)

        def refused_attempt():
            lines = read_record(records / f"drn_x2_step{segment}.attempts.jsonl")
            return [line for line in lines if line["cause"] == "held"]

        [held, *_] = wait_for("held attempt", refused_attempt, second, second_out)
        os.kill(holder_pid, signal.SIGCONT)  # the holder trains on, to its segment's end
        second.wait(timeout=WAIT_S)
        out = second_out.read_text()
    finally:
        if holder_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder_pid, signal.SIGCONT)
        kill(first)
        if second:
            kill(second)
        cancel_every_job(slurm)

    segment_lines = read_record(records / f"drn_x2_step{segment}.attempts.jsonl")
    final_lines = read_record(records / "drn_x2.attempts.jsonl")
    kept = run_dir / f"checkpoints/step_{segment}.pt"
    removed = re.findall(r"Removing output files of failed job .*\n(.*)", out)
    assert kept.is_file(), (
        f"the holder's {kept.name} is gone (Snakemake's removals of a failed job's outputs: "
        f"{removed}); the segment's attempts (job, cause, started, ended, message): "
        + repr([(line["slurm_job_id"], line["cause"], line["started"], line["ended"],
                 line["message"]) for line in segment_lines])
    )  # fmt: skip
    assert "100%) done" in out, out[-3000:]
    assert (run_dir / "model.pt").is_file()

    # the refusal names the holder; the holder's attempt ended ok, and its record says its own
    holding = f"trained by pid {holder_pid} on {holder['host']} (Slurm job {holder_job})"
    assert holding in held["message"], held
    [holders_line] = [line for line in segment_lines if line["slurm_job_id"] == holder_job]
    assert holders_line["cause"] == "ok"
    assert "trained by" not in (holders_line["message"] or ""), holders_line  # its own log's
    # never two trainers: the attempts that trained (not refused) ran one after the other
    trained = sorted((line for line in segment_lines + final_lines if line["cause"] != "held"),
                     key=lambda line: when(line["started"]))  # fmt: skip
    assert trained[0]["slurm_job_id"] == holder_job
    # (a supervisor records "ended" just after its trainer exits and frees the run's lock, the
    # moment the next trainer may take it: that lag, under a second, may show as one second in
    # these records' whole seconds; an overlap of trainers would be most of a segment)
    for before, after in itertools.pairwise(trained):
        assert when(before["ended"]) <= when(after["started"]) + RECORD_LAG_S, (before, after)
    # train.log: a header for each attempt that trained, the holder's first; none for a refusal
    log = (run_dir / "train.log").read_text()
    headers = re.findall(r"^== runs/drn_x2: started .* Slurm job (\d+) ==$", log, re.M)
    assert headers[0] == holder_job and len(headers) >= 2, headers  # and the last segment's
    assert set(headers) <= {line["slurm_job_id"] for line in trained}, (headers, trained)
    held_jobs = {line["slurm_job_id"] for line in segment_lines if line["cause"] == "held"}
    assert not held_jobs & set(headers), (held_jobs, headers)

    runs = status(workspace, slurm)["runs"]
    assert [(r["run"], r["state"]) for r in runs] == [("drn_x2", "finished")]
