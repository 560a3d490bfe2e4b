"""A real single-node Slurm cluster for tests: munged, slurmctld and slurmd from Debian's
slurm-wlm and munge packages (installed by .ci/run), configured in a temporary folder, without
accounting (so jobs are followed with `squeue`), and stopped by PID at the end.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    absent = [d for d in (*DAEMONS, "sbatch", "squeue", "srun") if shutil.which(d) is None]
    if absent:
        return f"not installed: {', '.join(absent)} (Debian: apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the test cluster's daemons run as root"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SlurmCluster:
    # Memory enforced as most clusters do (MemoryLimitedCluster): task/cgroup with
    # ConstrainRAMSpace, so that the kernel's OOM killer ends a process of a job that exceeds its
    # --mem. Off: proctrack/linuxproc, no cgroups, nothing enforced.
    enforce_memory = False

    def __init__(self, root: Path, cpus: int = 2, memory_mb: int = 8000,
                 max_time: str = "INFINITE"):  # fmt: skip
        self.root = root
        self.conf = root / "slurm.conf"
        self.pids: list[Path] = []
        self.cpus, self.memory_mb = cpus, memory_mb
        self.max_time = max_time  # the partition's MaxTime (minutes, or a Slurm time)

    def start(self) -> dict[str, str]:
        """Start the daemons; returns the environment that talks to this cluster."""
        root, host = self.root, socket.gethostname().split(".")[0]
        for folder in ("munge", "state", "spool", "shim"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        key = root / "munge/munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        socket_path = root / "munge/munge.socket"
        subprocess.run(
            ["munged", "--force", f"--key-file={key}", f"--socket={socket_path}",
             f"--pid-file={root}/munge/munged.pid", f"--log-file={root}/munge/munged.log",
             f"--seed-file={root}/munge/munged.seed"],
            check=True,
        )  # fmt: skip
        self.pids.append(root / "munge/munged.pid")
        self.conf.write_text(
            "\n".join([
                "ClusterName=drntest", f"SlurmctldHost={host}(127.0.0.1)",
                "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={socket_path}",
                *(("ProctrackType=proctrack/cgroup", "TaskPlugin=task/cgroup",
                   f"FirstJobId={random.randrange(10**5, 10**7)}")  # a cgroup job_N of its own
                  if self.enforce_memory else
                  ("ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none")),
                "ReturnToService=2",
                f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
                f"SlurmdSpoolDir={root}/spool", f"StateSaveLocation={root}/state",
                "SlurmUser=root", "SlurmdUser=root", "SchedulerType=sched/backfill",
                "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
                # squeue must remember finished jobs long enough; jobs must not take all memory
                "MinJobAge=600", "DefMemPerCPU=1000",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                f"SlurmctldLogFile={root}/slurmctld.log", f"SlurmdLogFile={root}/slurmd.log",
                f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
                f"NodeName={host} NodeAddr=127.0.0.1 CPUs={self.cpus} "
                f"RealMemory={self.memory_mb} State=UNKNOWN",
                f"PartitionName=debug Nodes={host} Default=YES MaxTime={self.max_time} State=UP",
            ]) + "\n"
        )  # fmt: skip
        if self.enforce_memory:
            (root / "cgroup.conf").write_text("ConstrainRAMSpace=yes\n")
        # snakemake-executor-plugin-slurm-jobstep drops SLURM_* variables (SLURM_CONF too) before
        # its nested srun; on real clusters the config sits where srun looks by default.
        shim = root / "shim/srun"
        shim.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {shutil.which("srun")} "$@"\n')
        shim.chmod(0o755)
        env = {**os.environ, "SLURM_CONF": str(self.conf),
               "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([daemon], env=env, check=True)
            self.pids.append(root / f"{daemon}.pid")
        deadline = time.time() + 30
        while time.time() < deadline:
            state = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True
            )
            if state.stdout.strip() == "idle":
                return env
            time.sleep(0.5)
        raise RuntimeError(f"the test cluster did not come up: {self.log_tail()}")

    def log_tail(self) -> str:
        logs = [self.root / "slurmctld.log", self.root / "slurmd.log"]
        return " | ".join(p.read_text()[-500:] for p in logs if p.is_file())

    def stop(self) -> None:
        for pid_file in reversed(self.pids):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        time.sleep(1)


class MemoryLimitedCluster(SlurmCluster):
    """A cluster whose jobs are held to their memory (cgroup v1 or v2, which slurmd picks)."""

    enforce_memory = True


def memory_missing() -> str | None:
    """Why this machine cannot hold jobs to their memory with cgroups, or None."""
    v1, v2 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/cgroup.controllers")
    if v1.is_dir() and os.access(v1, os.W_OK):
        return None
    if v2.is_file() and "memory" in v2.read_text().split() and os.access(v2.parent, os.W_OK):
        return None
    return "no writable memory cgroup: this machine cannot enforce a job's memory"


@contextlib.contextmanager
def running_cluster(root: Path, kind: type[SlurmCluster] = SlurmCluster, **options):
    """The environment of a started cluster (of ``kind``), stopped afterwards; skips the test
    where no such cluster can run here, and fails it on CI, which must run it."""
    import pytest

    reason = missing() or (memory_missing() if kind.enforce_memory else None)
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Slurm tests: {reason}")
        pytest.skip(reason)
    cluster = kind(root, **options)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
