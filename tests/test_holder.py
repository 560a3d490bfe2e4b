"""One trainer per run directory (drn/engine/holder.py): a second is refused naming the first, a
holder that is gone (killed, its heartbeat stale, its Slurm job ended, its record damaged) is
taken over with a line saying so, racing takers leave one winner, the heartbeat beats; `drn
train` on a run another trains exits 75 and leaves it alone; `drn unlock` removes a stale
Snakemake lock and refuses a live one (drn/pipeline/locks.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import REPO

from drn.cli import main
from drn.core.errors import HeldError
from drn.engine.holder import HOLDER, hold, holder_state
from drn.pipeline.locks import snakemake_lock, unlock_command

HOST = socket.gethostname()
HOLDING = """
import sys
from drn.engine.holder import hold
held = hold(sys.argv[1])
print("held", flush=True)
sys.stdin.readline()
held.release()
print("released", flush=True)
sys.stdin.readline()
"""


def holding(run_dir: Path) -> subprocess.Popen:
    """Another process that holds ``run_dir``: it releases at its first line of input."""
    process = subprocess.Popen([sys.executable, "-c", HOLDING, str(run_dir)], cwd=REPO, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    assert process.stdout.readline() == "held\n"
    return process


def record(run_dir: Path, **fields) -> dict:
    """Write a holder record of another process (by default on another host, beating now)."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    data = {"host": "node7", "pid": 4242, "slurm_job": None, "started": now, "heartbeat": now,
            "command": "drn train --run drn_x3", "token": "0123456789abcdef", **fields}  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / HOLDER).write_text(json.dumps(data))
    return data


def ago(**delta) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat(timespec="seconds")


# --- a live holder, released -------------------------------------------------------------------


def test_a_second_holder_is_refused_naming_the_first_and_holds_once_it_is_released(tmp_path):
    run_dir = tmp_path / "runs/drn_x3"
    first = holding(run_dir)
    with pytest.raises(HeldError) as refused:
        hold(run_dir)
    assert re.fullmatch(
        rf"{run_dir}: trained by pid {first.pid} on {re.escape(HOST)} since "
        r"\d{4}-\d\d-\d\d \d\d:\d\d UTC, heartbeat \d+ s ago; not started "
        r"\(run `drn status` to watch it\)",
        str(refused.value),
    )
    assert refused.value.exit_code == 75
    holder, alive, why = holder_state(run_dir)
    assert alive and holder.pid == first.pid and why == f"pid {first.pid} runs on {HOST}"

    first.stdin.write("\n")
    first.stdin.flush()
    assert first.stdout.readline() == "released\n"
    assert not (run_dir / HOLDER).exists()
    with hold(run_dir) as held:
        assert held.took_over is None and holder_state(run_dir)[0].pid == os.getpid()
    assert not (run_dir / HOLDER).exists()
    first.communicate("\n", timeout=30)


def test_a_live_holder_on_another_host_is_refused_until_its_heartbeat_is_stale(tmp_path):
    record(tmp_path, slurm_job="1234", heartbeat=ago(seconds=20))
    with pytest.raises(HeldError, match=r"trained by pid 4242 on node7 \(Slurm job 1234\) since "
                       r".* UTC, heartbeat 2\d s ago; not started"):  # fmt: skip
        hold(tmp_path, job_state=lambda job: "RUNNING")
    with pytest.raises(HeldError):  # squeue missing or failing: Slurm decides nothing
        hold(tmp_path, job_state=lambda job: None)
    assert json.loads((tmp_path / HOLDER).read_text())["pid"] == 4242  # untouched


# --- gone holders, taken over ------------------------------------------------------------------


def test_a_holder_killed_with_kill_9_is_taken_over_with_a_line_saying_so(tmp_path):
    first = holding(tmp_path)
    first.kill()
    first.wait()
    with hold(tmp_path) as held:
        assert re.fullmatch(
            rf"{tmp_path}: took over from pid {first.pid} on {re.escape(HOST)}, holder since "
            rf".* UTC: pid {first.pid} no longer runs on {re.escape(HOST)}",
            held.took_over,
        )
        assert holder_state(tmp_path)[0].token == held.record.token


def test_a_reused_pid_is_not_the_holder(tmp_path):
    """This very process's pid, with another start time: the holder's process ended, and the
    pid went to another one."""
    record(tmp_path, host=HOST, pid=os.getpid(), pid_start=1)
    assert holder_state(tmp_path)[1:] == (
        False, f"pid {os.getpid()} on {HOST} is another process now (the pid was reused)"
    )  # fmt: skip
    with hold(tmp_path) as held:
        assert held.took_over.endswith("(the pid was reused)")


def test_a_stale_heartbeat_on_another_host_is_taken_over(tmp_path):
    record(tmp_path, heartbeat=ago(minutes=11))
    assert holder_state(tmp_path)[1:] == (
        False, "its heartbeat is 11 min old (stale after 10 min)"
    )  # fmt: skip
    with hold(tmp_path) as held:
        assert held.took_over.startswith(f"{tmp_path}: took over from pid 4242 on node7, ")
        assert held.took_over.endswith(": its heartbeat is 11 min old (stale after 10 min)")


def test_a_holder_whose_slurm_job_ended_is_taken_over_at_once(tmp_path):
    record(tmp_path, slurm_job="1234")  # its heartbeat is fresh
    asked = []
    with hold(tmp_path, job_state=lambda job: asked.append(job) or "COMPLETED") as held:
        assert held.took_over.endswith(": its Slurm job 1234 ended (COMPLETED)")
    assert asked == ["1234"]
    record(tmp_path, slurm_job="1234")
    with hold(tmp_path, job_state=lambda job: "") as held:  # squeue no longer knows it
        assert held.took_over.endswith("ended (Slurm no longer knows it)")


@pytest.mark.parametrize(
    ("content", "what"),
    [('{"host": "node7", "pid": ', "not JSON: "), ("", "not JSON: "),
     ('{"host": "node7"}', "no int 'pid'"), ("[1, 2]", "not a JSON object")],
)  # fmt: skip
def test_a_damaged_record_is_named_and_taken_over(tmp_path, content, what):
    (tmp_path / HOLDER).write_text(content)
    holder, alive, why = holder_state(tmp_path)  # never raises
    assert (holder, alive) == (None, False)
    assert why.startswith(f"{tmp_path / HOLDER}: damaged holder record ({what}")
    with hold(tmp_path) as held:
        assert held.took_over == f"{tmp_path}: took over: {why}"
        assert holder_state(tmp_path)[1]


def racer(run_dir: str, barrier, results, rounds: int) -> None:
    for number in range(rounds):
        barrier.wait(timeout=60)  # the stale record is written
        try:
            held = hold(run_dir)
            results.put((number, "won", os.getpid(), held.took_over))
        except HeldError as error:
            held = None
            results.put((number, "refused", os.getpid(), str(error)))
        barrier.wait(timeout=60)  # every racer has tried
        if held is not None:
            held.release()
        barrier.wait(timeout=60)  # released


def test_racing_takeovers_of_a_stale_record_leave_exactly_one_winner(tmp_path):
    racers, rounds = 4, 200
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(racers + 1), context.Queue()
    processes = [context.Process(target=racer, args=(str(tmp_path), barrier, results, rounds),
                                 daemon=True) for _ in range(racers)]  # fmt: skip
    for process in processes:
        process.start()
    try:
        for number in range(rounds):
            record(tmp_path, heartbeat=ago(hours=1), token=f"stale{number}")
            barrier.wait(timeout=120)
            outcomes = [results.get(timeout=60) for _ in range(racers)]
            holder = holder_state(tmp_path)[0]
            left = sorted(p.name for p in tmp_path.iterdir())
            assert left == [".holder.lock", HOLDER]  # nothing left aside
            barrier.wait(timeout=60)
            barrier.wait(timeout=60)
            winners = [o for o in outcomes if o[1] == "won"]
            assert len(winners) == 1, outcomes
            (_, _, pid, line), refused = winners[0], [o for o in outcomes if o[1] == "refused"]
            assert holder.pid == pid
            # its line, unless another racer removed the stale record just before it held
            assert line is None or (line.endswith("(stale after 10 min)") and "node7" in line)
            assert all(f"trained by pid {pid} on {HOST}" in o[3] for o in refused), outcomes
        for process in processes:
            process.join(timeout=30)
            assert process.exitcode == 0
    finally:
        barrier.abort()
        for process in processes:
            process.kill()


# --- the heartbeat and release -----------------------------------------------------------------


def test_the_heartbeat_advances_and_never_writes_over_a_successors_record(tmp_path):
    with hold(tmp_path, beat_s=0.05) as held:
        first = holder_state(tmp_path)[0].heartbeat
        deadline = time.monotonic() + 10
        while holder_state(tmp_path)[0].heartbeat == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holder_state(tmp_path)[0].heartbeat > first
        assert holder_state(tmp_path)[0].started == held.record.started
        successor = record(tmp_path, host=HOST, pid=os.getpid())  # a successor's, by token
        time.sleep(0.3)
        assert not held.beat()
        assert json.loads((tmp_path / HOLDER).read_text()) == successor
    assert json.loads((tmp_path / HOLDER).read_text()) == successor  # released: not ours


# --- drn train ---------------------------------------------------------------------------------


def test_drn_train_on_a_run_another_trains_exits_75_and_the_first_goes_on(data, tmp_path):
    from test_train import run_drn, tiny_overrides, train_args

    run_dir = tmp_path / "run"
    args = [a for a in train_args(tiny_overrides(data, tmp_path, 30), run_dir) if a != "--no-track"]
    first = run_drn(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = []
    for line in first.stdout:
        output.append(line)
        if line.startswith(f"== {run_dir}: started"):
            first.send_signal(signal.SIGSTOP)  # held mid-start: its heartbeat stops too
            break
    try:
        second = subprocess.run([sys.executable, "-m", "drn", *args], capture_output=True,
                                text=True, timeout=300)  # fmt: skip
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 75, second.stdout + second.stderr
    assert re.fullmatch(
        rf"drn: error: {run_dir}: trained by pid {first.pid} on {re.escape(HOST)} since .* UTC, "
        r"heartbeat \d+ s ago; not started \(run `drn status` to watch it\)\n",
        second.stderr,
    )
    output.append(first.stdout.read())
    assert first.wait(timeout=300) == 0, "".join(output)
    log = (run_dir / "train.log").read_text()
    assert log.count(": started ") == 1 and "finished 30 iterations" in log
    assert (run_dir / "model.pt").is_file() and not (run_dir / HOLDER).exists()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")  # one MLflow run, as if alone
    runs = client.search_runs(client.get_experiment_by_name("drn-repro").experiment_id)
    assert [(r.info.run_name, r.info.status) for r in runs] == [("run", "FINISHED")]


def test_drn_train_takes_over_a_killed_trainers_record_and_says_so_in_train_log(data, tmp_path):
    from test_train import settings, tiny_overrides

    from drn.engine.train import train

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record(tmp_path / "run", host=HOST, pid=gone.pid)
    overrides = tiny_overrides(data, tmp_path, 2)
    assert train(settings(overrides), tmp_path / "run", "cpu", report=False, track=False) == 0
    log = (tmp_path / "run/train.log").read_text().splitlines()
    assert log[0].startswith(f"== {tmp_path / 'run'}: started ")
    assert log[1] == (f"{tmp_path / 'run'}: took over from pid {gone.pid} on {HOST}, holder "
                      f"since {log[1].split(' since ')[1].split(': ')[0]}: pid {gone.pid} no "
                      f"longer runs on {HOST}")  # fmt: skip
    assert not (tmp_path / "run" / HOLDER).exists()


def test_a_run_set_aside_takes_no_record_along_and_its_fresh_directory_is_held(data, tmp_path):
    from test_train import settings, tiny_overrides

    from drn.engine import holder
    from drn.engine.train import train

    overrides = tiny_overrides(data, tmp_path, 2)
    assert train(settings(overrides), tmp_path / "run", "cpu", report=False, track=False) == 0
    held_during = []
    follow = holder.RunHold.follow

    def following(self):  # records the fresh directory's holder right after the set-aside
        follow(self)
        held_during.append(holder_state(tmp_path / "run")[0])

    changed = settings([*overrides, "train.optimizer.lr=5e-4"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(holder.RunHold, "follow", following)
        assert train(changed, tmp_path / "run", "cpu", report=False, track=False,
                     if_changed="restart") == 0  # fmt: skip
    (aside,) = tmp_path.glob("run.replaced-*")
    assert held_during[0].pid == os.getpid()
    assert not (aside / HOLDER).exists() and not (tmp_path / "run" / HOLDER).exists()


# --- drn unlock --------------------------------------------------------------------------------


def snakemake_locked(directory: Path) -> Path:
    (directory / ".snakemake/locks").mkdir(parents=True)
    lock = directory / ".snakemake/locks/0.input.lock"
    lock.write_text(f"{directory}/results/summary.md\n")
    return lock


def test_drn_unlock_removes_a_lock_no_snakemake_process_holds(tmp_path, capsys):
    lock = snakemake_locked(tmp_path / "demo")
    assert snakemake_lock(tmp_path / "demo").stale
    assert main(["unlock", str(tmp_path / "demo")]) == 0
    assert not lock.exists() and snakemake_lock(tmp_path / "demo") is None
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(
        f"{tmp_path / 'demo'}: removed a stale Snakemake lock (.snakemake/locks/0.input.lock, "
    )
    assert main(["unlock", str(tmp_path / "demo")]) == 0  # no lock: nothing to do
    assert capsys.readouterr().out == f"{tmp_path / 'demo'}: no Snakemake lock; nothing to do\n"
    assert unlock_command(tmp_path / "demo", cwd=tmp_path) == "drn unlock demo"


@pytest.mark.parametrize("where", ["cwd", "--directory"])
def test_drn_unlock_refuses_while_a_snakemake_process_works_there(tmp_path, capsys, where):
    lock = snakemake_locked(tmp_path / "demo")
    sleep = [sys.executable, "-c", "import time; time.sleep(60)", "snakemake"]
    if where == "cwd":
        snakemake = subprocess.Popen(sleep, cwd=tmp_path / "demo")
    else:
        snakemake = subprocess.Popen([*sleep, "--directory", "demo"], cwd=tmp_path)
    try:
        assert not snakemake_lock(tmp_path / "demo").stale
        assert main(["unlock", str(tmp_path / "demo")]) == 75
    finally:
        snakemake.kill()
        snakemake.wait()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"drn: error: {tmp_path / 'demo'}: Snakemake process {snakemake.pid} works there ("
    )
    assert err[0].endswith("not unlocked: its lock is live (wait for it to end, or stop it)")
    assert lock.exists()
    assert main(["unlock", str(tmp_path / "demo")]) == 0 and not lock.exists()  # now stale


def test_after_a_snakemake_killed_with_its_process_group_drn_unlock_lets_the_next_one_run(
    tmp_path,
):
    """What `make demo` does after a killed demo: the killed Snakemake's lock stops the next
    one; `drn unlock` removes it, and the next one (rerun-incomplete) finishes the work."""
    (tmp_path / "Snakefile").write_text(
        'rule all:\n    input: "done.txt"\n\n'
        'rule slow:\n    output: "done.txt"\n'
        '    shell: "touch started; sleep ${{NAP:-0}}; touch {output}"\n'
    )
    snakemake = [Path(sys.executable).parent / "snakemake", "--cores", "1", "--rerun-incomplete"]
    env = {**os.environ, "NAP": "60"}
    first = subprocess.Popen(snakemake, cwd=tmp_path, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            assert first.poll() is None
            time.sleep(0.1)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # as a Ctrl-C'd make's group, or a lost session
        first.wait()
    assert snakemake_lock(tmp_path).stale
    again = subprocess.run(snakemake, cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode != 0 and "Directory cannot be locked" in again.stdout + again.stderr
    assert main(["unlock", str(tmp_path)]) == 0
    done = subprocess.run(snakemake, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "done.txt").exists() and snakemake_lock(tmp_path) is None
