"""Retries by cause (drn/pipeline/job.py, drn/pipeline/workflow.py): the supervisor's
classification of an attempt and its record, the decision of the next attempt, the resources
Snakemake asks for by attempt (directly: tests/test_rules.py), and on a real single-node Slurm
that holds jobs to their memory (cgroups): a job that runs out of memory is retried once with
twice the memory and succeeds, a job that fails on a corrupt image runs once and its retries end
at once. (A job stopped at its time limit is retried and resumes: tests/test_cluster.py, which
also checks its record says "stopped".) MLflow's artifact progress bars stay out of batch logs."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from pipeline import BIN, environment, project, run, small_demo
from slurm_cluster import MemoryLimitedCluster, running_cluster

from drn.pipeline import job
from drn.pipeline.job import classify, decide, read_record, record_path, resolve
from drn.pipeline.plan import build_plan

slow = pytest.mark.slow


def attempt(number, cause, **fields):
    return {"attempt": number, "ran": True, "cause": cause, "started": f"t{number}", **fields}


# --- classification ----------------------------------------------------------------------------

BEHIND_MESSAGE = (
    "drn: error: drn_x3: behind at its milestone step 100000 (Set5 x3: ...); "
    "stopped (train.stop_if_behind), checkpoint kept in runs/drn_x3/checkpoints"
)
HELD_MESSAGE = ("drn: error: runs/drn_x2: trained by pid 4242 on node7 (Slurm job 1234) since "
                "2026-12-02 13:00 UTC, heartbeat 20 s ago; not started (run `drn status` to "
                "watch it)")  # fmt: skip


@pytest.mark.parametrize(
    ("returncode", "message", "oom_kills", "stop", "cause"),
    [
        (0, None, 0, 0, "ok"),
        (143, "stopped by signal SIGTERM at step 40; run again to resume", 0, 0, "stopped"),
        (138, "stopped by signal SIGUSR1 at step 40; run again to resume", 0, 0, "stopped"),
        (130, "drn: interrupted", 0, 0, "stopped"),
        (-signal.SIGTERM, None, 0, 0, "stopped"),  # a command without drn's handler
        (1, "drn: error: a failure after the scheduler's warning", 0, signal.SIGTERM, "stopped"),
        (-signal.SIGKILL, None, 1, 0, "out_of_memory"),  # the kernel's OOM killer (cgroup)
        (1, "torch.distributed.elastic...: exitcode -9", 2, 0, "out_of_memory"),  # torchrun's
        (1, "MemoryError", 0, 0, "out_of_memory"),
        (1, "numpy...._ArrayMemoryError: Unable to allocate 9.0 GiB", 0, 0, "out_of_memory"),
        (-signal.SIGKILL, None, 0, 0, "killed"),  # SIGKILL without an OOM kill: scancel, a node
        (137, None, 0, 0, "killed"),
        (2, "drn train: error: argument --run: expected one argument", 0, 0, "usage_error"),
        (2, "drn: error: params.yaml: train.batch: 0 is less than 1", 0, 0, "usage_error"),
        (1, "drn: error: data/Set5/bird.png: not a readable image", 0, 0, "data_error"),
        (75, HELD_MESSAGE, 0, 0, "held"),  # drn train's refusal: another live trainer
        (1, HELD_MESSAGE, 0, 0, "held"),  # the same refusal under torchrun, which exits 1
        (75, None, 0, 0, "held"),
        (3, BEHIND_MESSAGE, 0, 0, "behind"),  # train.stop_if_behind: a run behind its milestone
        (3, "RuntimeError: exit 3 of something else", 0, 0, "failed"),
        (1, "RuntimeError: a bug's traceback", 0, 0, "failed"),  # not drn's own error: retried
        (-signal.SIGSEGV, None, 0, 0, "failed"),
        (
            127,
            "drn.pipeline.job: cannot run drn: [Errno 2] No such file or directory",
            0,
            0,
            "failed",
        ),
    ],
)
def test_an_attempt_is_classified_by_its_exit_its_last_error_line_and_oom_kills(
    returncode, message, oom_kills, stop, cause
):
    assert classify(returncode, message, oom_kills, stop) == cause


def test_the_message_is_the_last_drn_error_line_else_the_last_line(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("start\n\x1b[32mprogress 10%\r progress 100%\ndrn: error: bad.png: not a "
                   "readable image\nsome warning after it\n")  # fmt: skip
    assert job.last_error_line(log) == "drn: error: bad.png: not a readable image"
    log.write_text("Traceback (most recent call last):\n  ...\nMemoryError\n\n")
    assert job.last_error_line(log) == "MemoryError"
    assert job.last_error_line(tmp_path / "none.log") is None


def test_the_record_lies_beside_the_log_named_after_the_job():
    assert record_path("results/logs/train/drn_x2.log") == Path(
        "results/logs/train/drn_x2.attempts.jsonl"
    )
    assert record_path("results/logs/evaluate/drn_x2_photos.log").name == (
        "drn_x2_photos.attempts.jsonl"
    )


# --- the decision ------------------------------------------------------------------------------


def test_a_first_attempt_always_runs_whatever_an_earlier_run_of_the_workflow_recorded():
    earlier = [attempt(1, "data_error", exit_code=1, message="drn: error: bad.png")]
    assert decide(earlier, 1).run  # the user may have fixed it: a new run tries again


@pytest.mark.parametrize(
    ("cause", "code", "kind"),
    [("data_error", 1, "a data error"), ("usage_error", 2, "a usage error")],
)
def test_after_a_usage_or_data_error_the_next_attempts_do_not_run(cause, code, kind):
    message = "drn: error: data/broken/bad.png: not a readable image"
    lines = [attempt(1, cause, exit_code=code, message=message)]
    decision = decide(lines, 2)
    assert not decision.run and decision.exit_code == code and decision.after == 1
    assert decision.why == (f"not retried: attempt 1 failed with {kind} (exit {code}): "
                            f"{message}; fix it and run again")  # fmt: skip
    # the refusal is recorded; the attempt after it refuses alike, naming the same attempt
    lines.append({**attempt(2, cause), "ran": False, "exit_code": code, "message": message,
                  "after": 1})  # fmt: skip
    assert decide(lines, 3).why == decision.why


def test_running_out_of_memory_is_retried_once_with_more_memory_then_not_again():
    first = [attempt(1, "out_of_memory", memory_limit_mb=800)]
    assert decide(first, 2) == job.Decision(True, 1, previous=first)
    second = [*first, attempt(2, "out_of_memory", memory_limit_mb=1600)]
    refused = decide(second, 3)
    assert not refused.run and refused.exit_code == 137
    assert refused.why == ("not retried: attempts 1, 2 ran out of memory (800 MB, then 1600 MB); "
                           "raise mem_mb in params.yaml resources and run again")  # fmt: skip
    assert decide(second, 3, memory_retries=2).run  # resources.retry.out_of_memory: 2
    assert decide(second, 3, memory_retries=2).memory_steps == 2


def test_the_memory_grown_stays_for_later_attempts_and_time_limits_are_retried_as_before():
    lines = [attempt(1, "out_of_memory"), attempt(2, "stopped"), attempt(3, "stopped")]
    assert decide(lines, 4) == job.Decision(True, 1, previous=lines)
    assert decide([attempt(1, "failed"), attempt(2, "killed")], 3).run


def test_a_run_held_by_another_trainer_is_retried():
    held = [attempt(1, "held", exit_code=75, message=HELD_MESSAGE)]
    assert decide(held, 2) == job.Decision(True, 0, previous=held)


def test_a_run_stopped_behind_its_milestone_is_not_retried():
    behind = [attempt(1, "behind", exit_code=3, message=BEHIND_MESSAGE)]
    decision = decide(behind, 2)
    assert not decision.run and decision.exit_code == 3 and decision.cause == "behind"
    assert decision.why.startswith("not retried: attempt 1 failed with a run behind its milestone")


def test_only_this_runs_attempts_count():
    old = [attempt(1, "out_of_memory"), attempt(2, "data_error", exit_code=1)]
    # this run's attempt 1 left no line (it never started): nothing is known before attempt 2
    assert decide(old, 2) == job.Decision()
    # this run's attempt 1, after an older run's attempts
    now = [*old, attempt(1, "stopped")]
    assert decide(now, 2) == job.Decision(True, 0, previous=now[-1:])
    # after an older run's refused attempts, this run's attempt 1 left no line: attempt 2 runs
    refused = [attempt(1, "data_error", exit_code=1), {**attempt(2, "data_error"), "ran": False}]
    assert decide(refused, 2).run and decide([*refused, attempt(1, "data_error")], 2).why


def test_an_attempt_whose_supervisor_died_with_it_takes_its_cause_from_slurm(tmp_path):
    path = tmp_path / "job.attempts.jsonl"
    states = {"OUT_OF_MEMORY": "out_of_memory", "TIMEOUT": "stopped", "PREEMPTED": "stopped",
              "CANCELLED": "killed", None: "killed"}  # fmt: skip
    for state, cause in states.items():
        lines = [attempt(1, "running", slurm_job_id="123")]
        path.write_text(json.dumps(lines[0]) + "\n")
        asked = []

        def state_of(job_id, asked=asked, state=state):
            asked.append(job_id)
            return state

        resolved = resolve(path, lines, 2, state_of=state_of)
        assert asked == ["123"] and resolved[-1]["cause"] == cause
        assert read_record(path) == resolved  # written back: later readers agree
    assert resolve(path, read_record(path), 3) == read_record(path)  # only the previous one


# --- the supervisor ----------------------------------------------------------------------------

SUPERVISE = [sys.executable, "-m", "drn.pipeline.job"]


def supervise(log, number, *command, **options):
    return subprocess.run([*SUPERVISE, "--log", str(log), "--attempt", str(number), "--",
                           *command], capture_output=True, text=True, **options)  # fmt: skip


def test_a_refusal_of_a_held_run_is_recorded_held_and_the_next_attempt_runs(tmp_path):
    log = tmp_path / "logs/train/drn_x2.log"
    refusing = [sys.executable, "-c", f"import sys; print({HELD_MESSAGE!r}); sys.exit(75)"]
    assert supervise(log, 1, *refusing).returncode == 75
    marker = tmp_path / "ran-again"
    assert supervise(log, 2, "touch", str(marker)).returncode == 0 and marker.exists()
    lines = read_record(record_path(log))
    assert [(x["cause"], x["retryable"], x["exit_code"]) for x in lines] == [
        ("held", True, 75), ("ok", False, 0),
    ]  # fmt: skip
    assert lines[0]["message"] == HELD_MESSAGE


def test_an_attempt_refused_beside_a_running_one_leaves_the_running_ones_log_and_message(
    tmp_path,
):
    log = tmp_path / "logs/train/drn_x2_step200.log"
    training = ("import sys, time; print('training', flush=True); time.sleep(3); "
                "sys.exit('drn: error: its own')")  # fmt: skip
    holder = subprocess.Popen([*SUPERVISE, "--log", str(log), "--attempt", "1", "--",
                               sys.executable, "-c", training])  # fmt: skip
    deadline = time.monotonic() + 60
    while not (log.is_file() and "training" in log.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    refusing = [sys.executable, "-c", f"import sys; print({HELD_MESSAGE!r}); sys.exit(75)"]
    assert supervise(log, 2, *refusing).returncode == 75  # a relaunched workflow's job
    assert holder.wait(timeout=60) == 1
    lines = {x["attempt"]: x for x in read_record(record_path(log))}
    assert lines[1]["message"] == "drn: error: its own" and lines[2]["message"] == HELD_MESSAGE


def test_a_data_error_runs_once_and_its_retries_say_why_and_exit_at_once(tmp_path):
    log = tmp_path / "logs/evaluate/bicubic_x2_broken.log"
    failing = [sys.executable, "-c", "import sys; print('scoring'); "
               "sys.exit('drn: error: data/broken/bad.png: not a readable image')"]  # fmt: skip
    assert supervise(log, 1, *failing).returncode == 1
    marker = tmp_path / "ran-again"
    for number in (2, 3):
        start = time.monotonic()
        done = supervise(log, number, "touch", str(marker))
        assert done.returncode == 1 and time.monotonic() - start < 5
        assert log.read_text() == (
            "not retried: attempt 1 failed with a data error (exit 1): drn: error: "
            "data/broken/bad.png: not a readable image; fix it and run again\n"
        )
    assert not marker.exists()
    lines = read_record(record_path(log))
    assert [(x["attempt"], x["ran"], x["cause"], x["exit_code"]) for x in lines] == [
        (1, True, "data_error", 1), (2, False, "data_error", 1), (3, False, "data_error", 1),
    ]  # fmt: skip
    assert lines[0]["retryable"] is False and lines[0]["command"] == shlex.join(failing)
    assert [x["after"] for x in lines] == [None, 1, 1]
    for line in lines:
        assert set(line) == {
            "attempt", "ran", "cause", "retryable", "exit_code", "signal", "message", "after",
            "stop_signal", "started", "ended", "seconds", "host", "slurm_job_id",
            "scheduler_log", "log", "command", "memory_limit_mb", "memory_peak_mb", "oom_kills",
        }  # fmt: skip


STOPPABLE = """
import signal, sys, time
def stop(signum, frame):
    print("stopped by signal", signal.Signals(signum).name, "at step 7; run again", flush=True)
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGUSR1, stop)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_the_supervisor_passes_the_schedulers_signal_on_and_records_a_stop(tmp_path, signum):
    log = tmp_path / "train.log"
    supervisor = subprocess.Popen([*SUPERVISE, "--log", str(log), "--", sys.executable, "-c",
                                   STOPPABLE])  # fmt: skip
    deadline = time.monotonic() + 30
    while "ready" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    supervisor.send_signal(signum)  # to the supervisor only: it passes it on
    assert supervisor.wait(timeout=30) == 128 + signum
    (line,) = read_record(record_path(log))
    assert line["cause"] == "stopped" and line["retryable"] is True
    name = signal.Signals(signum).name
    assert line["stop_signal"] == name and line["exit_code"] == 128 + signum
    assert line["message"] == f"stopped by signal {name} at step 7; run again"


def test_the_command_runs_in_its_own_process_group_first_in_line_for_the_oom_killer(tmp_path):
    log = tmp_path / "probe.log"
    probe = ("import os, pathlib; print(os.getpgid(0) == os.getpid(), "
             "pathlib.Path('/proc/self/oom_score_adj').read_text().strip())")  # fmt: skip
    assert supervise(log, 1, sys.executable, "-c", probe).returncode == 0
    assert log.read_text() == f"True {job.OOM_SCORE_ADJ}\n"  # the supervisor's stays as it was


def test_a_command_killed_while_the_kernel_counted_an_oom_kill_ran_out_of_memory(
    tmp_path, monkeypatch
):
    """Simulated: SIGKILL, and the cgroup's memory.oom_control (memory.events on cgroup v2)
    counting one OOM kill more than before the attempt. (The Slurm test below does it for real.)"""
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.limit_in_bytes").write_text(str(800 * 2**20))
    (cgroup / "memory.max_usage_in_bytes").write_text(str(800 * 2**20))
    (cgroup / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    monkeypatch.setattr(job, "_memory_cgroups", lambda: ("v1", [cgroup]))
    events = cgroup / "memory.oom_control"
    killing = [sys.executable, "-c", "import os, pathlib, signal, sys; "
               "events = pathlib.Path(sys.argv[1]); kills = int(events.read_text().split()[-1]); "
               "events.write_text(f'oom_kill_disable 0\\nunder_oom 0\\noom_kill {kills + 1}\\n'); "
               "os.kill(os.getpid(), signal.SIGKILL)", str(events)]  # fmt: skip
    log = tmp_path / "hog.log"
    assert job.supervise(log, 1, killing) == 137
    (line,) = read_record(record_path(log))
    assert (line["cause"], line["signal"], line["oom_kills"]) == ("out_of_memory", "SIGKILL", 1)
    assert (line["memory_limit_mb"], line["memory_peak_mb"], line["retryable"]) == (800, 800, True)
    assert job.supervise(log, 2, killing) == 137  # again: no third time
    assert read_record(record_path(log))[-1]["retryable"] is False
    assert job.supervise(log, 3, ["true"]) == 137
    assert log.read_text().startswith("not retried: attempts 1, 2 ran out of memory")


# --- the resources Snakemake asks for, by attempt ----------------------------------------------


def jobs_of_dry_run(output):
    """{(rule, wildcards): {resource: value}} and the shell commands of a dry run."""
    found = {}
    for block in re.split(r"\n\s*\n", output):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        resources = re.search(r"^\s*resources: (.*)$", block, re.M)
        if rule and resources:
            wildcards = re.search(r"^\s*wildcards: (.*)$", block, re.M)
            key = (rule.group(1), wildcards.group(1) if wildcards else "")
            found[key] = dict(re.findall(r"(\w+)=([^,]+)", resources.group(1)))
    return found


def test_resources_grow_after_running_out_of_memory_and_shrink_for_an_attempt_that_will_not_run(
    tmp_path,
):
    params = small_demo()
    params["evaluation"].update(scales=[2], models=["drn", "drn_plus"], ensemble_models=[])
    params["downscaled"] = {"train_photos_x2": {"of": "train_photos", "scale": 2}}
    params["train"]["init_from"] = {"x2": None}
    params["resources"]["evaluate"].update(gpu=1, gpu_model="a100", cpus_per_gpu=2, mem_mb=3000)
    params["resources"]["retry"] = {"out_of_memory": 1, "memory_growth": 1.5}
    workspace = project(tmp_path, params)
    logs = workspace / "results/logs"
    records = {
        "train/drn_x2": attempt(1, "out_of_memory", memory_limit_mb=2000),
        "evaluate/drn_x2_photos": attempt(1, "data_error", exit_code=1, message="drn: error: x"),
    }
    for name, line in records.items():
        (logs / name).parent.mkdir(parents=True, exist_ok=True)
        (logs / f"{name}.attempts.jsonl").write_text(json.dumps(line) + "\n")
    evaluations = ["results/eval/drn/x2/photos.json", "results/eval/drn_plus/x2/photos.json"]
    out = run(workspace, BIN / "snakemake", "-n", "--printshellcmds", "--cores", "4",
              "--attempt", "2", "runs/drn_x2/model.pt", *evaluations)  # fmt: skip
    jobs = jobs_of_dry_run(out)
    trained = jobs[("train", "run=drn_x2")]
    assert (trained["attempt"], trained["mem_mb"]) == ("2", "3000")  # 2000 x 1.5
    assert trained["cpus_per_task"] == "1" and trained["runtime"] == "60"  # demo: a CPU job
    refused = jobs[("evaluate", "label=drn, scale=2, dataset=photos")]
    assert refused["runtime"] == "5" and refused["cpus_per_task"] == "1"
    assert "gpu" not in refused and "gpu_model" not in refused and "cpus_per_gpu" not in refused
    assert refused["mem_mb"] == "3000"  # not grown
    # no record: as params.yaml asks
    assert jobs[("train", "run=drn_plus_x2")]["mem_mb"] == "2000"
    evaluated = jobs[("evaluate", "label=drn_plus, scale=2, dataset=photos")]
    assert (evaluated["gpu"], evaluated["gpu_model"], evaluated["cpus_per_gpu"]) == (
        "1",
        "a100",
        "2",
    )
    assert "cpus_per_task" not in evaluated and evaluated["runtime"] == "30"
    assert "--attempt 2 --memory-retries 1 -- drn train --run drn_x2 " in out


# --- on a real Slurm that enforces memory ------------------------------------------------------

HOG_MB = 1200  # what the job allocates, and the memory its first attempt asks for
HOG = f"""
import sys
fed = b"x" * ({HOG_MB} << 20)  # every page written
open(sys.argv[1], "w").write("fed\\n")
"""
HOG_RULE = """

rule hog:
    output:
        "hog.txt",
    threads: job_threads("prepare")
    resources:
        **job_resources("prepare"),
    log:
        f"{LOGS}/hog.log",
    shell:
        supervised("python hog.py {output}")
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("slurm"), MemoryLimitedCluster) as env:
        yield env


def slurm_job(workspace, job_id, env):
    shown = run(workspace, "scontrol", "show", "job", job_id, env=env)
    return dict(re.findall(r"(\w+)=(\S+)", shown))


@slow
def test_on_slurm_out_of_memory_is_retried_with_twice_the_memory_and_a_data_error_is_not(
    tmp_path, slurm
):
    """One workflow run, two jobs: `hog` (a rule declared as the workflow's own, through the names
    common.smk gives drn/pipeline/workflow.py's) needs more than the memory its first attempt asks
    for, and the bicubic evaluation of a source with a corrupt image fails with a data error
    (exit 1)."""
    params = small_demo()
    params["evaluation"].update(scales=[2], models=["drn"], ensemble_models=[])
    params["evaluation"]["datasets"].append("broken")
    params["downscaled"] = {"train_photos_x2": {"of": "train_photos", "scale": 2}}
    params["train"]["init_from"] = {"x2": None}
    params["sources"]["broken"] = {"local": str(tmp_path / "broken")}
    params["resources"]["prepare"]["mem_mb"] = HOG_MB  # the hog's (no prepare job runs)
    workspace = project(tmp_path / "workspace", params)
    with (workspace / "workflow/Snakefile").open("a") as snakefile:
        snakefile.write(HOG_RULE)
    (workspace / "hog.py").write_text(HOG)
    broken = workspace / "data/broken"  # as `drn fetch broken` leaves it
    shutil.copytree(REPO / "tests/data/Set5", broken)
    (broken / "bad.png").write_text("this is not a PNG")
    evaluation = "results/eval/bicubic/x2/broken.json"

    started = time.monotonic()
    done = subprocess.run(
        [BIN / "snakemake", "--profile", "workflow/profiles/slurm", "--slurm-status-command",
         "squeue", "--slurm-init-seconds-before-status-checks", "1",
         "--seconds-between-status-checks", "2", "--latency-wait", "10", "--keep-going",
         "--retries", "2", "hog.txt", evaluation],
        cwd=workspace, env=environment(slurm), capture_output=True, text=True,
    )  # fmt: skip
    out = done.stdout + done.stderr
    took = time.monotonic() - started
    assert done.returncode != 0 and (workspace / "hog.txt").read_text() == "fed\n", out[-4000:]
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", out)
    assert len(submitted) == 5, out[-4000:]  # hog: 2 attempts; the evaluation: 1 + 2 retries

    # out of memory: the kernel killed the hog (not its Snakemake processes, some 350 MB each) in
    # its first attempt's limit; Snakemake asked for twice as much the next time
    hog = read_record(workspace / "results/logs/hog.attempts.jsonl")
    assert [(x["attempt"], x["cause"]) for x in hog] == [(1, "out_of_memory"), (2, "ok")], hog
    assert hog[0]["signal"] == "SIGKILL" and hog[0]["oom_kills"] >= 1
    assert hog[0]["exit_code"] == 137 and hog[0]["retryable"] is True
    assert [x["memory_limit_mb"] for x in hog] == [HOG_MB, 2 * HOG_MB]
    asked = [slurm_job(workspace, x["slurm_job_id"], slurm) for x in hog]
    assert [a["MinMemoryNode"] for a in asked] == [f"{HOG_MB}M", f"{2 * HOG_MB}M"]
    failed_log = Path(hog[0]["scheduler_log"])  # kept: the plugin deletes successful ones only
    assert failed_log.is_relative_to(workspace / "results/logs/slurm/rule_hog")
    assert "oom-kill event" in failed_log.read_text()  # Slurm's word for it

    # a data error: one real attempt; the retries print why and exit at once, on 1 CPU, 5 min
    record = read_record(workspace / "results/logs/evaluate/bicubic_x2_broken.attempts.jsonl")
    assert [(x["attempt"], x["ran"], x["cause"]) for x in record] == [
        (1, True, "data_error"), (2, False, "data_error"), (3, False, "data_error"),
    ]  # fmt: skip
    assert re.match(r"drn: error: data/broken/bad\.png: not a readable image", record[0]["message"])
    why = f"not retried: attempt 1 failed with a data error (exit 1): {record[0]['message']}"
    assert f"{why}; fix it and run again" in out  # the failed job's log, shown by Snakemake
    assert (workspace / "results/logs/evaluate/bicubic_x2_broken.log").read_text() == (
        f"{why}; fix it and run again\n"
    )
    assert all(x["seconds"] == 0.0 for x in record[1:])
    retried = [slurm_job(workspace, x["slurm_job_id"], slurm) for x in record[1:]]
    assert {(r["TimeLimit"], r["NumCPUs"], r["JobState"]) for r in retried} == {
        ("00:05:00", "1", "FAILED")
    }
    assert Path(record[0]["scheduler_log"]).is_relative_to(
        workspace / "results/logs/slurm/rule_evaluate_bicubic/2_broken"
    )
    assert took < 170, took


# --- MLflow in batch logs ----------------------------------------------------------------------


def test_the_demos_batch_logs_have_no_mlflow_progress_bars_and_every_attempt_is_recorded(
    demo_workspace,
):
    """The small demo run with Snakemake, MLflow on (conftest.demo_workspace): each job's log and
    its record of attempts, beside it; MLflow's "Downloading artifacts: 100%|..." bars (of
    mlflow.pytorch.log_model) no longer in the training logs."""
    logs = sorted((demo_workspace / "results/logs").rglob("*.log"))
    trained = [log for log in logs if log.parent.name == "train"]
    plan = build_plan(small_demo())  # a job per segment of each trained run
    runs = {run.name if step == run.iterations else f"{run.name}_step{step}"
            for run in plan.trained_runs() for step in run.segments}  # fmt: skip
    assert {log.stem for log in trained} == runs and len(logs) > len(trained)
    for log in logs:
        assert not re.search(r"(Downloading|Uploading) artifacts", log.read_text()), log
        lines = read_record(record_path(log))  # one attempt (more if a test ran it again)
        assert lines and all(x["cause"] == "ok" and x["exit_code"] == 0 for x in lines), lines
        assert lines[0]["log"] == str(log.relative_to(demo_workspace))
        assert lines[0]["command"].startswith("drn ")
    assert "finished" in trained[0].read_text()
    assert read_record(record_path(trained[0]))[0]["command"] == (
        f"drn train --run {trained[0].stem} --gpus 0 --if-changed restart"
    )
