"""drn/engine/mps.py against fake ``nvidia-cuda-mps-control`` and ``nvidia-smi`` scripts on PATH:
MPS off, unavailable (not installed, no GPU visible, a Prohibited GPU), a private daemon started
and stopped (also on an exception, never the system-wide one), and a daemon that fails to start
or never answers (time slicing, not a failed job)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drn.engine import mps
from drn.engine.mps import Sharing, mps_unavailable, private_mps

# The fake daemon: `-d` records its call, exits, and (as the real one) its forked daemon makes
# the socket {pipe}/control a moment later; a command read on stdin needs that socket, and
# `quit` removes it. FAKE_MPS_FAIL: `-d` fails with that message; FAKE_MPS_SILENT: the daemon
# never answers. Every call appends "ARGS|STDIN|PIPE|LOG" to $FAKE_MPS_CALLS.
CONTROL = """#!/bin/sh
PATH=/usr/bin:/bin
if [ "$1" = "-d" ]; then
  echo "-d||$CUDA_MPS_PIPE_DIRECTORY|$CUDA_MPS_LOG_DIRECTORY" >> "$FAKE_MPS_CALLS"
  if [ -n "$FAKE_MPS_FAIL" ]; then echo "$FAKE_MPS_FAIL" >&2; exit 1; fi
  if [ -z "$FAKE_MPS_SILENT" ]; then
    ( sleep 0.3; : > "$CUDA_MPS_PIPE_DIRECTORY/control" ) &
  fi
  exit 0
fi
read command
echo "$*|$command|$CUDA_MPS_PIPE_DIRECTORY|$CUDA_MPS_LOG_DIRECTORY" >> "$FAKE_MPS_CALLS"
if [ ! -e "$CUDA_MPS_PIPE_DIRECTORY/control" ]; then
  echo "Cannot find MPS control daemon process" >&2; exit 1
fi
if [ "$command" = quit ]; then rm "$CUDA_MPS_PIPE_DIRECTORY/control"; fi
exit 0
"""
SMI = """#!/bin/sh
if [ "$1" = "-L" ]; then
  if [ -n "$FAKE_SMI_FAIL" ]; then
    echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."; exit 9
  fi
  echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)"
  echo "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-bbbb)"
  exit 0
fi
echo "0, GPU-aaaa, ${FAKE_MODE_0:-Default}"
echo "1, GPU-bbbb, ${FAKE_MODE_1:-Default}"
"""


def fake_tools(folder: Path, monkeypatch, *names: str) -> Path:
    """A folder holding the fakes ``names`` (of nvidia-cuda-mps-control, nvidia-smi), made the
    whole PATH (no real NVIDIA tool of this machine is found); returns the calls' record."""
    folder.mkdir()
    scripts = {"nvidia-cuda-mps-control": CONTROL, "nvidia-smi": SMI}
    for name in names:
        (folder / name).write_text(scripts[name])
        (folder / name).chmod(0o755)
    calls = folder / "calls.txt"
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setenv("FAKE_MPS_CALLS", str(calls))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return calls


def recorded(calls: Path) -> list[list[str]]:
    """The fake daemon's calls: [args, stdin, pipe directory, log directory] each."""
    return [line.split("|") for line in calls.read_text().splitlines()] if calls.exists() else []


BOTH = ("nvidia-cuda-mps-control", "nvidia-smi")


@pytest.mark.parametrize("mode", ["off", False])
def test_off_starts_no_daemon(tmp_path, monkeypatch, mode):
    calls = fake_tools(tmp_path / "bin", monkeypatch, *BOTH)
    assert mps_unavailable() is None  # it could: off alone keeps it off
    with private_mps(tmp_path / "job", mode) as sharing:
        assert sharing == Sharing({}, "MPS is off") and not sharing.mps
        assert "time slicing" in sharing.describe()
    assert recorded(calls) == [] and not (tmp_path / "job").exists()
    with pytest.raises(ValueError, match="auto or off"), private_mps(tmp_path, "on"):
        pass


def test_not_installed_is_time_slicing_with_the_reason(tmp_path, monkeypatch):
    fake_tools(tmp_path / "bin", monkeypatch, "nvidia-smi")
    assert mps_unavailable() == "nvidia-cuda-mps-control is not on PATH"
    with private_mps(tmp_path / "job") as sharing:
        assert sharing.environment == {} and not sharing.mps
        assert sharing.reason == "nvidia-cuda-mps-control is not on PATH"
        assert sharing.describe() == (
            "the runs share the GPU by time slicing (no MPS: nvidia-cuda-mps-control is not on "
            "PATH)"
        )
    assert not (tmp_path / "job").exists()


def test_no_gpu_visible_or_a_prohibited_one_is_a_reason(tmp_path, monkeypatch):
    fake_tools(tmp_path / "bin", monkeypatch, "nvidia-cuda-mps-control")
    assert mps_unavailable() == "nvidia-smi is not on PATH: no NVIDIA driver here"
    (tmp_path / "bin/nvidia-smi").write_text(SMI)
    (tmp_path / "bin/nvidia-smi").chmod(0o755)
    assert mps_unavailable() is None
    for hidden in ("", "-1", "NoDevFiles"):
        assert mps_unavailable(hidden) == f"CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert mps_unavailable() == "CUDA_VISIBLE_DEVICES='' hides every GPU"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("FAKE_SMI_FAIL", "1")
    assert mps_unavailable() == (
        "no NVIDIA GPU: `nvidia-smi -L` exited 9: NVIDIA-SMI has failed because it couldn't "
        "communicate with the NVIDIA driver."
    )
    monkeypatch.delenv("FAKE_SMI_FAIL")
    monkeypatch.setenv("FAKE_MODE_0", "Exclusive_Process")  # the MPS server is the one process
    assert mps_unavailable() is None
    monkeypatch.setenv("FAKE_MODE_1", "Prohibited")
    reason = "GPU 1 in compute mode Prohibited: no CUDA process may use it"
    assert mps_unavailable() == reason
    assert mps_unavailable("0") is None and mps_unavailable("GPU-aaaa") is None  # not GPU 1's
    assert mps_unavailable("1") == reason and mps_unavailable("0,GPU-bbbb") == reason


def test_a_private_daemon_is_started_and_stopped(tmp_path, monkeypatch):
    calls = fake_tools(tmp_path / "bin", monkeypatch, *BOTH)
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", "/tmp/system-wide-mps")  # never this one
    job = tmp_path / "job"
    pipe, log = str(job / "mps-pipe"), str(job / "mps-log")
    with private_mps(job) as sharing:
        assert sharing.mps and sharing.reason is None
        assert sharing.environment == {"CUDA_MPS_PIPE_DIRECTORY": pipe,
                                       "CUDA_MPS_LOG_DIRECTORY": log}  # fmt: skip
        assert "private CUDA MPS daemon" in sharing.describe() and pipe in sharing.describe()
        assert (job / "mps-pipe/control").exists()  # it waited until the daemon answered
        during = recorded(calls)
    assert during[0] == ["-d", "", pipe, log]
    assert during[-1] == ["", "get_server_list", pipe, log]  # the question it answered
    assert recorded(calls)[len(during) :] == [["", "quit", pipe, log]]
    assert not (job / "mps-pipe/control").exists()  # stopped


def test_the_daemon_stops_on_an_exception(tmp_path, monkeypatch):
    calls = fake_tools(tmp_path / "bin", monkeypatch, *BOTH)
    with pytest.raises(RuntimeError, match="a run crashed"), private_mps(tmp_path / "job"):
        raise RuntimeError("a run crashed")
    assert recorded(calls)[-1][:2] == ["", "quit"]
    assert not (tmp_path / "job/mps-pipe/control").exists()


def test_a_daemon_that_fails_to_start_is_time_slicing(tmp_path, monkeypatch, capsys):
    calls = fake_tools(tmp_path / "bin", monkeypatch, *BOTH)
    monkeypatch.setenv("FAKE_MPS_FAIL", "An instance of this daemon is already running")
    with private_mps(tmp_path / "job") as sharing:
        assert sharing.environment == {} and not sharing.mps
        assert sharing.reason == (
            "no MPS daemon: `nvidia-cuda-mps-control -d` exited 1: An instance of this daemon is "
            "already running"
        )
        assert "time slicing" in sharing.describe()
    assert [c[:2] for c in recorded(calls)] == [["-d", ""], ["", "quit"]]
    assert "did not stop" in capsys.readouterr().err  # nothing answered the quit: said


def test_a_daemon_that_never_answers_is_time_slicing(tmp_path, monkeypatch):
    calls = fake_tools(tmp_path / "bin", monkeypatch, *BOTH)
    monkeypatch.setenv("FAKE_MPS_SILENT", "1")
    monkeypatch.setattr(mps, "START_TIMEOUT_S", 0.5)
    with private_mps(tmp_path / "job") as sharing:
        assert not sharing.mps
        assert sharing.reason == (
            "no MPS daemon: the daemon of `nvidia-cuda-mps-control -d` did not answer within 0.5 s"
        )
    assert recorded(calls)[0][0] == "-d" and recorded(calls)[-1][:2] == ["", "quit"]


def test_a_pipe_directory_too_long_for_a_socket_is_a_reason(tmp_path, monkeypatch):
    calls = fake_tools(tmp_path / "bin", monkeypatch, *BOTH)
    with private_mps(tmp_path / ("x" * 100)) as sharing:
        assert not sharing.mps and "too long for the daemon's sockets" in sharing.reason
    assert recorded(calls) == []
