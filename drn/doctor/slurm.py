"""What Slurm says about itself, and the ``slurm.*`` checks of the jobs' requests against it.

It owns the reading of ``scontrol`` (:func:`parse_record`, :func:`parse_config`,
:func:`slurm_minutes`, :func:`node_gpus`, :func:`leading_int`), :class:`Cluster` and
:func:`read_cluster` (the partitions, nodes and configuration: ``scontrol show
partition/node/config``), and the checks, which :func:`slurm_checks` runs in this order: the
controller answers (``sinfo``); the partition given (or the default) exists, is up and takes
this user and account; the account is one the Slurm plugin will accept (it checks with
``sacctmgr``, then ``sshare``); each kind of job (the requests of
:func:`drn.doctor.profile.requests`) fits a node of the partition (GPUs of the model asked for,
CPUs, memory) and ``sbatch --test-only`` accepts it; its runtime is within the partition's
MaxTime; the status command answers (``sacct``; else ``squeue``, whose memory of finished jobs
is MinJobAge). Where there is no Slurm (no ``sinfo``, or a profile whose executor is not slurm)
they are skipped: "no Slurm here". Every command runs through the
:data:`~drn.doctor.result.Runner` a check is given.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import math
import os
import re
import shutil
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from drn.doctor.profile import Profile, Request, requests, split_top
from drn.doctor.result import FAIL, OK, SKIP, WARN, Result, Runner

NO_SLURM = "skipped: no Slurm here"
MIN_JOB_AGE_S = 600  # README: squeue forgets finished jobs after MinJobAge seconds

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


def node_gpus(gres: str | None) -> dict[str | None, int]:
    """GPUs of a node's ``Gres`` (``gpu:a100:4(S:0-1),gpu:2``): {model or None: count}."""
    gpus: dict[str | None, int] = {}
    if not gres or gres.strip() in ("(null)", "N/A"):
        return gpus
    for item in split_top(gres):
        parts = item.split("(")[0].split(":")
        if parts[0] != "gpu" or len(parts) < 2:
            continue
        count = re.match(r"\d+", parts[-1])
        model = parts[1] if len(parts) >= 3 else None
        gpus[model] = gpus.get(model, 0) + (int(count.group()) if count else 1)
    return gpus


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
    cpus = leading_int(node.get("CPUEfctv") or node.get("CPUTot"))
    limit = leading_int(partition.get("MaxCPUsPerNode"))
    cpus = min(cpus, limit) if limit else cpus
    if cpus < request.cpus:
        why.append(f"{request.cpus} CPUs (has {cpus})")
    memory = leading_int(node.get("RealMemory")) - leading_int(node.get("MemSpecLimit"))
    limit = leading_int(partition.get("MaxMemPerNode"))
    memory = min(memory, limit) if limit else memory
    if memory < request.mem_mb:
        why.append(f"{request.mem_mb} MB (has {memory})")
    return why


def leading_int(text: str | None) -> int:
    """The number a Slurm value starts with (``300 sec``, ``64000M``); 0 if none."""
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
            "(drn/pipeline/workflow.py) passes gpu/gpu_model, which the plugin sends as --gpus",
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
    age = leading_int(cluster.config.get("MinJobAge")) if cluster.config.get("MinJobAge") else None
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


def slurm_checks(params: dict[str, Any], profile: Profile, run: Runner, sinfo: str | None,
                 largest_pack: int = 1) -> tuple[list[Result], Cluster | None]:  # fmt: skip
    """Every Slurm check (each kind of job's request, the largest pack job's among them), or
    one skip where there is no Slurm; and the cluster, if read."""
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
    for request in requests(params, profile, largest_pack):
        results.append(check_request(cluster, request, run, given))
        results.append(check_time_limit(cluster, request, profile.retries, given))
    results.append(check_status_command(cluster, profile, run))
    return results, cluster
