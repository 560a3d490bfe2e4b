"""What the jobs ask for: the Snakemake profile, and each kind of job's request to Slurm.

It owns :class:`Profile` (what doctor needs of a Snakemake profile: its ``executor``,
``default-resources`` and ``set-resources`` (``slurm_partition``, ``slurm_account``),
``slurm-status-command`` and ``retries``), :func:`default_profile` and :func:`load_profile` (the
command line's ``--default-resources`` and ``--slurm-status-command`` on top), and
:class:`Request` / :func:`requests`: what each kind of job (:data:`KINDS`: the ``resources`` of
params.yaml) asks Slurm for, as drn/pipeline/workflow.py makes it and the Slurm plugin turns it
into sbatch options (a pack job's, ``pack``, from :func:`drn.pipeline.packs.pack_resources`);
:func:`gres_gpus` reads the GPUs of a request's ``gres``. It asks Slurm nothing
(:mod:`drn.doctor.slurm` does, with these) and imports no other module of the package.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KINDS = ("train", "evaluate", "prepare", "fetch")  # the kinds of jobs of resources

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


# --- GPUs of a gres ------------------------------------------------------------------------------


def split_top(text: str) -> list[str]:
    """Split a gres at commas outside parentheses (``gpu:a100:4(S:0,1),shard:8``); a request's
    here, a node's in :func:`drn.doctor.slurm.node_gpus`."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [item.strip() for item in [*items, current] if item.strip()]


def gres_gpus(gres: str | None) -> tuple[int, str | None]:
    """(count, model) of the GPUs a request's ``gres`` (``gpu``, ``gpu:2``, ``gpu:a100:2``) asks
    for; (0, None) if it asks for none."""
    for item in split_top(gres or ""):
        parts = item.split(":")
        if parts[0] == "gpu":
            if len(parts) == 1:
                return 1, None
            if len(parts) == 2:
                return (int(parts[1]), None) if parts[1].isdigit() else (1, parts[1])
            return int(re.match(r"\d*", parts[2]).group() or 1), parts[1]
    return 0, None


# --- the jobs' requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What one kind of job asks Slurm for, as the workflow's rules make it
    (drn.pipeline.workflow) and the Slurm plugin turns it into sbatch options."""

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

    def placement_options(self) -> list[str]:
        """Where the job goes and its GPUs, as sbatch options: partition, account, GRES/GPUs."""
        options = [f"--partition={self.partition}"] if self.partition else []
        options += [f"--account={self.account}"] if self.account else []
        if self.gres:
            options.append(f"--gres={self.gres}")
        elif self.gpus:
            options.append(f"--gpus={self.gpu_model}:{self.gpus}" if self.gpu_model
                           else f"--gpus={self.gpus}")  # fmt: skip
        return options

    def sbatch_options(self) -> list[str]:
        options = [f"--time={self.runtime}", f"--mem={self.mem_mb}", *self.placement_options()]
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


def requests(params: dict[str, Any], profile: Profile, largest_pack: int = 1) -> list[Request]:
    """The request of every kind of job of params.yaml's resources; with `largest_pack` > 1,
    also the plan's largest pack job (``pack``: train's, with its runs' CPUs and memory)."""
    from drn.pipeline.packs import pack_resources

    found = []
    kinds = [*KINDS, *(["pack"] if largest_pack > 1 else [])]
    for kind in kinds:
        if kind == "pack":
            spec = pack_resources(params["resources"]["train"], largest_pack)
        else:
            spec = params["resources"][kind]
        rule = "train_pack" if kind == "pack" else kind
        partition = profile.resource(rule, "slurm_partition")
        account = profile.resource(rule, "slurm_account")
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
