"""drn doctor (drn/doctor/): each check against fakes of what Slurm, the file systems and the
network say (fast), then the whole command against a real single-node Slurm (slow): a correct
setup passes, and a missing partition, an impossible GPU request, a runtime above MaxTime, an
unreachable tracking server and sacct without accounting each fail with their fix."""

from __future__ import annotations

import copy
import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import REPO
from slurm_cluster import running_cluster
from test_mps import BOTH, fake_tools

from drn.cli import main
from drn.doctor import checklist
from drn.doctor.attempts import check_attempts, last_attempts
from drn.doctor.checklist import check_plan, exit_code, render
from drn.doctor.environment import (
    PROBE_CODE,
    check_mps_here,
    check_torch,
    check_tracking,
    probe,
    shared_path,
)
from drn.doctor.profile import Profile, Request, gres_gpus, load_profile, requests
from drn.doctor.result import FAIL, OK, SKIP, WARN, Answer, Result, command
from drn.doctor.slurm import (
    Cluster,
    check_account,
    check_partition,
    check_request,
    check_status_command,
    check_time_limit,
    node_gpus,
    parse_record,
    read_cluster,
    slurm_checks,
    slurm_minutes,
)
from drn.doctor.storage import check_disk, check_sources, disk_needs, filesystem
from drn.pipeline.params import load_params
from drn.pipeline.plan import build_plan

slow = pytest.mark.slow

PARTITIONS = """\
PartitionName=gpu AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL Default=YES MaxTime=1-00:00:00 Nodes=g[1-2] State=UP MaxMemPerNode=UNLIMITED
PartitionName=short AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL Default=NO MaxTime=02:00:00 Nodes=c1 State=UP
"""  # noqa: E501
NODES = """\
NodeName=g1 Arch=x86_64 CPUTot=32 CPUEfctv=32 Gres=gpu:a100:4(S:0-1) NodeAddr=10.0.0.1 NodeHostName=g1 OS=Linux 5.14.0 #1 SMP PREEMPT_DYNAMIC RealMemory=256000 State=IDLE Partitions=gpu
NodeName=g2 Arch=x86_64 CPUTot=32 CPUEfctv=32 Gres=gpu:v100:2 NodeAddr=10.0.0.2 NodeHostName=g2 OS=Linux 5.14.0 #1 SMP RealMemory=128000 State=MIXED Partitions=gpu
NodeName=c1 Arch=x86_64 CPUTot=16 Gres=(null) NodeAddr=10.0.0.3 NodeHostName=c1 OS=Linux RealMemory=64000 State=IDLE Partitions=short
"""  # noqa: E501
CONFIG = """\
Configuration data as of 2025-01-01T00:00:00
AccountingStorageType   = accounting_storage/slurmdbd
MinJobAge               = 300 sec
SelectType              = select/cons_tres
SLURM_VERSION           = 23.02.7
"""


class FakeSlurm:
    """Answers commands by the first of ``answers`` whose key starts their command line:
    (exit code, stdout) or "timeout"; anything else is a command that is not installed."""

    def __init__(self, **extra):
        self.answers = {k.replace("_", " "): v for k, v in extra.items()}  # before the defaults
        self.answers |= {
            "sinfo": (0, "gpu*\nshort\n"),
            "scontrol -a -o show partition": (0, PARTITIONS),
            "scontrol -a -o show node": (0, NODES),
            "scontrol show config": (0, CONFIG),
            "sacctmgr": (0, "proj\nother\n"),
            "sbatch --test-only": (0, ""),
            "sacct": (0, ""),
            "squeue": (0, ""),
        } | self.answers
        self.calls: list[list[str]] = []

    def __call__(self, args):
        self.calls.append(list(args))
        line = " ".join(args)
        for key, answer in self.answers.items():
            if line.startswith(key):
                if answer == "timeout":
                    return Answer(tuple(args), None, timed_out=True, timeout=10)
                code, out = answer
                return Answer(tuple(args), code, out if code == 0 else "", "" if code == 0 else out)
        return Answer(tuple(args), None, missing=True)


def cluster() -> Cluster:
    found, result = read_cluster(FakeSlurm())
    assert result.status == OK, result
    return found


def request(**changes) -> Request:
    values = dict(kind="train", gpus=1, gpu_model=None, gres=None, cpus=8, cpus_per_gpu=8,
                  mem_mb=64000, runtime=1440, partition=None, account=None)  # fmt: skip
    return Request(**{**values, **changes})


def paper_params() -> dict:
    return load_params(REPO / "params.yaml")


# --- parsing what Slurm says --------------------------------------------------------------------


def test_scontrol_records_keep_values_with_spaces():
    record = parse_record(NODES.splitlines()[0])
    assert record["OS"] == "Linux 5.14.0 #1 SMP PREEMPT_DYNAMIC"
    assert record["RealMemory"] == "256000" and record["Gres"] == "gpu:a100:4(S:0-1)"


@pytest.mark.parametrize(
    "text, minutes",
    [("UNLIMITED", None), ("INFINITE", None), ("60", 60), ("30:00", 30), ("02:00:00", 120),
     ("1-00:00:00", 1440), ("2-12", 3600), ("1-01:30", 1530)],
)  # fmt: skip
def test_slurm_times_in_minutes(text, minutes):
    assert slurm_minutes(text) == minutes


def test_gpus_of_a_node_and_of_a_gres_request():
    assert node_gpus("gpu:a100:4(S:0,1),gpu:v100:2,shard:8") == {"a100": 4, "v100": 2}
    assert node_gpus("gpu:2") == {None: 2}
    assert node_gpus("(null)") == {}
    assert gres_gpus("gpu:a100:2") == (2, "a100")
    assert gres_gpus("gpu:3") == (3, None)
    assert gres_gpus("gpu") == (1, None)
    assert gres_gpus("shard:2") == (0, None)


def test_a_hanging_command_is_a_finding_not_a_hang(tmp_path):
    script = tmp_path / "sacct"
    script.write_text("#!/bin/sh\nsleep 30 &\nsleep 30\n")  # and a child holding the pipes
    script.chmod(0o755)
    started = time.monotonic()
    answer = command([str(script)], timeout=0.5)
    assert time.monotonic() - started < 5
    assert answer.timed_out and not answer.ok and "did not answer within 0.5 s" in answer.why()
    missing = command(["drn-no-such-command"])
    assert missing.missing and "command not found" in missing.why()


def test_the_profile_and_the_command_line_options():
    profile_dir = REPO / "workflow/profiles/slurm"
    profile = load_profile(profile_dir, ["slurm_partition=gpu", "slurm_account='proj'"])
    assert profile.executor == "slurm" and profile.status_command == "sacct"
    assert profile.resources == {"slurm_partition": "gpu", "slurm_account": "proj"}
    assert profile.retries == 3
    assert load_profile(profile_dir, [], "squeue").status_command == "squeue"
    local = load_profile(REPO / "workflow/profiles/local")
    assert local.executor == "local"


def test_set_resources_of_a_rule_override_the_defaults(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "executor": "slurm", "default-resources": ["slurm_partition=gpu"],
        "set-resources": {"prepare": {"slurm_partition": "short"}},
    }))  # fmt: skip
    profile = load_profile(tmp_path)
    kinds = {r.kind: r for r in requests(paper_params(), profile)}
    assert kinds["prepare"].partition == "short" and kinds["train"].partition == "gpu"


def test_requests_are_the_workflows():
    params = paper_params()
    params["resources"]["train"].update(gpu=2, gpu_model="a100")
    params["resources"]["evaluate"]["gpu"] = 0
    kinds = {r.kind: r for r in requests(params, Profile(None, "slurm"))}
    assert kinds["train"].sbatch_options()[2:] == ["--gpus=a100:2", "--cpus-per-gpu=8"]
    assert kinds["train"].cpus == 16
    # gpu: 0 makes a GPU job a CPU job with cpus_per_gpu CPUs, as drn.pipeline.workflow does
    assert kinds["evaluate"].sbatch_options()[2:] == ["--ntasks=1", "--cpus-per-task=4"]
    assert kinds["fetch"].sbatch_options()[2:] == ["--ntasks=1", "--cpus-per-task=1"]


# --- the Slurm checks ----------------------------------------------------------------------------


def test_no_slurm_here_skips_the_slurm_checks():
    params = paper_params()
    results, found = slurm_checks(params, Profile(None, "local"), FakeSlurm(), "/bin/x")
    assert found is None and [r.status for r in results] == [SKIP]
    assert "no Slurm here" in results[0].found
    results, _ = slurm_checks(params, Profile(None, "slurm"), FakeSlurm(), None)
    assert results[0].status == SKIP and "no Slurm here" in results[0].found


def test_an_unreachable_controller_fails_with_its_fix():
    fake = FakeSlurm(sinfo=(1, "sinfo: error: Unable to contact slurm controller"))
    found, result = read_cluster(fake)
    assert found is None and result.status == FAIL
    assert "Unable to contact" in result.found and "login node" in result.fix


def test_a_missing_partition_fails_naming_those_there_are():
    result = check_partition(cluster(), Profile(Path("p"), "slurm", {"slurm_partition": "a100"}))
    assert result.status == FAIL and "'a100' does not exist" in result.found
    assert "gpu (default), short" in result.found
    assert "slurm_partition=NAME" in result.fix and "gpu, short" in result.fix
    default = check_partition(cluster(), Profile(Path("p"), "slurm"))
    assert default.status == OK and "gpu (none given: the default)" in default.found


def test_a_missing_partition_of_one_rule_fails_its_jobs_checks():
    profile = Profile(Path("p"), "slurm", {"slurm_partition": "gpu"},
                      {"prepare": {"slurm_partition": "bigmem"}})  # fmt: skip
    kinds = {r.kind: r for r in requests(paper_params(), profile)}
    result = check_request(cluster(), kinds["prepare"], FakeSlurm(), "gpu")
    assert result.status == FAIL and "'bigmem' of the profile's set-resources" in result.found
    assert check_time_limit(cluster(), kinds["prepare"], 3, "gpu").status == FAIL
    given = Profile(Path("p"), "slurm", {"slurm_partition": "a100"})
    train = requests(paper_params(), given)[0]
    assert check_request(cluster(), train, FakeSlurm(), "a100").status == SKIP


def test_a_partition_closed_to_the_users_groups_fails():
    found = cluster()
    found.partitions["gpu"]["AllowGroups"] = "no-such-group-here"
    result = check_partition(found, Profile(Path("p"), "slurm"))
    assert result.status == FAIL and "takes the groups no-such-group-here" in result.found


def test_the_account_is_one_of_the_users():
    profile = Profile(Path("p"), "slurm", {"slurm_account": "nope"})
    result = check_account(cluster(), profile, FakeSlurm())
    assert result.status == FAIL and "nope is not one of" in result.found
    assert "slurm_account=other" in result.fix
    given = Profile(Path("p"), "slurm", {"slurm_account": "proj"})
    assert check_account(cluster(), given, FakeSlurm()).status == OK
    none = check_account(cluster(), Profile(Path("p"), "slurm"), FakeSlurm())
    assert none.status == WARN and "slurm_account=other" in none.fix
    # the plugin refuses an account it cannot check: neither sacctmgr nor sshare answers
    broken = FakeSlurm(sacctmgr=(1, "no accounting"), sshare=(1, "no accounting"))
    result = check_account(cluster(), given, broken)
    assert result.status == FAIL and "refuses to submit" in result.found


def test_a_gpu_request_no_node_has_fails_with_what_the_nodes_have():
    fake = FakeSlurm()
    result = check_request(cluster(), request(gpus=8), fake)
    assert result.status == FAIL
    assert "g1 lacks 8 GPUs (has 4)" in result.found and "g2 lacks 8 GPUs (has 2)" in result.found
    assert "resources.train.{gpu, gpu_model, cpus_per_gpu, mem_mb}" in result.fix
    model = check_request(cluster(), request(gpu_model="h100"), fake)
    assert model.status == FAIL and "1 h100 GPU (has 0)" in model.found
    assert not any(c[:2] == ["sbatch", "--test-only"] for c in fake.calls)


def test_a_request_that_fits_is_tried_with_sbatch_test_only():
    fake = FakeSlurm()
    result = check_request(cluster(), request(gpus=2, gpu_model="v100", cpus=16), fake)
    assert result.status == OK and "fits 1 of 2 node(s) of gpu (e.g. g2:" in result.found
    tried = [c for c in fake.calls if c[:2] == ["sbatch", "--test-only"]]
    assert "--gpus=v100:2" in tried[0] and "--time=1440" in tried[0]
    refused = FakeSlurm(sbatch=(1, "sbatch: error: Batch job submission failed: Invalid qos"))
    result = check_request(cluster(), request(), refused)
    assert result.status == FAIL and "Invalid qos" in result.found


def test_a_cpu_job_too_big_for_the_nodes_names_a_partition_that_fits():
    found = cluster()
    big = request(kind="prepare", gpus=0, cpus=24, cpus_per_gpu=None, partition="short", mem_mb=1)
    result = check_request(found, big, FakeSlurm())
    assert result.status == FAIL and "c1 lacks 24 CPUs (has 16)" in result.found
    assert "use a partition whose nodes fit: gpu" in result.fix


def test_gpus_on_a_cluster_without_cons_tres_fail():
    found = cluster()
    found.config["SelectType"] = "select/cons_res"
    result = check_request(found, request(), FakeSlurm())
    assert result.status == FAIL and "select/cons_res" in result.found and "gres" in result.found


def test_a_runtime_above_the_partitions_max_time_fails():
    result = check_time_limit(cluster(), request(runtime=180, partition="short"), 3)
    assert result.status == FAIL and "above partition short's MaxTime 02:00:00" in result.found
    assert "resources.train.runtime to at most 120" in result.fix
    assert "retries, now 3" in result.fix and "longer MaxTime: gpu" in result.fix
    assert check_time_limit(cluster(), request(), 3).status == OK


def test_sacct_that_hangs_fails_with_the_squeue_line():
    profile = Profile(Path("prof"), "slurm", status_command="sacct")
    result = check_status_command(cluster(), profile, FakeSlurm(sacct="timeout"))
    assert result.status == FAIL and "did not answer within 10 s" in result.found
    assert "`--slurm-status-command squeue`" in result.fix and "MinJobAge" in result.fix
    assert "slurm-status-command: squeue` to prof/config.yaml" in result.fix
    squeue = Profile(Path("prof"), "slurm", status_command="squeue")
    short = check_status_command(cluster(), squeue, FakeSlurm())
    assert short.status == WARN and "MinJobAge is 300 s" in short.found


# --- environment, tracking, data, disk, plan ----------------------------------------------------

MOUNTS = """\
/dev/sda1 / ext4 rw 0 0
tmpfs /tmp tmpfs rw 0 0
server:/export/home /home nfs4 rw 0 0
lustre@o2ib:/fs /lustre lustre rw 0 0
"""


def fake_fs(path):
    return filesystem(path, MOUNTS)


def test_file_systems_from_the_mount_table():
    assert filesystem("/home/me/project/x", MOUNTS) == ("/home", "nfs4")
    assert filesystem("/lustre/a/b", MOUNTS) == ("/lustre", "lustre")
    assert filesystem("/opt/x", MOUNTS) == ("/", "ext4")


def test_an_environment_the_nodes_cannot_see_is_a_warning():
    remote = cluster()
    venv = shared_path("env.python", "venv", Path("/tmp/venv"), remote, True, fake_fs)
    assert venv.status == WARN and "node-local" in venv.found and "--probe" in venv.fix
    local = shared_path("env.python", "venv", Path("/opt/venv"), remote, True, fake_fs)
    assert local.status == WARN and "local disk" in local.found
    shared = shared_path("env.python", "venv", Path("/home/me/.venv"), remote, True, fake_fs)
    assert shared.status == OK and "shared" in shared.found
    workstation = shared_path("env.python", "venv", Path("/tmp/v"), None, False, fake_fs)
    assert workstation.status == OK


def test_a_cpu_torch_for_gpu_jobs_fails():
    result = check_torch([request()], ("2.13.0+cpu", None))
    assert result.status == FAIL and "CPU build" in result.found and "CUDA" in result.fix
    assert check_torch([request()], ("2.13.0", "12.8")).status == OK
    assert check_torch([request(gpus=0)], ("2.13.0+cpu", None)).status == OK
    assert check_torch([], (None, None)).status == FAIL


def test_mps_is_an_informational_line_here(tmp_path, monkeypatch):
    """env.mps says whether a pack's runs can use CUDA MPS where the jobs run, else why they
    time-slice: ok either way (never a failure), skipped where MPS is off or not asked."""
    fake_tools(tmp_path / "bin", monkeypatch, *BOTH)  # the whole PATH: no real NVIDIA tool
    here = check_mps_here("auto", 1, False, None)
    assert here == Result("env.mps", OK, "here (jobs run on this machine): CUDA MPS available: "
                          "a pack's runs (drn train --run A --run B) share the GPU through a "
                          "private MPS daemon")  # fmt: skip
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    hidden = check_mps_here("auto", 1, False, None)
    assert hidden.status == OK and exit_code([hidden]) == 0 and not hidden.fix
    reason = "CUDA_VISIBLE_DEVICES='' hides every GPU"
    assert hidden.found == f"here (jobs run on this machine): no CUDA MPS ({reason}): a pack's " \
        "runs share the GPU by time slicing"  # fmt: skip
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    (tmp_path / "bin/nvidia-cuda-mps-control").unlink()
    missing = check_mps_here("auto", 1, False, None)
    assert missing.status == OK and "no CUDA MPS (nvidia-cuda-mps-control is not on PATH)" in \
        missing.found  # fmt: skip
    assert check_mps_here(False, 1, False, None).status == SKIP  # mps: off, as YAML reads it
    cpu = check_mps_here("auto", 0, False, None)
    assert cpu.status == SKIP and "ask for no GPUs" in cpu.found and "not on PATH" in cpu.found
    nodes = check_mps_here("auto", 1, True, cluster())  # other hosts: --probe asks one
    assert nodes.status == SKIP and "drn doctor --probe" in nodes.found


def probe_runner(logs: Path, output: str):
    """A Slurm whose probe job 42 ran on node g1 and printed ``output``."""

    def run(args):
        if args[0] == "sbatch":
            (logs / "probe-42.out").write_text(output)
            return Answer(tuple(args), 0, "42\n")
        if args[:3] == ["scontrol", "-o", "show"]:
            return Answer(tuple(args), 0, "JobId=42 JobState=COMPLETED NodeList=g1 ExitCode=0:0")
        return Answer(tuple(args), None, missing=True)

    return run


def test_the_probe_asks_its_node_about_mps(tmp_path, monkeypatch):
    torch_line = "drn-probe 2.9.0 True 1 /venv/bin/python\n"
    results = probe(request(), tmp_path, probe_runner(tmp_path, torch_line + "drn-mps "
                    "unavailable nvidia-cuda-mps-control is not on PATH\n"), poll_s=0)  # fmt: skip
    assert [r.name for r in results] == ["env.probe", "env.mps"] and results[0].status == OK
    found = "node g1: no CUDA MPS (nvidia-cuda-mps-control is not on PATH): a pack's runs share "
    assert results[1] == Result("env.mps", OK, found + "the GPU by time slicing")
    run = probe_runner(tmp_path, torch_line + "drn-mps available\n")
    available = probe(request(), tmp_path, run, poll_s=0)[1]
    assert available.status == OK and available.found.startswith("node g1: CUDA MPS available")
    assert probe(request(), tmp_path, run, poll_s=0, mps_mode="off")[1].status == SKIP
    unsaid = probe(request(), tmp_path, probe_runner(tmp_path, torch_line), poll_s=0)[1]
    assert unsaid.status == SKIP and "the probe job did not say" in unsaid.found
    no_gpu = probe(request(), tmp_path, probe_runner(tmp_path, "drn-probe 2.9.0 False 0 x\n"
                   "drn-mps available\n"), poll_s=0)  # fmt: skip
    assert no_gpu[0].status == FAIL and no_gpu[1].status == SKIP and "env.probe" in no_gpu[1].found
    # the node side: the probe job's code, run here with the fake tools
    fake_tools(tmp_path / "bin", monkeypatch, "nvidia-smi")
    done = subprocess.run([sys.executable, "-c", PROBE_CODE], capture_output=True, text=True,
                          cwd=REPO, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("drn-probe ")
    assert done.stdout.splitlines()[1] == "drn-mps unavailable nvidia-cuda-mps-control is not "\
        "on PATH"  # fmt: skip
    (tmp_path / "bin/nvidia-cuda-mps-control").write_text("#!/bin/sh\n")
    (tmp_path / "bin/nvidia-cuda-mps-control").chmod(0o755)
    done = subprocess.run([sys.executable, "-c", PROBE_CODE], capture_output=True, text=True,
                          cwd=REPO, timeout=120)  # fmt: skip
    assert done.stdout.splitlines()[1] == "drn-mps available", done.stderr


def test_sqlite_on_a_network_file_system_fails_with_the_server_recipe(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = paper_params()
    params["tracking"]["uri"] = "sqlite:////lustre/project/mlflow.db"
    result = check_tracking(params, True, cluster(), fake_fs)
    assert result.status == FAIL and "lustre" in result.found and "mlflow server" in result.fix
    params["tracking"]["uri"] = "sqlite:////home/me/mlflow.db"
    assert check_tracking(params, True, cluster(), fake_fs).status == FAIL  # nfs4
    params["tracking"]["uri"] = "sqlite:///mlflow.db"
    assert check_tracking(params, False, None, fake_fs).status == OK


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_tracking_server_must_answer(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = paper_params()
    params["tracking"]["uri"] = f"http://127.0.0.1:{free_port()}"
    result = check_tracking(params, False, None)
    assert result.status == FAIL and "cannot be reached" in result.found
    assert "mlflow server --host" in result.fix

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        params["tracking"]["uri"] = f"http://127.0.0.1:{server.server_port}"
        assert check_tracking(params, False, None).status == OK
        # answered here, but a compute node's 127.0.0.1 is the node itself
        remote = check_tracking(params, True, cluster())
        assert remote.status == FAIL and "node itself" in remote.found
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
        assert check_tracking(params, False, None).status == FAIL  # the variable wins
    finally:
        server.shutdown()


def test_sources_present_fetchable_or_the_key_to_set(tmp_path):
    params = paper_params()
    params["paths"]["data"] = str(tmp_path)
    shutil.copytree(REPO / "tests/data/Set5", tmp_path / "Set5")
    results = {r.name: r for r in check_sources(params, build_plan(params))}
    assert results["data.Set5"].status == OK and "present" in results["data.Set5"].found
    assert results["data.DIV2K_train_HR"].status == OK
    assert "not checked: --online" in results["data.DIV2K_train_HR"].found
    manga = results["data.Manga109"]
    assert manga.status == FAIL and "set sources.Manga109.local" in manga.fix

    def offline(url):
        return None, None, "Name or service not known"

    online = check_sources(params, build_plan(params), True, offline)
    div2k = next(r for r in online if r.name == "data.DIV2K_train_HR")
    assert div2k.status == FAIL and "Name or service not known" in div2k.found
    assert "set sources.DIV2K_train_HR to {local: /path/to/DIV2K_train_HR.zip" in div2k.fix


def test_the_disk_needs_of_the_paper_with_their_numbers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = paper_params()
    params["sources"]["Manga109"] = {"local": str(REPO / "tests/data/Set5")}
    plan = build_plan(params)
    needs = disk_needs(params, plan, weights=lambda p, v, s: 1_000_000)
    by_what = {n.what: n for n in needs}
    assert by_what["DIV2K_train_HR.zip"].bytes == 3_530_603_713  # exact: its sha256 is known
    assert by_what["benchmark.tar"].approximate.startswith("EDSR's benchmark.tar")
    cache = by_what["decoded cache x2"]
    assert cache.bytes == int(800 * 2040 * 1360 * 3 * 1.25)  # HR and LR, uint8 RGB
    assert "800 DIV2K images" in cache.approximate
    checkpoints = [n.bytes for n in needs if n.kind == "checkpoints"]
    # model, best, last with Adam's moments, and one kept at each milestone; milestones: none
    assert checkpoints == [(5 + len(r.milestones)) * 1_000_000 for r in plan.trained_runs()]
    assert len(checkpoints) == 11 and sum(checkpoints) == (11 * 5 + 3) * 1_000_000
    results = check_disk(needs, free=lambda path: 10**9)
    assert [r.status for r in results] == [FAIL]
    assert "1.0 GB free" in results[0].found and "decoded cache" in results[0].found
    assert "move paths.data" in results[0].fix
    assert check_disk(needs, free=lambda path: 10**12)[0].status == OK


def test_the_plan_without_a_cost_projection_shows_iterations():
    params = paper_params()
    result = check_plan(params, build_plan(params), None, "no GPU-hour projection here")
    assert result.status == OK and "iterations" in result.found
    assert "no GPU-hour projection here" in result.found


def test_retries_that_cannot_cover_a_training_are_a_warning():
    params = paper_params()

    cost = SimpleNamespace(runs=[SimpleNamespace(run="drn_x2", hours=30.0)])
    result = check_attempts(params, cost, Profile(Path("prof"), "slurm", retries=0))
    assert result.status == WARN and "about 2 attempt(s)" in result.found
    assert "retries: 1 or more in prof/config.yaml" in result.fix


def test_the_text_has_a_fix_under_each_miss():
    results = [Result("a", OK, "fine"), Result("b", FAIL, "broken", "mend it")]
    lines = render(results, "params.yaml", Profile(None, "local"))
    assert lines[2].startswith("FAIL  b  broken") and lines[3].endswith("fix: mend it")
    assert lines[-1] == "2 checks: 1 ok, 0 warnings, 1 failed, 0 skipped"
    assert exit_code(results) == 1 and exit_code(results[:1]) == 0


def test_drn_doctor_json_parses_on_a_workstation(tmp_path, monkeypatch, capsys):
    params = yaml.safe_load((REPO / "demo/params.yaml").read_text())
    params["sources"]["Set5"] = {"local": str(REPO / "tests/data/Set5")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(checklist, "plan_cost", lambda params, plan: (None, "no projection"))
    code = main(["doctor", "--profile", str(REPO / "workflow/profiles/local"), "--json"])
    results = json.loads(capsys.readouterr().out)
    assert code == 0, results
    assert {"name", "status", "found", "fix"} <= set(results[0])
    assert results[0]["status"] == SKIP and "no Slurm here" in results[0]["found"]
    mps = next(r for r in results if r["name"] == "env.mps")  # the demo trains on CPUs
    assert mps["status"] == SKIP and "train jobs ask for no GPUs" in mps["found"]
    assert "here (jobs run on this machine): " in mps["found"]


def test_drn_doctor_says_whether_packs_can_use_mps_here(tmp_path, monkeypatch, capsys):
    params = yaml.safe_load((REPO / "demo/params.yaml").read_text())
    params["sources"]["Set5"] = {"local": str(REPO / "tests/data/Set5")}
    params["resources"]["train"]["gpu"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(checklist, "plan_cost", lambda params, plan: (None, "no projection"))
    fake_tools(tmp_path / "bin", monkeypatch, *BOTH)
    main(["doctor", "--profile", str(REPO / "workflow/profiles/local")])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if " env.mps " in x)
    assert line.startswith("ok    env.mps") and "here (jobs run on this machine): CUDA MPS " \
        "available" in line, out  # fmt: skip
    (tmp_path / "bin/nvidia-cuda-mps-control").unlink()
    main(["doctor", "--profile", str(REPO / "workflow/profiles/local")])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if " env.mps " in x)
    assert line.startswith("ok    env.mps") and "no CUDA MPS (nvidia-cuda-mps-control is not " \
        "on PATH): a pack's runs share the GPU by time slicing" in line, out  # fmt: skip


# --- drn doctor --last -------------------------------------------------------------------------


def test_last_lists_the_jobs_whose_last_attempt_failed(tmp_path, monkeypatch, capsys):
    params = paper_params()
    logs = tmp_path / "results" / "logs"
    (logs / "train").mkdir(parents=True)
    (logs / "evaluate").mkdir()
    records = [
        {"attempt": 1, "cause": "time limit", "exit_code": 143, "message": "stopped by SIGTERM"},
        "not json at all {",
        {"attempt": 2, "cause": "out of memory", "exit_code": 137, "message": "CUDA OOM",
         "log": "results/logs/train/drn_x2.log"},
    ]  # fmt: skip
    (logs / "train/drn_x2.attempts.jsonl").write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"
    )
    # a record grows over every run of the workflow: its last line is the last attempt
    (logs / "train/drn_x3.attempts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"attempt": 1, "cause": "stopped", "exit_code": 143},
        {"attempt": 2, "cause": "data_error", "exit_code": 1},
        {"attempt": 1, "cause": "ok", "exit_code": 0},
    ]))  # fmt: skip
    (logs / "train/drn_x4.attempts.jsonl").write_text(
        json.dumps({"attempt": 1, "cause": "running", "exit_code": None}) + "\n"
    )
    (logs / "evaluate/bicubic_x2_Set5.attempts.jsonl").write_text(json.dumps([1, 2]) + "\n")
    attempts = last_attempts(tmp_path / "results")
    assert [(a.job, a.attempt, a.failed, a.running) for a in attempts] == [
        ("train/drn_x2", 2, True, False), ("train/drn_x3", 1, False, False),
        ("train/drn_x4", 1, False, True),
    ]  # fmt: skip
    params["paths"]["results"] = "results"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    assert main(["doctor", "--last"]) == 1
    out = capsys.readouterr().out
    assert "train/drn_x2: attempt 2 failed (cause out of memory, exit 137): CUDA OOM" in out
    assert "log: results/logs/train/drn_x2.log" in out and "drn_x3" not in out
    assert "1 whose last attempt is still running" in out and "train/drn_x4: attempt 1" in out
    assert main(["doctor", "--last", "--json"]) == 1
    assert [a["job"] for a in json.loads(capsys.readouterr().out)] == ["train/drn_x2"]


# --- against a real single-node Slurm ------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """One cluster for the module; its partition's MaxTime is 60 minutes."""
    with running_cluster(tmp_path_factory.mktemp("slurm"), max_time="60") as env:
        yield env


@pytest.fixture
def workspace(tmp_path, slurm, monkeypatch):
    """A project with the small demo's settings (CPU jobs: the test cluster has no GPUs) and a
    Slurm profile that follows jobs with squeue (the test cluster has no accounting)."""
    from pipeline import small_demo

    params = small_demo(tracking=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    profile["slurm-status-command"] = "squeue"
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile/config.yaml").write_text(yaml.safe_dump(profile))
    for key in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(key, slurm[key])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_doctor(capsys, *args, params=None):
    if params is not None:
        Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    code = main(["doctor", *args])
    return code, capsys.readouterr().out


def changed(edit):
    params = yaml.safe_load(Path("params.yaml").read_text())
    edit(params)
    return copy.deepcopy(params)


def statuses(out: str) -> dict[str, str]:
    """{check: status} of doctor's text output."""
    found = {}
    for line in out.splitlines()[1:-1]:
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("ok", "WARN", "FAIL", "skip"):
            found[parts[1]] = parts[0].lower()
    return found


@slow
def test_a_correct_setup_passes_on_a_real_cluster(workspace, capsys):
    code, out = run_doctor(capsys, "--profile", "profile", "--json")
    results = {r["name"]: r for r in json.loads(out)}
    assert code == 0, out
    assert all(r["status"] in (OK, SKIP) for r in results.values()), out
    for kind in ("train", "evaluate", "prepare", "fetch"):
        assert "sbatch --test-only accepts" in results[f"slurm.resources.{kind}"]["found"]
        assert "within debug's MaxTime (01:00:00)" in results[f"slurm.time.{kind}"]["found"]
    assert "squeue (the profile's) answers; MinJobAge is 600 s" in results["slurm.status"]["found"]
    assert "the cluster's only node is this host" in results["env.python"]["found"]


@slow
def test_a_pack_job_too_big_for_a_node_fails_before_it_pends_forever(workspace, capsys):
    """resources.train.pack: 2 adds a pack job (train's request and its second run's CPUs and
    memory), checked as the other kinds are: at 2 x 1 CPU but 2000 + 16000 MB, no node of the
    tests' cluster (8000 MB) could ever start it."""
    params = changed(lambda p: p["resources"]["train"].update(
        pack=2, cpus_per_packed_run=1, mem_mb_per_packed_run=16000))  # fmt: skip
    code, out = run_doctor(capsys, "--profile", "profile", params=params)
    assert code == 1 and statuses(out)["slurm.resources.pack"] == "fail", out
    assert statuses(out)["slurm.resources.train"] == "ok"
    assert "no node of partition debug can run a pack job" in out and "18000 MB" in out, out


@slow
def test_a_missing_partition_fails_with_its_fix(workspace, capsys):
    code, out = run_doctor(capsys, "--profile", "profile", "--default-resources",
                           "slurm_partition=gpu")  # fmt: skip
    assert code == 1 and statuses(out)["slurm.partition"] == "fail"
    assert "partition 'gpu' does not exist (the cluster has debug (default))" in out
    assert "fix: choose one of debug in profile/config.yaml" in out


@slow
def test_an_impossible_gpu_request_fails_with_its_fix(workspace, capsys):
    params = changed(lambda p: p["resources"]["train"].update(gpu=8, gpu_model="a100"))
    code, out = run_doctor(capsys, "--profile", "profile", params=params)
    assert code == 1 and statuses(out)["slurm.resources.train"] == "fail"
    assert "no node of partition debug can run a train job (8 GPUs (a100)" in out
    assert "lacks 8 a100 GPUs (has 0)" in out
    assert "fix: ask for what a node of debug has (2 CPUs, 8000 MB, no GPUs)" in out


@slow
def test_a_runtime_above_max_time_fails_with_its_fix(workspace, capsys):
    params = changed(lambda p: p["resources"]["train"].update(runtime=120))
    code, out = run_doctor(capsys, "--profile", "profile", params=params)
    assert code == 1 and statuses(out)["slurm.time.train"] == "fail"
    assert "runtime 120 min is above partition debug's MaxTime 01:00:00 (60 min)" in out
    assert "fix: set resources.train.runtime to at most 60 in params.yaml" in out


@slow
def test_an_unreachable_tracking_server_fails_with_its_fix(workspace, capsys):
    uri = f"http://127.0.0.1:{free_port()}"
    params = changed(lambda p: p["tracking"].update(uri=uri))
    code, out = run_doctor(capsys, "--profile", "profile", params=params)
    assert code == 1 and statuses(out)["tracking"] == "fail"
    assert f"tracking.uri {uri} cannot be reached" in out and "fix: start it: " in out
    assert [name for name, s in statuses(out).items() if s == "fail"] == ["tracking"]


@slow
def test_sacct_without_accounting_fails_with_the_squeue_line(workspace, capsys):
    profile = REPO / "workflow/profiles/slurm"  # the repository's: sacct
    code, out = run_doctor(capsys, "--profile", str(profile))
    assert code == 1 and statuses(out)["slurm.status"] == "fail"
    assert "Slurm accounting storage is disabled" in out
    assert "pass `--slurm-status-command squeue` to snakemake" in out


@slow
def test_the_probe_imports_torch_on_a_node(workspace, capsys):
    code, out = run_doctor(capsys, "--profile", "profile", "--probe")
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.startswith("ok    env.probe"))
    assert "torch" in line and "imports; no GPUs asked for" in line
    mps = next(x for x in out.splitlines() if " env.mps " in x)  # the node's own answer
    assert mps.startswith("skip  env.mps") and "train jobs ask for no GPUs" in mps
    assert "; node " in mps and ("CUDA MPS available" in mps or "no CUDA MPS (" in mps), mps
