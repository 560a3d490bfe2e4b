"""The ``env.*`` and ``tracking`` checks: what the jobs run with, and where they record it.

It owns :func:`shared_path` (the Python environment and the working directory on a file system
the compute nodes see, not /tmp or another node-local disk), :func:`torch_build` and
:func:`check_torch` (torch with CUDA where jobs ask for GPUs, from its build here, read without
importing torch), :func:`probe` (``--probe``, ``env.probe``: one 1-minute job with the training
job's GPU request, partition and account that imports torch with this Python on a node and
counts the GPUs CUDA sees; its output under ``{paths.results}/logs/doctor/``, the only thing
doctor writes), :func:`check_mps` (``env.mps``, informational: whether a pack's runs (``drn train
--run A --run B``) can share the GPU through a private CUDA MPS daemon, or why they share it by
time slicing, from :func:`drn.engine.mps.mps_unavailable` where the jobs run: here, or on the
probe's node), and :func:`check_tracking` (a sqlite store on a network file system (NFS,
Lustre, GPFS...: unreliable file locks) fails with the ``mlflow server`` recipe; a server URI
must answer an HTTP GET, and from the compute nodes too).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drn.doctor.profile import Request
from drn.doctor.result import FAIL, HTTP_TIMEOUT_S, OK, SKIP, WARN, Result, Runner
from drn.doctor.slurm import Cluster, leading_int, parse_record
from drn.doctor.storage import NETWORK_FS, NODE_LOCAL_DIRS, NODE_LOCAL_FS, filesystem
from drn.engine.mps import mps_unavailable

PROBE_WAIT_S = 180.0  # how long --probe waits for its job to start and finish

MLFLOW_SERVER_RECIPE = (
    "run one MLflow server on the login node, bound to its cluster-internal address (README, "
    "MLflow): `mlflow server --host ADDRESS --port 5000 --backend-store-uri "
    "sqlite:///$PWD/mlflow.db --artifacts-destination $PWD/mlartifacts`, then `export "
    "MLFLOW_TRACKING_URI=http://ADDRESS:5000` before submitting"
)


# --- the environment ---------------------------------------------------------------------------


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
    "torch.cuda.device_count(), sys.executable, flush=True)\n"
    "try:\n    from drn.engine.mps import mps_unavailable; why = mps_unavailable()\n"
    "except Exception as error:\n    why = f'not checked ({type(error).__name__}: {error})'\n"
    "print('drn-mps', 'unavailable ' + why if why else 'available')"
)
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
            "BOOT_FAIL", "PREEMPTED", "DEADLINE")  # fmt: skip


def probe(request: Request, logs: Path, run: Runner, wait_s: float = PROBE_WAIT_S,
          poll_s: float = 1.0, mps_mode: str | bool = "auto") -> list[Result]:  # fmt: skip
    """Submit a 1-minute job with the training job's GPU request, partition and account that
    imports torch with this Python, counts the GPUs CUDA sees and asks
    :func:`~drn.engine.mps.mps_unavailable` on its node; wait for it (bounded). Two results:
    ``env.probe`` and the node's ``env.mps`` (:func:`check_mps`)."""
    result, text, node = _probe_job(request, logs, run, wait_s, poll_s)
    line = next((x for x in text.splitlines() if x.startswith("drn-mps ")), None)
    if result.status != OK or line is None:
        said = "the probe job did not say" if result.status == OK else "see env.probe"
        return [result, Result(MPS_CHECK, SKIP, f"MPS not checked on a node: {said}")]
    available = line.split()[1:2] == ["available"]
    reason = None if available else line.partition(" unavailable ")[2].strip() or line
    return [result, check_mps(mps_mode, request.gpus, f"node {node}", reason)]


def _probe_job(request: Request, logs: Path, run: Runner, wait_s: float,
               poll_s: float) -> tuple[Result, str, str]:  # fmt: skip
    """``env.probe``, the probe job's output and its node."""
    name = "env.probe"
    logs.mkdir(parents=True, exist_ok=True)
    options = ["--time=1", "--mem=2000", "--job-name=drn-doctor-probe",
               f"--output={logs.resolve()}/probe-%j.out", *request.placement_options()]  # fmt: skip
    wrap = f"{shlex.quote(sys.executable)} -c {shlex.quote(PROBE_CODE)}"
    submitted = run(["sbatch", "--parsable", *options, "--wrap", wrap])
    if not submitted.ok:
        return Result(name, FAIL, f"the probe job was refused: {submitted.why()}",
                      "see slurm.resources.train"), "", "?"  # fmt: skip
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
        late = Result(name, WARN, f"probe job {job} still {state or 'unknown'} after "
                      f"{wait_s:g} s (Reason={record.get('Reason', '?')}); cancelled",
                      "run drn doctor --probe again when the partition is less busy")  # fmt: skip
        return late, "", "?"
    output = logs / f"probe-{job}.out"
    text = output.read_text(errors="replace") if output.is_file() else ""
    line = next((x for x in text.splitlines() if x.startswith("drn-probe ")), None)
    node = record.get("NodeList", "?")
    if state != "COMPLETED" or line is None:
        tail = " | ".join(text.strip().splitlines()[-3:]) or "no output"
        failed = Result(name, FAIL, f"probe job {job} on {node}: {state}, exit "
                        f"{record.get('ExitCode', '?')}: {tail} ({output})",
                        f"the nodes must see {sys.executable}: see env.python")  # fmt: skip
        return failed, text, node
    _, version, available, count, _ = [*line.split(), "", "", "", ""][:5]
    if request.gpus and (available != "True" or leading_int(count) < request.gpus):
        return Result(name, FAIL, f"probe job {job} on {node}: torch {version}, CUDA available "
                      f"{available}, {count} GPU(s) seen of {request.gpus} asked for",
                      "install a CUDA build of torch (env.torch), and check the node's driver "
                      "(nvidia-smi in a job)"), text, node  # fmt: skip
    gpus = f"CUDA sees {count} GPU(s)" if request.gpus else "no GPUs asked for"
    return Result(name, OK, f"probe job {job} on {node}: torch {version} imports; {gpus} "
                  f"({output})"), text, node  # fmt: skip


# --- MPS ---------------------------------------------------------------------------------------

MPS_CHECK = "env.mps"


def check_mps(mode: str | bool, gpus: int, where: str, reason: str | None) -> Result:
    """``env.mps``, informational (ok or skip, never a failure: time slicing still works):
    whether a pack's runs can share the GPU ``where`` the jobs run through a private CUDA MPS
    daemon (``reason`` None), or why they share it by time slicing."""
    if mode is False or mode == "off":
        return Result(MPS_CHECK, SKIP, "resources.train.mps is off: a pack's runs share the GPU "
                      "by time slicing")  # fmt: skip
    if not gpus:
        said = "CUDA MPS available" if reason is None else f"no CUDA MPS ({reason})"
        return Result(MPS_CHECK, SKIP, f"train jobs ask for no GPUs (resources.train.gpu: 0): "
                      f"no MPS to use; {where}: {said}")  # fmt: skip
    if reason is None:
        return Result(MPS_CHECK, OK, f"{where}: CUDA MPS available: a pack's runs (drn train "
                      "--run A --run B) share the GPU through a private MPS daemon")  # fmt: skip
    return Result(MPS_CHECK, OK, f"{where}: no CUDA MPS ({reason}): a pack's runs share the GPU "
                  "by time slicing")  # fmt: skip


def check_mps_here(mode: str | bool, gpus: int, slurm: bool, cluster: Cluster | None,
                   unavailable: Callable[[], str | None] = mps_unavailable) -> Result:  # fmt: skip
    """``env.mps`` without a probe: asked here where the jobs run here (no Slurm, or the
    cluster's only node is this host); else skipped for ``--probe``, which asks a node."""
    if not slurm:
        return check_mps(mode, gpus, "here (jobs run on this machine)", unavailable())
    if cluster is not None and cluster.only_this_host():
        return check_mps(mode, gpus, "here (the cluster's only node)", unavailable())
    if mode is False or mode == "off":
        return check_mps(mode, gpus, "", None)
    return Result(MPS_CHECK, SKIP, "the jobs run on the cluster's nodes: drn doctor --probe asks "
                  "one whether a pack's runs can use CUDA MPS")  # fmt: skip


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
