"""A pack's private CUDA MPS daemon: whether MPS can serve here, and one daemon of its own.

It owns :func:`mps_unavailable` (why CUDA MPS cannot serve this machine's GPUs: no
``nvidia-cuda-mps-control`` on PATH, no NVIDIA GPU visible, a GPU in compute mode Prohibited;
None when it can) and :func:`private_mps`, a context manager that starts
``nvidia-cuda-mps-control -d`` with its pipe and log directories (``CUDA_MPS_PIPE_DIRECTORY``,
``CUDA_MPS_LOG_DIRECTORY``) in folders of its own under the caller's, so that it never meets a
system-wide daemon or another job's, waits until it answers, and stops it (``quit``) at exit,
also on an exception. It yields a :class:`Sharing`, always: how the pack's runs share the GPU,
the environment variables its child processes need (none without a daemon), and why there is
no daemon (MPS off, unavailable, or a daemon that did not start: the runs then share the GPU by
time slicing, and the job goes on).

Its users: drn.pipeline.pack_job (``drn train --run A --run B``), ``drn doctor`` (``env.mps``,
on a node through ``--probe``) and benchmarks/gpu_pack.py. Standard library only; it imports
nothing of drn, and no torch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CONTROL = "nvidia-cuda-mps-control"
PIPE, LOG = "CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"
COMMAND_TIMEOUT_S = 10.0  # nvidia-smi, and each command sent to the daemon
START_TIMEOUT_S = 10.0  # how long a started daemon has to answer
MAX_PIPE_PATH = 80  # characters: the daemon's sockets live in it (a socket path has 107 at most)


@dataclass(frozen=True)
class Sharing:
    """How a pack's runs share the GPU: through a private MPS daemon (``environment`` holds
    its two directories, to add to each child process's environment) or by time slicing
    (``environment`` is empty and ``reason`` says why there is no MPS)."""

    environment: dict[str, str] = field(default_factory=dict)
    reason: str | None = None

    @property
    def mps(self) -> bool:
        """Whether a private MPS daemon serves the runs."""
        return bool(self.environment)

    def describe(self) -> str:
        """One line for the job's log: which of the two, and why no MPS."""
        if self.mps:
            pipe = self.environment[PIPE]
            return f"the runs share the GPU through a private CUDA MPS daemon ({pipe})"
        return f"the runs share the GPU by time slicing (no MPS: {self.reason})"


def _run(args: list[str], env: dict[str, str] | None = None, text_in: str | None = None,
         timeout: float = COMMAND_TIMEOUT_S) -> tuple[int | None, str]:  # fmt: skip
    """(exit code, or None where it could not run or finish in time, and what it said)."""
    try:
        done = subprocess.run(
            args, input=text_in, capture_output=True, text=True, timeout=timeout, env=env,
            stdin=None if text_in is not None else subprocess.DEVNULL,
        )  # fmt: skip
    except FileNotFoundError:
        return None, f"{args[0]}: command not found"
    except subprocess.TimeoutExpired:
        return None, f"`{' '.join(args)}` did not answer within {timeout:g} s"
    except OSError as error:
        return None, f"{args[0]}: {error}"
    return done.returncode, (done.stdout + done.stderr).strip()


def _said(code: int | None, output: str, shown: str) -> str:
    """Why a command failed, in one line."""
    last = output.splitlines()[-1].strip() if output else ""
    if code is None:
        return output
    return f"`{shown}` exited {code}" + (f": {last}" if last else "")


def _visible(visible_devices: str | None) -> list[str] | None:
    """The CUDA_VISIBLE_DEVICES entries (None: not set, every GPU), up to the first invalid
    one, as CUDA reads them: '' , '-1' and 'NoDevFiles' hide every GPU."""
    if visible_devices is None:
        return None
    entries = []
    for entry in (e.strip() for e in visible_devices.split(",")):
        if not entry or entry.startswith("-") or entry == "NoDevFiles":
            break
        entries.append(entry)
    return entries


def mps_unavailable(visible_devices: str | None = None) -> str | None:
    """Why CUDA MPS cannot serve this machine's GPUs, or None when it can: no
    ``nvidia-cuda-mps-control`` on PATH; no NVIDIA GPU visible (``nvidia-smi -L`` missing,
    failing or listing none; ``visible_devices``, by default $CUDA_VISIBLE_DEVICES, hiding them
    all); a visible GPU in compute mode Prohibited (Exclusive_Process is fine: the MPS server
    is then the GPU's one process). It starts nothing."""
    if shutil.which(CONTROL) is None:
        return f"{CONTROL} is not on PATH"
    if visible_devices is None:
        visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = _visible(visible_devices)
    if visible == []:
        return f"CUDA_VISIBLE_DEVICES={visible_devices!r} hides every GPU"
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi is not on PATH: no NVIDIA driver here"
    code, output = _run(["nvidia-smi", "-L"])
    if code != 0:
        return f"no NVIDIA GPU: {_said(code, output, 'nvidia-smi -L')}"
    if not any(line.startswith("GPU ") for line in output.splitlines()):
        return "no NVIDIA GPU: nvidia-smi -L lists none"
    query = ["nvidia-smi", "--query-gpu=index,uuid,compute_mode", "--format=csv,noheader"]
    code, output = _run(query)
    if code != 0:
        return None  # the compute mode is unknown, not a reason: the daemon's start says
    gpus = [[part.strip() for part in line.split(",")] for line in output.splitlines()]
    gpus = [g for g in gpus if len(g) == 3]
    if visible is not None:
        shown = [g for g in gpus if g[0] in visible or any(g[1].startswith(v) for v in visible)]
        gpus = shown or gpus  # entries nvidia-smi does not name (MIG devices): every GPU
    prohibited = [g[0] for g in gpus if g[2].lower() == "prohibited"]
    if prohibited:
        return f"GPU {', '.join(prohibited)} in compute mode Prohibited: no CUDA process may use it"
    return None


def _answers(env: dict[str, str]) -> bool:
    """Whether the daemon of ``env``'s pipe directory answers (its socket is there, and a
    ``get_server_list`` through it succeeds)."""
    if not (Path(env[PIPE]) / "control").exists():
        return False
    code, _ = _run([CONTROL], env, "get_server_list\n")
    return code == 0


def _start(env: dict[str, str], log: Path) -> str | None:
    """Start the daemon of ``env`` and wait until it answers; None, or why it did not start."""
    with (log / "start.txt").open("w") as said:  # not a pipe: the daemon forks and keeps it
        try:
            code = subprocess.run(
                [CONTROL, "-d"], env=env, stdin=subprocess.DEVNULL, stdout=said,
                stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT_S, start_new_session=True,
            ).returncode  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"`{CONTROL} -d` failed: {error}"
    if code != 0:
        said = (log / "start.txt").read_text(errors="replace").strip()
        return _said(code, said, f"{CONTROL} -d")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(env):
        if time.monotonic() > deadline:
            return f"the daemon of `{CONTROL} -d` did not answer within {START_TIMEOUT_S:g} s"
        time.sleep(0.1)
    return None


def _stop(env: dict[str, str]) -> None:
    """``echo quit | nvidia-cuda-mps-control`` to the daemon of ``env``; a miss is printed."""
    code, output = _run([CONTROL], env, "quit\n")
    if code != 0:
        print(f"drn: the private MPS daemon of {env[PIPE]} did not stop: "
              f"{_said(code, output, f'echo quit | {CONTROL}')}", file=sys.stderr)  # fmt: skip


@contextlib.contextmanager
def private_mps(directory: Path, mode: str | bool = "auto") -> Iterator[Sharing]:
    """A private CUDA MPS daemon for the processes started inside the ``with`` (see the module
    docstring); yields a :class:`Sharing`. ``mode``: ``"auto"`` (MPS where
    :func:`mps_unavailable` says it can serve) or ``"off"`` (or False, as YAML reads ``off``):
    no daemon. Its pipe and log directories are ``{directory}/mps-pipe`` and
    ``{directory}/mps-log``; ``directory`` is the caller's (a temporary folder of the job)."""
    if mode is False or mode == "off":
        yield Sharing(reason="MPS is off")
        return
    if mode != "auto":
        raise ValueError(f"MPS mode {mode!r}: auto or off")
    reason = mps_unavailable()
    pipe, log = Path(directory).resolve() / "mps-pipe", Path(directory).resolve() / "mps-log"
    if reason is None and len(str(pipe)) > MAX_PIPE_PATH:
        reason = f"{pipe} is too long for the daemon's sockets (over {MAX_PIPE_PATH} characters)"
    if reason is not None:
        yield Sharing(reason=reason)
        return
    for folder in (pipe, log):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
    own = {PIPE: str(pipe), LOG: str(log)}
    env = {**os.environ, **own}
    failed = _start(env, log)
    try:
        yield Sharing(own) if failed is None else Sharing(reason=f"no MPS daemon: {failed}")
    finally:
        _stop(env)  # after a failed start too: a daemon may be up without answering
