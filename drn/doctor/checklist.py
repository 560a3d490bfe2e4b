"""``drn doctor``: is this setup ready for the plan of params.yaml? A read-only checklist.

This module owns those checks: each one a small function that returns :class:`Result` (its
name, ``ok``/``warn``/``fail``/``skip``, what it found, and the fix for a miss), and the one
helper, :func:`command`, through which every Slurm command runs with a short timeout: a command
that hangs (``sacct`` without an accounting database) is itself the finding, never a hang of
doctor. It reads params.yaml, the Snakemake profile (its ``executor``, ``default-resources``
``slurm_partition`` / ``slurm_account``, ``slurm-status-command``, ``retries``) and what Slurm
says about itself (``scontrol show partition/node/config``); it writes nothing, except for
``--probe``, which submits one 1-minute job and keeps its output under
``{paths.results}/logs/doctor/``.

**Checks**, in the order printed:

* ``slurm.*``: the controller answers (``sinfo``); the partition given (or the default) exists, is
  up and takes this user and account; the account is one the Slurm plugin will accept (it checks
  with ``sacctmgr``, then ``sshare``); each kind of job (train, evaluate, prepare, fetch: the
  requests of ``resources`` as workflow/rules/common.smk makes them) fits a node of the partition
  (GPUs of the model asked for, CPUs, memory) and ``sbatch --test-only`` accepts it; its runtime is
  within the partition's MaxTime; the status command answers (``sacct``; else ``squeue``, whose
  memory of finished jobs is MinJobAge). Where there is no Slurm (no ``sinfo``, or a profile whose
  executor is not slurm) they are skipped: "no Slurm here".
* ``env.*``: the Python environment and the working directory on a file system the compute nodes
  see (not /tmp or another node-local disk); torch with CUDA where jobs ask for GPUs (from its
  build here; ``--probe`` asks a GPU node).
* ``tracking``: a sqlite store on a network file system (NFS, Lustre, GPFS...: unreliable file
  locks) fails with the ``mlflow server`` recipe; a server URI must answer an HTTP GET.
* ``data.*``, ``disk.*``: every source the plan reads is present, fetchable (a ``url``; checked
  with a HEAD request only with ``--online``) or a ``local`` copy that exists; each file system
  holding data, runs or results has room for what is still to come (downloads, extracted
  sources, the decoded training cache, every run's checkpoints), with the numbers and which of
  them are approximate.
* ``plan``, ``plan.attempts``: runs, evaluations, iterations and the GPU-hour projection of
  drn.pipeline.cost; on Slurm, whether the profile's ``retries`` cover the attempts each training
  needs.

``--last`` instead reads the per-attempt records of the pipeline's jobs
(``{paths.results}/logs/**/*.attempts.jsonl``, one JSON object a line: ``attempt``, ``cause``,
``exit_code``, ``message``, ``log``) and lists the jobs whose last attempt failed, with their logs.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
TIMEOUT_S = 10.0  # any one Slurm command; a command that takes longer is the finding
HTTP_TIMEOUT_S = 5.0
PROBE_WAIT_S = 180.0  # how long --probe waits for its job to start and finish
KINDS = ("train", "evaluate", "prepare", "fetch")  # the kinds of jobs of resources
NO_SLURM = "skipped: no Slurm here"
# File systems that several hosts share (sqlite's locks are unreliable on them) and ones that
# only this host sees; paths under these folders are node-local on most clusters.
NETWORK_FS = {
    "nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "cifs", "smb3", "smbfs",
    "glusterfs", "fuse.glusterfs", "fuse.sshfs", "panfs", "pvfs2", "orangefs", "afs", "wekafs",
    "fuse.juicefs", "9p",
}  # fmt: skip
NODE_LOCAL_FS = {"tmpfs", "ramfs", "overlay", "devtmpfs"}
NODE_LOCAL_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/scratch/local", "/local")
MIN_JOB_AGE_S = 600  # README: squeue forgets finished jobs after MinJobAge seconds

# Download sizes of the official archives, by sha256 (params.yaml's): the TensorFlow Datasets
# checksum list for div2k (tensorflow_datasets/url_checksums/div2k.txt), also the sizes of the
# Git LFS pointers of the same files (same sha256) on the Hugging Face mirror goodfellowliu/DIV2K.
ARCHIVE_BYTES = {
    "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335": 3_530_603_713,  # train HR
    "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc": 448_993_893,  # valid HR
    "a53a424317575838dadce4bcd97cf7b744d6855f43740ed5f0245af3cf4bd850": 925_390_592,  # train x2
    "ad5c8e5507e2765823d3c2c5bd0934842efcd487c5370604c224090898b3163a": 427_847_282,  # train x3
    "f006b837f4eb52b82909aa01478e6d6d199eefce932179491d0c9dbb706dde3a": 246_914_039,  # train x4
}
# Archives without a published checksum: (bytes, why approximate).
APPROXIMATE_ARCHIVES = {
    "benchmark.tar": (250_000_000, "EDSR's benchmark.tar: about 250 MB (no published size)"),
}
# The decoded cache of DIV2K_train_HR before its images are here: 800 images of 2K resolution
# (2040 pixels on the long side); 2040 x 1360 on average is an approximation.
DIV2K_TRAIN = (
    "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",
    800 * 2040 * 1360,
)
MLFLOW_SERVER_RECIPE = (
    "run one MLflow server on the login node, bound to its cluster-internal address (README, "
    "MLflow): `mlflow server --host ADDRESS --port 5000 --backend-store-uri "
    "sqlite:///$PWD/mlflow.db --artifacts-destination $PWD/mlartifacts`, then `export "
    "MLFLOW_TRACKING_URI=http://ADDRESS:5000` before submitting"
)


@dataclass(frozen=True)
class Result:
    """One line of the checklist."""

    name: str
    status: str  # OK, WARN, FAIL or SKIP
    found: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


# --- running commands -------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What a command said: its exit code (None: it did not finish, or could not start)."""

    command: tuple[str, ...]
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    missing: bool = False
    timeout: float = TIMEOUT_S

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def why(self) -> str:
        """Why it did not answer, in one line."""
        shown = shlex.join(self.command)
        if self.missing:
            return f"{self.command[0]}: command not found"
        if self.timed_out:
            return f"`{shown}` did not answer within {self.timeout:g} s"
        lines = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return f"`{shown}` exited {self.returncode}" + (f": {lines[-1].strip()}" if lines else "")


Runner = Callable[[Sequence[str]], Answer]


def command(args: Sequence[str], timeout: float | None = None) -> Answer:
    """Run ``args`` (no shell) with a timeout; a command that does not finish in time is killed
    with its process group and answers ``timed_out``."""
    timeout = TIMEOUT_S if timeout is None else timeout
    args = tuple(str(a) for a in args)
    try:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip
    except FileNotFoundError:
        return Answer(args, None, missing=True, timeout=timeout)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        return Answer(args, None, out, err, timed_out=True, timeout=timeout)
    return Answer(args, process.returncode, out, err, timeout=timeout)


# --- the profile --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """What doctor needs of a Snakemake profile (and of the options that override it)."""

    path: Path | None
    executor: str  # "slurm", or "local" (Snakemake's default where the profile names none)
    resources: dict[str, str] = field(default_factory=dict)  # default-resources
    rule_resources: dict[str, dict[str, str]] = field(default_factory=dict)  # set-resources
    status_command: str | None = None  # None: the Slurm plugin's default
    retries: int = 0

    @property
    def config(self) -> str:
        return str(self.path / "config.yaml") if self.path else "(no profile)"

    def resource(self, kind: str, key: str) -> str | None:
        return self.rule_resources.get(kind, {}).get(key) or self.resources.get(key) or None


def default_profile() -> Path | None:
    """Where ``snakemake --profile slurm`` finds its profile after ``make slurm-profile``, else
    the repository's workflow/profiles/slurm; None where neither is."""
    for candidate in (Path.home() / ".config/snakemake/slurm", Path("workflow/profiles/slurm")):
        if (candidate / "config.yaml").is_file():
            return candidate
    return None


def load_profile(path: Path | None, default_resources: Sequence[str] = (),
                 status_command: str | None = None) -> Profile:  # fmt: skip
    """The profile at ``path`` (a folder or its config.yaml), with the command line's
    ``--default-resources`` and ``--slurm-status-command`` on top."""
    from drn.core.errors import UsageError

    config: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if path.name == "config.yaml":
            path = path.parent
        file = path / "config.yaml"
        if not file.is_file():
            raise UsageError(f"--profile {path}: no config.yaml there")
        try:
            config = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as error:
            raise UsageError(f"{file}: not valid YAML ({' '.join(str(error).split())})") from None
    resources = _assignments(config.get("default-resources") or config.get("default_resources"))
    resources.update(_assignments(list(default_resources)))
    rules: dict[str, dict[str, str]] = {}
    set_resources = config.get("set-resources") or config.get("set_resources") or {}
    if isinstance(set_resources, dict):
        rules = {str(rule): _assignments(value) for rule, value in set_resources.items()}
    else:
        for item in set_resources:
            rule, _, assignment = str(item).partition(":")
            rules.setdefault(rule, {}).update(_assignments([assignment]))
    retries = config.get("retries", config.get("restart-times", 0))
    return Profile(
        path, str(config.get("executor") or "local"), resources, rules,
        status_command or config.get("slurm-status-command") or None, int(retries or 0),
    )  # fmt: skip


def _assignments(value: Any) -> dict[str, str]:
    """``[KEY=VALUE, ...]`` or ``{KEY: VALUE}`` as strings, quotes removed."""
    if not value:
        return {}
    items = value.items() if isinstance(value, dict) else (
        str(item).partition("=")[::2] for item in value
    )  # fmt: skip
    return {str(k).strip(): str(v).strip().strip("'\"") for k, v in items if str(k).strip()}


# --- what Slurm says about itself ----------------------------------------------------------------


_KEY = re.compile(r"(?:^|\s)([A-Za-z][\w/.:-]*)=")


def parse_record(line: str) -> dict[str, str]:
    """One line of ``scontrol -o show ...``: KEY=VALUE pairs, values may hold spaces."""
    found = list(_KEY.finditer(line))
    return {
        m.group(1): line[
            m.end() : found[i + 1].start() if i + 1 < len(found) else len(line)
        ].strip()
        for i, m in enumerate(found)
    }


def parse_config(text: str) -> dict[str, str]:
    """``scontrol show config``: ``Key = value`` lines."""
    config = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            config[key.strip()] = value.strip()
    return config


def slurm_minutes(text: str | None) -> float | None:
    """A Slurm time (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``) in minutes;
    None for UNLIMITED/INFINITE or nothing."""
    if not text or text.upper() in ("UNLIMITED", "INFINITE", "NONE", "N/A"):
        return None
    days, _, rest = text.rpartition("-") if "-" in text else ("", "", text)
    parts = [float(p) for p in rest.split(":")]
    if days:
        hours, minutes, seconds = [*parts, 0, 0][:3]
        return float(days) * 1440 + hours * 60 + minutes + seconds / 60
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0] + parts[1] / 60
    return parts[0] * 60 + parts[1] + parts[2] / 60


def _split_top(text: str) -> list[str]:
    """Split at commas outside parentheses (``gpu:a100:4(S:0,1),shard:8``)."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [item.strip() for item in [*items, current] if item.strip()]


def node_gpus(gres: str | None) -> dict[str | None, int]:
    """GPUs of a node's ``Gres`` (``gpu:a100:4(S:0-1),gpu:2``): {model or None: count}."""
    gpus: dict[str | None, int] = {}
    if not gres or gres.strip() in ("(null)", "N/A"):
        return gpus
    for item in _split_top(gres):
        parts = item.split("(")[0].split(":")
        if parts[0] != "gpu" or len(parts) < 2:
            continue
        count = re.match(r"\d+", parts[-1])
        model = parts[1] if len(parts) >= 3 else None
        gpus[model] = gpus.get(model, 0) + (int(count.group()) if count else 1)
    return gpus


def gres_gpus(gres: str | None) -> tuple[int, str | None]:
    """(count, model) of the GPUs a request's ``gres`` (``gpu``, ``gpu:2``, ``gpu:a100:2``) asks
    for; (0, None) if it asks for none."""
    for item in _split_top(gres or ""):
        parts = item.split(":")
        if parts[0] == "gpu":
            if len(parts) == 1:
                return 1, None
            if len(parts) == 2:
                return (int(parts[1]), None) if parts[1].isdigit() else (1, parts[1])
            return int(re.match(r"\d*", parts[2]).group() or 1), parts[1]
    return 0, None


@dataclass(frozen=True)
class Cluster:
    """What the Slurm controller said: partitions, nodes and configuration."""

    version: str
    partitions: dict[str, dict[str, str]]
    nodes: tuple[dict[str, str], ...]
    config: dict[str, str]

    @property
    def default_partition(self) -> str | None:
        return next((n for n, p in self.partitions.items() if p.get("Default") == "YES"), None)

    def nodes_of(self, partition: str) -> list[dict[str, str]]:
        return [n for n in self.nodes if partition in n.get("Partitions", "").split(",")]

    def partition_list(self) -> str:
        return (
            ", ".join(
                f"{name} (default)" if p.get("Default") == "YES" else name
                for name, p in self.partitions.items()
            )
            or "none"
        )

    def only_this_host(self) -> bool:
        """Whether every node is this machine (a single-node cluster: it sees every path here)."""
        here = {socket.gethostname().split(".")[0], "localhost", "127.0.0.1"}
        return bool(self.nodes) and all(
            {n.get("NodeHostName", "").split(".")[0], n.get("NodeAddr", ""),
             n.get("NodeName", "")} & here
            for n in self.nodes
        )  # fmt: skip


def read_cluster(run: Runner) -> tuple[Cluster | None, Result]:
    """The cluster's partitions, nodes and configuration, and the ``slurm.reachable`` result."""
    name = "slurm.reachable"
    found = run(["sinfo", "-h", "-o", "%P"])
    fix = ("run drn doctor on a login node of the cluster, where `sinfo` works; check "
           "SLURM_CONF and that slurmctld is up (`scontrol ping`)")  # fmt: skip
    if not found.ok:
        return None, Result(name, FAIL, f"the controller does not answer: {found.why()}", fix)
    answers = [run(["scontrol", "-a", "-o", "show", what]) for what in ("partition", "node")]
    config = run(["scontrol", "show", "config"])
    for answer in (*answers, config):
        if not answer.ok:
            return None, Result(name, FAIL, f"sinfo answers, but: {answer.why()}", fix)
    partitions = {}
    for line in answers[0].stdout.splitlines():
        record = parse_record(line)
        if record.get("PartitionName"):
            partitions[record["PartitionName"]] = record
    nodes = tuple(
        r for r in (parse_record(line) for line in answers[1].stdout.splitlines())
        if r.get("NodeName")
    )  # fmt: skip
    settings = parse_config(config.stdout)
    version = settings.get("SLURM_VERSION", "?")
    cluster = Cluster(version, partitions, nodes, settings)
    what = (f"Slurm {version} answers: partitions {cluster.partition_list()}; "
            f"{len(nodes)} node{'s' * (len(nodes) != 1)}")  # fmt: skip
    return cluster, Result(name, OK, what)


# --- the jobs' requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What one kind of job asks Slurm for, as the workflow's rules make it (common.smk:
    gpu_job, cpu_job) and the Slurm plugin turns it into sbatch options."""

    kind: str
    gpus: int
    gpu_model: str | None
    gres: str | None
    cpus: int  # the job's CPUs in all
    cpus_per_gpu: int | None  # --cpus-per-gpu, else --cpus-per-task=cpus
    mem_mb: int
    runtime: int  # minutes
    partition: str | None
    account: str | None

    def sbatch_options(self) -> list[str]:
        options = [f"--time={self.runtime}", f"--mem={self.mem_mb}"]
        options += [f"--partition={self.partition}"] if self.partition else []
        options += [f"--account={self.account}"] if self.account else []
        if self.gres:
            options.append(f"--gres={self.gres}")
        elif self.gpus:
            options.append(f"--gpus={self.gpu_model}:{self.gpus}" if self.gpu_model
                           else f"--gpus={self.gpus}")  # fmt: skip
        if self.cpus_per_gpu:
            options.append(f"--cpus-per-gpu={self.cpus_per_gpu}")
        else:
            options += ["--ntasks=1", f"--cpus-per-task={self.cpus}"]
        return options

    def describe(self) -> str:
        gpus = ""
        if self.gpus:
            gpus = f"{self.gpus} GPU{'s' * (self.gpus > 1)}"
            gpus += f" ({self.gpu_model})" if self.gpu_model else ""
            gpus += ", "
        return (
            f"{gpus}{self.cpus} CPU{'s' * (self.cpus != 1)}, {self.mem_mb} MB, {self.runtime} min"
        )

    def keys(self) -> str:
        """The params.yaml keys behind this request."""
        if self.kind in ("prepare", "fetch"):
            return f"resources.{self.kind}.{{cpus, mem_mb}}"
        gpu = "gres" if self.gres else "gpu, gpu_model"
        return f"resources.{self.kind}.{{{gpu}, cpus_per_gpu, mem_mb}}"


def requests(params: dict[str, Any], profile: Profile) -> list[Request]:
    """The request of every kind of job of params.yaml's resources."""
    found = []
    for kind in KINDS:
        spec = params["resources"][kind]
        partition = profile.resource(kind, "slurm_partition")
        account = profile.resource(kind, "slurm_account")
        gres = spec.get("gres") or None
        if "cpus" in spec:
            found.append(Request(kind, 0, None, None, spec["cpus"], None, spec["mem_mb"],
                                 spec["runtime"], partition, account))  # fmt: skip
            continue
        gpus, model = gres_gpus(gres) if gres else (spec["gpu"], spec.get("gpu_model") or None)
        per_gpu = spec["cpus_per_gpu"] if gpus else None
        cpus = spec["cpus_per_gpu"] * max(1, gpus)
        found.append(Request(kind, gpus, model, gres, cpus, per_gpu, spec["mem_mb"],
                             spec["runtime"], partition, account))  # fmt: skip
    return found


# --- the Slurm checks ----------------------------------------------------------------------------


def _partition_names(profile: Profile, cluster: Cluster) -> list[str]:
    given = profile.resources.get("slurm_partition")
    if given:
        return [p for p in re.split(r"[,\s]+", given) if p]
    return [cluster.default_partition] if cluster.default_partition else []


def check_partition(cluster: Cluster, profile: Profile) -> Result:
    """The partition given (or the cluster's default) exists, is up and takes this user."""
    name = "slurm.partition"
    where = (f"in {profile.config} (default-resources: slurm_partition=NAME) or on the command "
             "line: snakemake --profile slurm --default-resources slurm_partition=NAME (and "
             "drn doctor --default-resources slurm_partition=NAME)")  # fmt: skip
    given = profile.resources.get("slurm_partition")
    if not given and not cluster.default_partition:
        return Result(name, FAIL, f"no partition given and the cluster has no default one; "
                      f"it has {cluster.partition_list()}", f"give one {where}")  # fmt: skip
    account = profile.resources.get("slurm_account")
    problems = []
    user_groups = _groups()
    for partition in _partition_names(profile, cluster):
        spec = cluster.partitions.get(partition)
        if spec is None:
            problems.append(f"partition {partition!r} does not exist")
            continue
        if spec.get("State", "UP") != "UP":
            problems.append(f"partition {partition} is {spec.get('State')}: it runs no jobs")
        if spec.get("RootOnly") == "YES" and os.geteuid() != 0:
            problems.append(f"partition {partition} takes root's jobs only (RootOnly)")
        allowed = spec.get("AllowGroups", "ALL")
        if allowed != "ALL" and not set(allowed.split(",")) & user_groups:
            problems.append(f"partition {partition} takes the groups {allowed}; "
                            f"{getpass.getuser()} is in none of them")  # fmt: skip
        accounts = spec.get("AllowAccounts", "ALL")
        if accounts != "ALL" and account not in accounts.split(","):
            problems.append(f"partition {partition} takes the accounts {accounts}; "
                            f"slurm_account is {account or 'not given'}")  # fmt: skip
        if account and account in spec.get("DenyAccounts", "").split(","):
            problems.append(f"partition {partition} denies the account {account}")
    if problems:
        others = [p for p in cluster.partitions if p not in _partition_names(profile, cluster)]
        fix = f"choose one of {', '.join(others) or 'none'} {where}"
        if any("account" in p for p in problems):
            fix += "; an account it takes: --default-resources slurm_account=NAME"
        return Result(name, FAIL, "; ".join(problems) + f" (the cluster has "
                      f"{cluster.partition_list()})", fix)  # fmt: skip
    how = "given" if given else "none given: the default"
    chosen = ", ".join(_partition_names(profile, cluster))
    return Result(name, OK, f"{chosen} ({how}): up, takes {getpass.getuser()}")


def _groups() -> set[str]:
    names = set()
    for gid in {os.getgid(), *os.getgroups()}:
        with contextlib.suppress(KeyError):
            names.add(grp.getgrgid(gid).gr_name)
    return names


def check_account(cluster: Cluster, profile: Profile, run: Runner) -> Result:
    """The account given is one the Slurm plugin accepts: it looks it up with ``sacctmgr``,
    then ``sshare``, and refuses to submit where both fail."""
    name = "slurm.account"
    account = profile.resources.get("slurm_account")
    user = getpass.getuser()
    listed = run(["sacctmgr", "-n", "-s", "list", "user", user, "format=account%256"])
    accounts = {a.strip().lower() for a in listed.stdout.splitlines() if a.strip()}
    reports = [listed]
    if not listed.ok or not accounts:
        shared = run(["sshare", "-U", "--format", "Account%256", "--noheader"])
        reports.append(shared)
        accounts = {a.strip().lower() for a in shared.stdout.splitlines() if a.strip()}
        if not listed.ok and not shared.ok:
            if account:
                return Result(
                    name, FAIL, f"slurm_account={account}, but neither sacctmgr nor sshare "
                    f"answers ({listed.why()}; {shared.why()}): the Slurm plugin checks the "
                    "account with them and refuses to submit",
                    "remove slurm_account where the cluster needs none, or ask the admins why "
                    "sacctmgr and sshare fail",
                )  # fmt: skip
            return Result(name, OK, "none given, none needed: no accounting here "
                          f"({cluster.config.get('AccountingStorageType', '?')})")  # fmt: skip
    if not account:
        if accounts:
            return Result(
                name, WARN, f"none given; {user}'s accounts: {', '.join(sorted(accounts))}; the "
                "plugin guesses one from your past jobs (sacct), or submits without",
                f"give one: --default-resources slurm_account={sorted(accounts)[0]} (or in "
                f"{profile.config})",
            )  # fmt: skip
        return Result(name, OK, "none given; no accounts listed for you (the plugin submits "
                      "without one)")  # fmt: skip
    given = [a for a in re.split(r"[,\s]+", account) if a]
    if not accounts:
        return Result(name, OK, f"{account}: not verifiable (no accounts listed); the plugin "
                      "submits it unchecked")  # fmt: skip
    unknown = [a for a in given if a.lower() not in accounts]
    if unknown:
        return Result(
            name, FAIL, f"{', '.join(unknown)} is not one of {user}'s accounts "
            f"({', '.join(sorted(accounts))}): the plugin refuses to submit",
            f"--default-resources slurm_account={sorted(accounts)[0]} (or in {profile.config})",
        )  # fmt: skip
    return Result(name, OK, f"{account}: one of {user}'s accounts")


def node_fit(node: dict[str, str], request: Request, partition: dict[str, str]) -> list[str]:
    """Why ``node`` cannot run ``request`` (nothing: it can)."""
    why = []
    gpus = node_gpus(node.get("Gres"))
    if request.gpus:
        have = gpus.get(request.gpu_model, 0) if request.gpu_model else sum(gpus.values())
        if have < request.gpus:
            model = f" {request.gpu_model}" if request.gpu_model else ""
            why.append(f"{request.gpus}{model} GPU{'s' * (request.gpus > 1)} (has {have})")
    cpus = _int(node.get("CPUEfctv") or node.get("CPUTot"))
    limit = _int(partition.get("MaxCPUsPerNode"))
    cpus = min(cpus, limit) if limit else cpus
    if cpus < request.cpus:
        why.append(f"{request.cpus} CPUs (has {cpus})")
    memory = _int(node.get("RealMemory")) - _int(node.get("MemSpecLimit"))
    limit = _int(partition.get("MaxMemPerNode"))
    memory = min(memory, limit) if limit else memory
    if memory < request.mem_mb:
        why.append(f"{request.mem_mb} MB (has {memory})")
    return why


def _int(text: str | None) -> int:
    match = re.match(r"\d+", text or "")
    return int(match.group()) if match else 0


def _node_summary(node: dict[str, str]) -> str:
    gpus = node_gpus(node.get("Gres"))
    shown = ", ".join(f"{m or 'gpu'}:{c}" for m, c in gpus.items()) or "no GPUs"
    return (f"{node.get('NodeName')}: {node.get('CPUEfctv') or node.get('CPUTot')} CPUs, "
            f"{node.get('RealMemory')} MB, {shown}")  # fmt: skip


def _usable(node: dict[str, str]) -> bool:
    state = node.get("State", "").upper()
    return not any(bad in state for bad in ("DOWN", "DRAIN", "FAIL", "FUTURE", "INVAL"))


def _missing_partition(name: str, cluster: Cluster, request: Request,
                       profile_partition: str | None) -> Result | None:  # fmt: skip
    """The result of a check of a job whose partition does not exist (None: it does): a skip
    where slurm.partition reports it, else a failure (a rule's own partition, set-resources)."""
    partition = (request.partition or cluster.default_partition or "").split(",")[0]
    if partition in cluster.partitions:
        return None
    if not request.partition or request.partition == profile_partition:
        return Result(name, SKIP, f"partition {partition or '(none)'} missing: slurm.partition")
    return Result(name, FAIL, f"partition {partition!r} of the profile's set-resources for "
                  f"{request.kind} does not exist (the cluster has {cluster.partition_list()})",
                  "fix set-resources in the profile")  # fmt: skip


def check_request(cluster: Cluster, request: Request, run: Runner,
                  profile_partition: str | None = None) -> Result:  # fmt: skip
    """One kind of job fits a node of its partition (GPUs, CPUs, memory) and ``sbatch
    --test-only`` accepts it as the plugin submits it."""
    name = f"slurm.resources.{request.kind}"
    missing = _missing_partition(name, cluster, request, profile_partition)
    if missing:
        return missing
    first = (request.partition or cluster.default_partition or "").split(",")[0]
    spec = cluster.partitions[first]
    if request.gpus and request.gres is None and \
            "cons_tres" not in cluster.config.get("SelectType", "select/cons_tres"):  # fmt: skip
        return Result(
            name, FAIL, f"{request.kind} jobs ask for GPUs with --gpus, which needs "
            f"select/cons_tres; this cluster has {cluster.config.get('SelectType')} and takes "
            "GPUs only as --gres=gpu:N",
            "ask the admins for cons_tres, or ask for the GPUs as gres: the workflow's gpu_job "
            "(workflow/rules/common.smk) passes gpu/gpu_model, which the plugin sends as --gpus",
        )  # fmt: skip
    nodes = cluster.nodes_of(first)
    fitting = [n for n in nodes if not node_fit(n, request, spec)]
    if not fitting:
        reasons = "; ".join(f"{n.get('NodeName')} lacks {', '.join(node_fit(n, request, spec))}"
                            for n in nodes[:4]) or "it has no nodes"  # fmt: skip
        elsewhere = [
            p for p, s in cluster.partitions.items()
            if p != first and any(not node_fit(n, request, s) for n in cluster.nodes_of(p))
        ]  # fmt: skip
        sizes = "; ".join(dict.fromkeys(_node_summary(n).split(": ", 1)[1] for n in nodes))
        fix = (f"ask for what a node of {first} has ({sizes or 'none'}) in {request.keys()} of "
               "params.yaml")  # fmt: skip
        if elsewhere:
            fix += f", or use a partition whose nodes fit: {', '.join(elsewhere)}"
        return Result(name, FAIL, f"no node of partition {first} can run a {request.kind} job "
                      f"({request.describe()}): {reasons}", fix)  # fmt: skip
    tried = run(["sbatch", "--test-only", "--job-name=drn-doctor", *request.sbatch_options(),
                 "--wrap", "true"])  # fmt: skip
    options = " ".join(request.sbatch_options())
    if not tried.ok:
        status = WARN if tried.timed_out or tried.missing else FAIL
        return Result(name, status, f"{request.describe()} fits {len(fitting)} node(s) of "
                      f"{first}, but sbatch --test-only {options} says: {tried.why()}",
                      "change what sbatch refuses (its message above) in the profile or "
                      f"{request.keys()}")  # fmt: skip
    down = "" if any(_usable(n) for n in fitting) else "; all of them are down or drained now"
    example = _node_summary(fitting[0])
    status = WARN if down else OK
    text = (f"{request.describe()} fits {len(fitting)} of {len(nodes)} node(s) of {first} "
            f"(e.g. {example}){down}; sbatch --test-only accepts {options}")  # fmt: skip
    return Result(name, status, text, "wait for the nodes, or ask the admins" if down else "")


def check_time_limit(cluster: Cluster, request: Request, retries: int,
                     profile_partition: str | None = None) -> Result:  # fmt: skip
    """A job's runtime is within its partition's MaxTime (longer jobs stay pending forever or
    are refused)."""
    name = f"slurm.time.{request.kind}"
    missing = _missing_partition(name, cluster, request, profile_partition)
    if missing:
        return missing
    partition = (request.partition or cluster.default_partition or "").split(",")[0]
    spec = cluster.partitions[partition]
    limit = slurm_minutes(spec.get("MaxTime"))
    if limit is None or request.runtime <= limit:
        shown = spec.get("MaxTime", "UNLIMITED")
        return Result(name, OK, f"runtime {request.runtime} min is within {partition}'s "
                      f"MaxTime ({shown})")  # fmt: skip
    longer = [p for p, s in cluster.partitions.items()
              if (slurm_minutes(s.get("MaxTime")) or math.inf) >= request.runtime]  # fmt: skip
    fix = f"set resources.{request.kind}.runtime to at most {limit:g} in params.yaml"
    if request.kind == "train":
        fix += (
            " (a training stopped at its limit resumes from its checkpoint in the next "
            f"attempt: the profile's retries, now {retries}, must cover the attempts)"
        )
    if longer:
        fix += f", or use a partition with a longer MaxTime: {', '.join(longer)}"
    return Result(
        name, FAIL, f"runtime {request.runtime} min is above partition {partition}'s MaxTime "
        f"{spec.get('MaxTime')} ({limit:g} min): Slurm keeps such a job pending forever "
        "(PartitionTimeLimit) or refuses it", fix,
    )  # fmt: skip


def check_status_command(cluster: Cluster, profile: Profile, run: Runner) -> Result:
    """The command Snakemake follows jobs with answers: ``sacct`` needs the accounting database
    (without it, it fails or hangs); ``squeue`` forgets finished jobs after MinJobAge."""
    name = "slurm.status"
    chosen = profile.status_command or ("sacct" if shutil.which("sacct") else "squeue")
    how = "the profile's" if profile.status_command else "the plugin's default"
    age = _int(cluster.config.get("MinJobAge")) if cluster.config.get("MinJobAge") else None
    age_text = f"MinJobAge is {age} s here" if age is not None else "MinJobAge unknown here"
    squeue_line = (
        f"add `slurm-status-command: squeue` to {profile.config}, or pass "
        "`--slurm-status-command squeue` to snakemake; squeue forgets a finished job after "
        f"MinJobAge seconds ({age_text}): keep MinJobAge at {MIN_JOB_AGE_S} or more in "
        "slurm.conf"
    )
    if chosen == "sacct":
        since = f"{datetime.now() - timedelta(hours=1):%Y-%m-%dT%H:00}"
        answer = run(["sacct", "-X", "--parsable2", "--noheader", "--format=JobIdRaw,State",
                      "--starttime", since, "--endtime", "now"])  # fmt: skip
        if not answer.ok:
            return Result(name, FAIL, f"sacct ({how}) does not answer: {answer.why()}; "
                          "Snakemake would wait for job states forever", squeue_line)  # fmt: skip
        return Result(name, OK, f"sacct ({how}) answers")
    answer = run(["squeue", "-h", "-u", getpass.getuser(), "-o", "%i"])
    if not answer.ok:
        return Result(name, FAIL, f"squeue ({how}) does not answer: {answer.why()}",
                      "ask the admins: squeue must work on the login node")  # fmt: skip
    if age is None or age < MIN_JOB_AGE_S:
        return Result(name, WARN, f"squeue ({how}) answers, but {age_text}: a job that ends "
                      "while Snakemake is not looking may be forgotten before it is seen",
                      f"ask the admins for MinJobAge >= {MIN_JOB_AGE_S} in slurm.conf, or use "
                      "sacct where the cluster has accounting")  # fmt: skip
    return Result(name, OK, f"squeue ({how}) answers; {age_text}")


def slurm_checks(params: dict[str, Any], profile: Profile, run: Runner,
                 sinfo: str | None) -> tuple[list[Result], Cluster | None]:  # fmt: skip
    """Every Slurm check, or one skip where there is no Slurm; and the cluster, if read."""
    if profile.executor != "slurm":
        why = f"{NO_SLURM} (the profile's executor is {profile.executor}: jobs run on this machine)"
        return [Result("slurm", SKIP, why)], None
    if sinfo is None:
        return [Result("slurm", SKIP, f"{NO_SLURM} (no sinfo on PATH; on a cluster, run drn "
                       "doctor on a login node; a workstation: --profile "
                       "workflow/profiles/local)")], None  # fmt: skip
    cluster, reachable = read_cluster(run)
    if cluster is None:
        return [reachable], None
    results = [reachable, check_partition(cluster, profile),
               check_account(cluster, profile, run)]  # fmt: skip
    given = profile.resources.get("slurm_partition")
    for request in requests(params, profile):
        results.append(check_request(cluster, request, run, given))
        results.append(check_time_limit(cluster, request, profile.retries, given))
    results.append(check_status_command(cluster, profile, run))
    return results, cluster


# --- the environment ---------------------------------------------------------------------------


def filesystem(path: str | os.PathLike, mounts: str | None = None) -> tuple[str, str]:
    """(mount point, file system type) of ``path`` (links resolved as far as it exists), from
    /proc/mounts (``mounts``: its text, for tests)."""
    path, rest = Path(os.path.abspath(path)), []
    while not path.exists() and path != path.parent:
        path, rest = path.parent, [path.name, *rest]
    real = os.path.join(os.path.realpath(path), *rest)
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            mounts = ""
    best = ("/", "unknown")
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]) and (point != "/" or best[1] == "unknown"):
            best = (point, parts[2])
    return best


def shared_path(name: str, what: str, path: Path, cluster: Cluster | None, slurm: bool,
                fs: Callable[[Path], tuple[str, str]] = filesystem) -> Result:  # fmt: skip
    """Whether the compute nodes see ``path`` (jobs run there): fine on a network file system
    or where the only node is this host; a warning under /tmp or on a node-local file system."""
    point, kind = fs(path)
    where = f"{path} ({kind} on {point})"
    if not slurm:
        return Result(name, OK, f"{what}: {where}; jobs run on this machine")
    if cluster is not None and cluster.only_this_host():
        return Result(name, OK, f"{what}: {where}; the cluster's only node is this host")
    text = str(path)
    local_dir = next((d for d in NODE_LOCAL_DIRS if text == d or text.startswith(d + "/")), None)
    if local_dir or kind in NODE_LOCAL_FS:
        return Result(name, WARN, f"{what}: {where} is node-local: compute nodes do not see it",
                      f"put the {what} on a file system every node mounts (home, project or "
                      "scratch space), then check with drn doctor --probe")  # fmt: skip
    if kind in NETWORK_FS:
        return Result(name, OK, f"{what}: {where}, a shared file system")
    return Result(name, WARN, f"{what}: {where}, a local disk of this host: compute nodes see "
                  "it only if it is mounted there too",
                  "check with drn doctor --probe (it runs this Python on a node)")  # fmt: skip


def torch_build() -> tuple[str | None, str | None]:
    """(version, CUDA version or None) of the torch installed here, without importing it."""
    import importlib.metadata
    import importlib.util

    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None, None
    spec = importlib.util.find_spec("torch")
    cuda = None
    if spec and spec.submodule_search_locations:
        text = Path(next(iter(spec.submodule_search_locations))) / "version.py"
        match = re.search(r"^cuda(?:: [^=]+)? = '([^']+)'", text.read_text() if text.is_file()
                          else "", re.M)  # fmt: skip
        cuda = match.group(1) if match else None
    return version, cuda


def check_torch(wanted: list[Request], build: tuple[str | None, str | None]) -> Result:
    """torch is installed, and built for CUDA where jobs ask for GPUs."""
    name = "env.torch"
    version, cuda = build
    gpus = [r.kind for r in wanted if r.gpus]
    if version is None:
        return Result(name, FAIL, f"torch is not installed in {sys.prefix}",
                      "make (the venv), or conda env create -f environment.yml")  # fmt: skip
    if gpus and cuda is None:
        return Result(
            name, FAIL, f"torch {version} is a CPU build, and {', '.join(gpus)} jobs ask for "
            "GPUs: they would run on CPUs",
            "install a CUDA build in this environment: conda env create -f environment.yml "
            "(conda-forge's CUDA torch), or pip install torch from the CUDA index of pytorch.org",
        )  # fmt: skip
    if gpus:
        return Result(name, OK, f"torch {version} built for CUDA {cuda}; `drn doctor --probe` "
                      "checks it on a GPU node")  # fmt: skip
    return Result(name, OK, f"torch {version}; no job asks for GPUs (resources.*.gpu: 0)")


PROBE_CODE = (
    "import sys, torch; print('drn-probe', torch.__version__, torch.cuda.is_available(), "
    "torch.cuda.device_count(), sys.executable)"
)
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
            "BOOT_FAIL", "PREEMPTED", "DEADLINE")  # fmt: skip


def probe(request: Request, logs: Path, run: Runner, wait_s: float = PROBE_WAIT_S,
          poll_s: float = 1.0) -> Result:  # fmt: skip
    """Submit a 1-minute job with the training job's GPU request, partition and account that
    imports torch with this Python and counts the GPUs CUDA sees; wait for it (bounded)."""
    name = "env.probe"
    logs.mkdir(parents=True, exist_ok=True)
    options = ["--time=1", "--mem=2000", "--job-name=drn-doctor-probe",
               f"--output={logs.resolve()}/probe-%j.out"]  # fmt: skip
    options += [f"--partition={request.partition}"] if request.partition else []
    options += [f"--account={request.account}"] if request.account else []
    if request.gres:
        options.append(f"--gres={request.gres}")
    elif request.gpus:
        options.append(f"--gpus={request.gpu_model}:{request.gpus}" if request.gpu_model
                       else f"--gpus={request.gpus}")  # fmt: skip
    wrap = f"{shlex.quote(sys.executable)} -c {shlex.quote(PROBE_CODE)}"
    submitted = run(["sbatch", "--parsable", *options, "--wrap", wrap])
    if not submitted.ok:
        return Result(name, FAIL, f"the probe job was refused: {submitted.why()}",
                      "see slurm.resources.train")  # fmt: skip
    job = submitted.stdout.strip().split(";")[0]
    deadline, state, record = time.monotonic() + wait_s, "", {}
    while time.monotonic() < deadline:
        shown = run(["scontrol", "-o", "show", "job", job])
        record = parse_record(shown.stdout.strip().splitlines()[0]) if shown.ok and \
            shown.stdout.strip() else record  # fmt: skip
        state = record.get("JobState", state)
        if state in TERMINAL:
            break
        time.sleep(poll_s)
    else:
        run(["scancel", job])
        return Result(name, WARN, f"probe job {job} still {state or 'unknown'} after "
                      f"{wait_s:g} s (Reason={record.get('Reason', '?')}); cancelled",
                      "run drn doctor --probe again when the partition is less busy")  # fmt: skip
    output = logs / f"probe-{job}.out"
    text = output.read_text(errors="replace") if output.is_file() else ""
    line = next((x for x in text.splitlines() if x.startswith("drn-probe ")), None)
    node = record.get("NodeList", "?")
    if state != "COMPLETED" or line is None:
        tail = " | ".join(text.strip().splitlines()[-3:]) or "no output"
        return Result(name, FAIL, f"probe job {job} on {node}: {state}, exit "
                      f"{record.get('ExitCode', '?')}: {tail} ({output})",
                      f"the nodes must see {sys.executable}: see env.python")  # fmt: skip
    _, version, available, count, _ = [*line.split(), "", "", "", ""][:5]
    if request.gpus and (available != "True" or _int(count) < request.gpus):
        return Result(name, FAIL, f"probe job {job} on {node}: torch {version}, CUDA available "
                      f"{available}, {count} GPU(s) seen of {request.gpus} asked for",
                      "install a CUDA build of torch (env.torch), and check the node's driver "
                      "(nvidia-smi in a job)")  # fmt: skip
    gpus = f"CUDA sees {count} GPU(s)" if request.gpus else "no GPUs asked for"
    return Result(name, OK, f"probe job {job} on {node}: torch {version} imports; {gpus} "
                  f"({output})")  # fmt: skip


# --- tracking ------------------------------------------------------------------------------------


def http_get(url: str, timeout: float = HTTP_TIMEOUT_S) -> tuple[int | None, str]:
    """(HTTP status, or None, and the error) of a GET of ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, ""
    except (urllib.error.URLError, OSError, ValueError) as error:
        return None, str(getattr(error, "reason", error))


def check_tracking(params: dict[str, Any], slurm: bool, cluster: Cluster | None,
                   fs: Callable[[Path], tuple[str, str]] = filesystem,
                   get: Callable[[str], tuple[int | None, str]] = http_get) -> Result:  # fmt: skip
    """A sqlite store on a network file system (its locks are unreliable there) fails; a server
    must answer, and from the compute nodes too (not 127.0.0.1 where they are other hosts)."""
    name = "tracking"
    tracking = params["tracking"]
    if not tracking["enabled"]:
        return Result(name, SKIP, "tracking.enabled is false: no MLflow")
    uri = os.environ.get("MLFLOW_TRACKING_URI") or tracking["uri"]
    source = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "tracking.uri"
    if uri.startswith(("http://", "https://")):
        host = urllib.parse.urlsplit(uri).hostname or ""
        status, error = get(uri.rstrip("/") + "/health")
        if status is None:
            return Result(name, FAIL, f"{source} {uri} cannot be reached ({error}): every "
                          "tracked training would fail", f"start it: {MLFLOW_SERVER_RECIPE}; or "
                          "set tracking.enabled: false")  # fmt: skip
        local = host in ("127.0.0.1", "localhost", "::1")
        if slurm and local and not (cluster and cluster.only_this_host()):
            return Result(name, FAIL, f"{source} {uri} answers here, but on a compute node "
                          f"{host} is the node itself", MLFLOW_SERVER_RECIPE)  # fmt: skip
        kind = OK if status == 200 else WARN
        return Result(name, kind, f"{source} {uri} answers (GET /health: HTTP {status})",
                      "" if kind == OK else "is it an MLflow server? `mlflow server` answers "
                      "/health with 200")  # fmt: skip
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        path = Path(re.sub(r"^(sqlite|file):/{2,3}", "", uri) if "://" in uri else uri)
        point, kind = fs(path)
        if uri.startswith("sqlite:") and kind in NETWORK_FS:
            return Result(name, FAIL, f"{source} {uri}: a sqlite file on {kind} ({point}), "
                          "whose file locks are unreliable: jobs writing at once can corrupt "
                          "it or fail with 'database is locked'", MLFLOW_SERVER_RECIPE)  # fmt: skip
        where = f"{path} on {kind} ({point})"
        if slurm and not (cluster and cluster.only_this_host()) and kind not in NETWORK_FS:
            text = (f"{source} {uri}: {where}, not a shared file system: jobs on other nodes "
                    "write elsewhere or nowhere")  # fmt: skip
            return Result(name, WARN, text, MLFLOW_SERVER_RECIPE)
        return Result(name, OK, f"{source} {uri}: {where}")
    return Result(name, SKIP, f"{source} {uri}: not checked (neither sqlite, a file nor http)")


# --- data and disk -------------------------------------------------------------------------------


def head_request(url: str, timeout: float = HTTP_TIMEOUT_S) -> tuple[int | None, int | None, str]:
    """(HTTP status or None, Content-Length or None, error) of a HEAD request."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            return response.status, int(length) if length and length.isdigit() else None, ""
    except urllib.error.HTTPError as error:
        return error.code, None, ""
    except (urllib.error.URLError, OSError, ValueError) as error:
        return None, None, str(getattr(error, "reason", error))


def needed_sources(params: dict[str, Any], plan: Any) -> tuple[list[str], list[str]]:
    """(sources, downscaled sources) the plan reads, as Snakemake fetches them."""
    from drn.pipeline.dvc_stages import _needed_sources  # the one definition, shared with dvc.yaml

    return _needed_sources(params, plan)


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.iterdir())


def check_sources(params: dict[str, Any], plan: Any, online: bool = False,
                  head: Callable[[str], tuple[int | None, int | None, str]] = head_request,
                  ) -> list[Result]:  # fmt: skip
    """Each source the plan reads: present, fetchable (url), made (skimage, downscaled), or a
    local copy that exists; ``local: null`` fails naming the key to set."""
    data = Path(params["paths"]["data"])
    fetched, derived = needed_sources(params, plan)
    results = []
    for source in fetched:
        name, spec, folder = f"data.{source}", params["sources"][source], data / source
        if _has_files(folder):
            count = sum(1 for p in folder.iterdir() if p.is_file())
            results.append(Result(name, OK, f"present: {folder} ({count} files)"))
        elif "url" in spec:
            if not online:
                results.append(Result(name, OK, f"to download from {spec['url']} (not checked: "
                                      "--online asks the server)"))  # fmt: skip
                continue
            status, length, error = head(spec["url"])
            size = f", {length / 1e9:.2f} GB" if length else ""
            if status is not None and status < 400:
                results.append(Result(name, OK, f"{spec['url']} answers (HTTP {status}{size})"))
            else:
                results.append(Result(
                    name, FAIL, f"{spec['url']} does not answer here "
                    f"({error or f'HTTP {status}'})",
                    f"on an offline cluster, copy it and set sources.{source} to "
                    f"{{local: /path/to/{Path(spec['url']).name}, member: "
                    f"{spec.get('member') or 'null'}}} in params.yaml; or point url at a mirror",
                ))  # fmt: skip
        elif "local" in spec:
            local = spec["local"]
            if not local:
                results.append(Result(name, FAIL, f"sources.{source}.local is not set and "
                                      f"{folder} is empty",
                                      f"set sources.{source}.local in params.yaml to your copy (a "
                                      "folder or an archive)"))  # fmt: skip
            elif not Path(local).exists():
                missing = f"sources.{source}.local: {local} is not there"
                results.append(Result(name, FAIL, missing, f"fix sources.{source}.local"))
            else:
                results.append(Result(name, OK, f"to copy from {local}"))
        else:
            results.append(Result(name, OK, f"to write from scikit-image's {len(spec['skimage'])} "
                                  "images"))  # fmt: skip
    for source in derived:
        spec, folder = params["downscaled"][source], data / source
        if _has_files(folder):
            results.append(Result(f"data.{source}", OK, f"present: {folder}"))
        else:
            results.append(Result(f"data.{source}", OK, f"to make from {spec['of']} "
                                  f"(bicubic 1/{spec['scale']})"))  # fmt: skip
    return results


@dataclass(frozen=True)
class Need:
    """Bytes still to come under ``path``: of which kind, what, how many, and why approximate
    ('' where exact)."""

    path: Path
    kind: str  # downloads, sources, decoded cache, checkpoints, MLflow artifacts
    what: str
    bytes: int | None  # None: unknown
    approximate: str = ""


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def source_images(params: dict[str, Any], name: str) -> list[Path]:
    """The image files source ``name`` holds, or will hold, where they can be seen now: its
    folder, its ``local`` folder, or scikit-image's files; [] otherwise."""
    from drn.core.images import IMAGE_SUFFIXES

    spec = params["sources"].get(name) or {}
    folder = Path(params["paths"]["data"]) / name
    if not _has_files(folder) and spec.get("local"):
        folder = Path(spec["local"]) / (spec.get("member") or "")
    if _has_files(folder):
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if spec.get("skimage"):
        import skimage

        shipped = Path(skimage.__file__).parent / "data"
        return [shipped / n for n in spec["skimage"] if (shipped / n).is_file()]
    return []


def _pixels(images: list[Path]) -> int:
    """Pixels of ``images``, from their headers."""
    from PIL import Image

    total = 0
    for path in images:
        with Image.open(path) as image:
            total += image.width * image.height
    return total


def weights_bytes(params: dict[str, Any], variant: str, scale: int) -> int:
    """Bytes of a model's float32 weights (built on the meta device: no memory, no time)."""
    import torch

    from drn.pipeline.params import build_from_params

    with torch.device("meta"):
        model = build_from_params(params, variant, scale)
    return 4 * sum(p.numel() for p in model.parameters())


def disk_needs(params: dict[str, Any], plan: Any, online: bool = False,
               head: Callable[[str], tuple[int | None, int | None, str]] = head_request,
               weights: Callable[[dict, str, int], int] = weights_bytes) -> list[Need]:  # fmt: skip
    """Everything the plan will still write: downloads, extracted sources, the decoded cache of
    each scale trained at, and every run's checkpoints (and tracking artifacts)."""
    from drn.pipeline.settings import training_data

    data = Path(params["paths"]["data"])
    fetched, derived = needed_sources(params, plan)
    needs: list[Need] = []
    archives: dict[str, int | None] = {}
    source_bytes: dict[str, int | None] = {}
    for source in fetched:
        spec, folder = params["sources"][source], data / source
        if _has_files(folder):
            source_bytes[source] = _folder_bytes(folder)
            continue
        if "url" in spec:
            file = Path(urllib.parse.urlsplit(spec["url"]).path).name
            known, why = ARCHIVE_BYTES.get(spec.get("sha256") or ""), ""
            if known is None and file in APPROXIMATE_ARCHIVES:
                known, why = APPROXIMATE_ARCHIVES[file]
            if known is None and online:
                known = head(spec["url"])[1]
            if file not in archives:
                archives[file] = known
                done = (data / "downloads" / file).is_file()
                needs.append(Need(data / "downloads", "downloads", file, 0 if done else known,
                                  why))  # fmt: skip
                extracted = "extracted: at most the archive (PNGs barely compress)"
                needs.append(Need(data / source, "sources", f"{file} extracted", known, extracted))
            source_bytes[source] = known
        elif "local" in spec and spec["local"] and Path(spec["local"]).exists():
            local = Path(spec["local"])
            size = _folder_bytes(local) if local.is_dir() else local.stat().st_size
            needs.append(Need(data / source, "sources", f"{source} copied", size))
            source_bytes[source] = size
        elif "skimage" in spec:
            size = sum(p.stat().st_size for p in source_images(params, source))
            why = "scikit-image's files, written as PNG"
            needs.append(Need(data / source, "sources", source, size, why))
            source_bytes[source] = size
    for source in derived:
        spec, folder = params["downscaled"][source], data / source
        of = source_bytes.get(spec["of"])
        if not _has_files(folder):
            size = of // spec["scale"] ** 2 if of else None
            why = "downscaled: 1/scale^2 of its source"
            needs.append(Need(folder, "sources", source, size, why))
    for scale in sorted({run.scale for run in plan.runs}):
        hr, _, cache, _ = training_data(params, scale)
        if (Path(cache) / "manifest.json").is_file():
            continue
        hr_name = Path(hr).name
        images = source_images(params, hr_name)
        if images:
            pixels, why = _pixels(images), ""
        elif params["sources"].get(hr_name, {}).get("sha256") == DIV2K_TRAIN[0]:
            pixels = DIV2K_TRAIN[1]
            why = "800 DIV2K images of about 2040 x 1360 (their headers, once fetched, give it)"
        else:
            pixels, why = None, ""
        size = int(pixels * 3 * (1 + 1 / scale**2)) if pixels else None
        needs.append(Need(Path(cache), "decoded cache", f"decoded cache x{scale}", size, why))
    tracked = params["tracking"]["enabled"]
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params["tracking"]["uri"]
    for run in plan.runs:
        if (Path(run.directory) / "model.pt").is_file():
            continue
        size = weights(params, run.variant, run.scale)
        # model.pt, best.pt, and last.pt with Adam's two moments beside the weights
        needs.append(Need(Path(run.directory), "checkpoints", run.name, 5 * size))
        if tracked and not uri.startswith(("http://", "https://")):
            needs.append(Need(Path("mlruns"), "MLflow artifacts", run.name, 2 * size,
                              "MLflow artifacts: model.pt and the exported model"))  # fmt: skip
    return needs


def check_disk(needs: list[Need], fs: Callable[[Path], tuple[str, str]] = filesystem,
               free: Callable[[Path], int] | None = None) -> list[Result]:  # fmt: skip
    """Per file system: free space against what the plan still writes there."""
    free = free or _free_bytes
    if not needs:
        return [Result("disk", OK, "everything the plan writes is already there")]
    groups: dict[str, list[Need]] = {}
    for need in needs:
        groups.setdefault(fs(need.path)[0], []).append(need)
    results = []
    for point, found in groups.items():
        kind = fs(found[0].path)[1]
        room = free(Path(point))
        known = sum(n.bytes or 0 for n in found)
        unknown = [n.what for n in found if n.bytes is None]
        parts: dict[str, int] = {}
        for n in found:
            parts[n.kind] = parts.get(n.kind, 0) + (n.bytes or 0)
        detail = ", ".join(f"{k} {_gb(v)}" for k, v in parts.items() if v)
        approximate = sorted({n.approximate for n in found if n.approximate and n.bytes})
        text = (f"{point} ({kind}): {_gb(room)} free; the plan still writes about {_gb(known)} "
                f"here ({detail or 'nothing'})")  # fmt: skip
        if approximate:
            text += "; approximate: " + "; ".join(approximate)
        if unknown:
            text += f"; not counted (size unknown, --online asks): {', '.join(unknown)}"
        name = f"disk:{point}"
        if known > room:
            results.append(Result(name, FAIL, text, f"free {_gb(known - room)} on {point}, or "
                                  "move paths.data / paths.runs / train.data.cache (params.yaml) "
                                  "to a file system with room"))  # fmt: skip
        elif known > 0.8 * room:
            results.append(Result(name, WARN, text, f"less than 20% to spare on {point}"))
        else:
            results.append(Result(name, OK, text))
    return results


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _gb(value: int) -> str:
    return f"{value / 1e9:.1f} GB" if value >= 1e8 else f"{value / 1e6:.1f} MB"


# --- the plan ----------------------------------------------------------------------------------


def plan_cost(params: dict[str, Any], plan: Any) -> tuple[Any | None, str]:
    """drn.pipeline.cost's projection of the plan where it exists (None, and why, if not)."""
    try:
        from drn.pipeline.cost import estimate_plan
    except ImportError:
        return None, "no GPU-hour projection here (drn.pipeline.cost is not installed)"
    try:
        return estimate_plan(params, plan), ""
    except Exception as error:  # a projection must never stop the checklist
        return None, f"no GPU-hour projection ({type(error).__name__}: {error})"


def check_plan(params: dict[str, Any], plan: Any, cost: Any | None, why: str) -> Result:
    from drn.pipeline.settings import settings_from_params

    runs, evaluations = len(plan.runs), len(plan.evaluations)
    if cost is not None and not params["resources"]["train"]["gpu"]:
        iterations = cost.total.iterations
        projection = "no GPU-hours: resources.train.gpu is 0 (the runs train on CPUs)"
    elif cost is not None:
        iterations = cost.total.iterations
        projection = (f"about {cost.total.gpu_hours:,.2f} GPU-hours (a projection from recorded "
                      "GPU throughput, not a measurement: drn plan --cost)")  # fmt: skip
    else:
        iterations = sum(
            settings_from_params(params, r.variant, r.scale, r.epochs, r.loss, r.seed).iterations
            for r in plan.runs
        )  # fmt: skip
        projection = why
    return Result("plan", OK, f"{runs} training runs ({iterations:,} iterations), "
                  f"{evaluations} evaluations; {projection}")  # fmt: skip


def check_attempts(params: dict[str, Any], cost: Any | None, profile: Profile) -> Result:
    """On Slurm each attempt of a training trains at most runtime - stop_before_limit: the
    profile's retries must cover the attempts the longest run needs."""
    name = "plan.attempts"
    if cost is None or not cost.runs:
        return Result(name, SKIP, "no projection of the runs' hours")
    if not params["resources"]["train"]["gpu"]:
        return Result(name, SKIP, "resources.train.gpu is 0: no projection of CPU training")
    spec = params["resources"]["train"]
    per_attempt = spec["runtime"] * 60 - spec["stop_before_limit"]
    longest = max(cost.runs, key=lambda c: c.hours)
    attempts = math.ceil(longest.hours * 3600 / per_attempt)
    allowed = profile.retries + 1
    text = (f"the longest run, {longest.run}, needs about {attempts} attempt(s) of "
            f"{per_attempt / 60:g} min ({longest.hours:.1f} h projected); retries: "
            f"{profile.retries} allows {allowed}")  # fmt: skip
    if attempts > allowed:
        return Result(name, WARN, text, f"set retries: {attempts - 1} or more in "
                      f"{profile.config} (each attempt resumes from the checkpoint), or a "
                      "longer resources.train.runtime where the partition allows")  # fmt: skip
    return Result(name, OK, text)


# --- everything ----------------------------------------------------------------------------------


def diagnose(params: dict[str, Any], profile: Profile, online: bool = False,
             with_probe: bool = False, run: Runner = command) -> list[Result]:  # fmt: skip
    """The whole checklist for validated ``params`` and ``profile``."""
    from drn.pipeline.plan import build_plan

    plan = build_plan(params)
    sinfo = shutil.which("sinfo")
    results, cluster = slurm_checks(params, profile, run, sinfo)
    slurm = profile.executor == "slurm" and sinfo is not None  # jobs run on other hosts
    wanted = requests(params, profile)
    env = "venv" if sys.prefix != sys.base_prefix else (
        "conda env" if (Path(sys.prefix) / "conda-meta").is_dir() else "Python installation"
    )  # fmt: skip
    results.append(shared_path("env.python", f"Python {env}", Path(sys.prefix), cluster, slurm))
    results.append(shared_path("env.workdir", "working directory", Path.cwd(), cluster, slurm))
    results.append(check_torch(wanted, torch_build()))
    if with_probe:
        if cluster is not None:
            logs = Path(params["paths"]["results"]) / "logs" / "doctor"
            results.append(probe(wanted[0], logs, run))
        else:
            results.append(Result("env.probe", SKIP, "no Slurm to submit to"))
    results.append(check_tracking(params, slurm, cluster))
    results.extend(check_sources(params, plan, online))
    results.extend(check_disk(disk_needs(params, plan, online)))
    cost, why = plan_cost(params, plan)
    results.append(check_plan(params, plan, cost, why))
    if cluster is not None:
        results.append(check_attempts(params, cost, profile))
    return results


def exit_code(results: Iterable[Result]) -> int:
    """0 when nothing failed (warnings and skips pass), 1 otherwise."""
    return 1 if any(r.status == FAIL for r in results) else 0


def render(results: list[Result], params_path: str | os.PathLike, profile: Profile) -> list[str]:
    """The checklist as text lines: one per check, and its fix under a miss."""
    source = f"profile {profile.path}" if profile.path else "no profile"
    lines = [f"drn doctor: {params_path}; {source} (executor: {profile.executor})"]
    width = max((len(r.name) for r in results), default=0)
    for r in results:
        label = r.status.upper() if r.status in (WARN, FAIL) else r.status
        lines.append(f"{label:<4}  {r.name:<{width}}  {r.found}")
        if r.fix and r.status in (WARN, FAIL):
            lines.append(f"{'':<4}  {'':<{width}}  fix: {r.fix}")
    counts = {s: sum(1 for r in results if r.status == s) for s in (OK, WARN, FAIL, SKIP)}
    lines.append(f"{len(results)} checks: {counts[OK]} ok, {counts[WARN]} warnings, "
                 f"{counts[FAIL]} failed, {counts[SKIP]} skipped")  # fmt: skip
    return lines


# --- drn doctor --last -------------------------------------------------------------------------


FINE_CAUSES = {"ok", "success", "succeeded", "completed", "done"}
RUNNING_CAUSES = {"running", "started", "submitted", "pending"}


@dataclass(frozen=True)
class Attempt:
    """The last attempt of one job, as its record says (the record's last line: it is appended
    to, attempt by attempt, over every run of the workflow)."""

    job: str  # the record's path under the logs folder, without .attempts.jsonl
    attempt: int | None
    cause: str | None
    exit_code: int | None
    message: str
    log: str
    scheduler_log: str | None  # Slurm's output file of that attempt, where the record has one
    records: str  # the .attempts.jsonl file

    @property
    def running(self) -> bool:
        """Not finished as far as the record says (or its supervisor died with it, which the
        workflow's next attempt resolves)."""
        return self.exit_code is None and (self.cause or "").lower() in RUNNING_CAUSES

    @property
    def failed(self) -> bool:
        """A non-zero exit code, or without one a cause other than success or running."""
        if self.exit_code is not None:
            return self.exit_code != 0
        cause = (self.cause or "").lower()
        return bool(cause) and cause not in FINE_CAUSES | RUNNING_CAUSES

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def last_attempts(results: str | os.PathLike) -> list[Attempt]:
    """The last attempt of every job with a record under ``{results}/logs`` (lines that are not
    a JSON object, and unreadable files, are skipped: the records are advisory)."""
    logs = Path(results) / "logs"
    found = []
    for file in sorted(logs.rglob("*.attempts.jsonl")) if logs.is_dir() else []:
        records = []
        try:
            lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        if not records:
            continue
        last = records[-1]
        stem = file.name.removesuffix(".attempts.jsonl")
        job = str(file.relative_to(logs)).removesuffix(".attempts.jsonl")
        log = last.get("log") or last.get("log_path") or str(file.with_name(f"{stem}.log"))
        cause, slurm_log = last.get("cause"), last.get("scheduler_log")
        found.append(Attempt(
            job, _number(last.get("attempt")), None if cause is None else str(cause),
            _number(last.get("exit_code")), str(last.get("message") or ""), str(log),
            None if slurm_log is None else str(slurm_log), str(file),
        ))  # fmt: skip
    return found


def _number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def render_last(attempts: list[Attempt], results: str | os.PathLike) -> list[str]:
    failed = [a for a in attempts if a.failed]
    if not attempts:
        return [f"no attempt records under {Path(results) / 'logs'} (the pipeline has not run "
                "here, or its jobs keep no records)"]  # fmt: skip
    lines = [f"{len(attempts)} jobs with records; {len(failed)} whose last attempt failed:"]
    for a in failed:
        why = [f"cause {a.cause}"] if a.cause else []
        why += [f"exit {a.exit_code}"] if a.exit_code is not None else []
        number = a.attempt if a.attempt is not None else "?"
        text = f"  {a.job}: attempt {number} failed" + (f" ({', '.join(why)})" if why else "")
        lines.append(text + (f": {a.message}" if a.message else ""))
        lines.append(f"    log: {a.log}")
        if a.scheduler_log:
            lines.append(f"    Slurm's log: {a.scheduler_log}")
    running = [a for a in attempts if a.running]
    if running:
        lines.append(f"{len(running)} whose last attempt is still running, or was lost with its "
                     "node (the workflow's next attempt finds out which):")  # fmt: skip
        lines.extend(f"  {a.job}: attempt {a.attempt}; log: {a.log}" for a in running)
    return lines
