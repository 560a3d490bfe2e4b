"""The cluster promises, kept on a real single-node Slurm (tests/slurm_cluster.py) through the
Slurm profile: a training job that reaches its time limit is warned before it, checkpoints at
the exact step, is submitted again by Snakemake and resumes; every attempt ends inside its limit
(none is TIMEOUT, so the one that finishes is kept), the run keeps every attempt's log, and the
final weights are bit-identical to those of an uninterrupted run. The record of the job's
attempts (drn/pipeline/job.py) says each stopped one was "stopped" and names its Slurm log."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import torch
import yaml
from pipeline import BIN, environment, project, run, small_demo
from slurm_cluster import running_cluster

from drn.core.errors import UsageError
from drn.engine.checkpoint import load_checkpoint
from drn.pipeline.job import read_record
from drn.pipeline.params import validate_params

LIMIT_MINUTES = 1  # Slurm's shortest time limit
LEAD = 10  # seconds: resources.train.stop_before_limit
TRAINING_SECONDS = 50  # more than one attempt trains: at most 60 s - LEAD - start-up


def one_thread(env=None):
    """The environment with drn on one thread: bit-identity holds at equal thread counts."""
    return {**(env or os.environ), "DRN_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("slurm")) as env:
        yield env


def time_limited_training(iterations=600):
    """One tiny deterministic training (runs/drn_x2) of `iterations` steps, a 1-minute limit."""
    params = small_demo()
    params["evaluation"].update(scales=[2], models=["drn"], ensemble_models=[])
    params["downscaled"] = {"train_photos_x2": {"of": "train_photos", "scale": 2}}
    train = params["train"]
    train.update(batch=8, patch=24, iterations_per_epoch=1, deterministic=True, workers=0)
    train["epochs"]["drn"] = iterations
    train["decay"]["every_epochs"] = 10**6
    train["checkpoint_every"] = 10**6  # none but the signal's: resuming where it stopped proves it
    train["log_every"] = max(1, iterations // 10)
    train["init_from"] = {"x2": None}
    train["validation"] = {"source": None, "images": 0, "every": 0}
    params["resources"]["train"].update(runtime=LIMIT_MINUTES, stop_before_limit=LEAD)
    return params


def iterations_per_second(workspace):
    """This machine's best training speed: that of a Slurm job on a quiet machine. (On a busy
    one the training takes more attempts, never fewer than two.)"""
    run(workspace, BIN / "drn", "train", "--model", "drn", "--scale", "2",
        "--run-dir", "runs/calibration", "--no-track", env=one_thread())  # fmt: skip
    log = (workspace / "runs/calibration/train.log").read_text()
    return max(float(rate) for rate in re.findall(r"it_per_s ([\d.e+-]+)", log))


def job_record(workspace, job, env):
    record = run(workspace, "scontrol", "show", "job", job, env=env)
    fields = dict(re.findall(r"(\w+)=(\S+)", record))

    def seconds(hms):
        return sum(int(part) * 60**i for i, part in enumerate(reversed(hms.split(":"))))

    return fields["JobState"], seconds(fields["RunTime"]), seconds(fields["TimeLimit"])


@pytest.mark.slow  # a few minutes: attempts of a 1-minute time limit
def test_a_training_job_stops_before_its_time_limit_resumes_and_ends_as_an_uninterrupted_one(
    tmp_path, slurm
):
    workspace = project(tmp_path, time_limited_training())
    run(workspace, BIN / "snakemake", "--cores", "2", "data/cache/train/x2")  # data, locally
    iterations = round(iterations_per_second(workspace) * TRAINING_SECONDS)
    params = time_limited_training(iterations)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with (workspace / "uninterrupted.out").open("w") as output:
        uninterrupted = subprocess.Popen(
            [BIN / "drn", "train", "--model", "drn", "--scale", "2", "--run-dir",
             "runs/uninterrupted", "--no-track"],
            cwd=workspace, env=environment(one_thread()), stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # --retries: the attempts a machine that others keep busy may need (the profile's 3 fit
        # a training of up to four time limits)
        out = run(
            workspace, BIN / "snakemake", "--profile", "workflow/profiles/slurm",
            "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
            "--seconds-between-status-checks", "2", "--latency-wait", "10", "--retries", "9",
            "runs/drn_x2/model.pt", env=one_thread(slurm),
        )  # fmt: skip
        finished = uninterrupted.wait(timeout=600)
    finally:
        if uninterrupted.poll() is None:
            uninterrupted.kill()

    assert "100%) done" in out
    attempts = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", out)
    assert len(attempts) >= 2, out[-3000:]  # the training needed more than one time limit
    records = [job_record(workspace, job, slurm) for job in attempts]
    assert [state for state, _, _ in records] == ["FAILED"] * (len(attempts) - 1) + ["COMPLETED"]
    assert all(ran < limit == 60 * LIMIT_MINUTES for _, ran, limit in records), records

    log = (workspace / "runs/drn_x2/train.log").read_text()  # every attempt's, in order
    record = read_record(
        workspace / "results/logs/train/drn_x2.attempts.jsonl"
    )  # drn/pipeline/job.py
    assert [line["slurm_job_id"] for line in record] == attempts
    headers = re.compile(r"^== runs/drn_x2: started .* Slurm job (\d+) ==$", re.M)
    assert headers.findall(log) == attempts
    sections = headers.split(log)[2::2]  # what each attempt printed
    reached = 0  # the step the previous attempt left its checkpoint at
    for job, section, line in zip(attempts, sections, record, strict=True):
        if reached:
            assert f"resumed from step {reached} (of {iterations})" in section
        stopped = re.search(r"^stopped by signal SIGTERM at step (\d+); run again", section, re.M)
        if stopped:  # drn got the signal, checkpointed and exited 128 + SIGTERM
            reached = int(stopped.group(1))
            slurm_log = next(workspace.glob(f"results/logs/slurm/rule_train/*/{job}.log"))
            assert "returned non-zero exit status 143." in slurm_log.read_text()  # not "died"
            assert line["scheduler_log"] == str(slurm_log)
            # the record says so: retried, it resumes
            assert (line["cause"], line["stop_signal"], line["retryable"]) == (
                "stopped",
                "SIGTERM",
                True,
            )
        else:  # it finished; a signal after that (Snakemake's own exit) costs one quick retry
            assert f"finished {iterations} iterations" in section
            assert line["cause"] == "ok"
            reached = iterations
    assert reached == iterations and "stopped by signal" in sections[0]
    latest = (workspace / "results/logs/train/drn_x2.log").read_text()  # Snakemake's job log
    assert f"Slurm job {attempts[-1]} ==" in latest

    assert finished == 0, (workspace / "uninterrupted.out").read_text()[-3000:]
    ours = load_checkpoint(workspace / "runs/drn_x2/model.pt")["state_dict"]
    reference = load_checkpoint(workspace / "runs/uninterrupted/model.pt")["state_dict"]
    assert ours.keys() == reference.keys()
    assert all(torch.equal(ours[k], reference[k]) for k in ours)


def test_a_warning_that_leaves_no_time_to_train_is_refused_naming_the_key():
    params = time_limited_training()
    params["resources"]["train"].update(runtime=2, stop_before_limit=120)
    with pytest.raises(UsageError) as refused:
        validate_params(params)
    assert str(refused.value) == (
        "params.yaml: resources.train.stop_before_limit: 120 s leaves no time to train in a "
        "time limit (runtime) of 2 min"
    )
