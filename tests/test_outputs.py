"""Files the pipeline writes are shareable: the permissions the umask allows, written atomically."""

from __future__ import annotations

import os
import stat

import pytest

from drn.core.images import atomic_write, current_umask
from drn.engine.checkpoint import load_checkpoint, save_checkpoint
from drn.models import build_model


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test, and put the old one back."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_an_atomic_write_gets_the_permissions_the_umask_allows(tmp_path, umask, mask, expected):
    umask(mask)
    assert current_umask() == mask
    with atomic_write(tmp_path / "scores.json") as tmp:
        tmp.write_text("{}")
    assert mode(tmp_path / "scores.json") == expected
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]  # no temporary file left


def test_a_checkpoint_is_readable_by_colleagues(tmp_path, umask):
    umask(0o022)
    save_checkpoint(tmp_path / "last.pt", build_model("drn", 2, channels=8, blocks=1, groups=1))
    assert mode(tmp_path / "last.pt") == 0o644
    assert load_checkpoint(tmp_path / "last.pt")["model"]["name"] == "drn"


def test_the_demo_pipelines_checkpoints_jsons_and_report_are_shareable(demo_workspace):
    """The demo ran under the test process's umask; what it wrote must follow it."""
    expected = 0o666 & ~current_umask()
    outputs = [
        demo_workspace / "runs/drn_x2/checkpoints/last.pt",
        demo_workspace / "runs/drn_x2/model.pt",
        demo_workspace / "results/eval/drn/x2/photos.json",
        demo_workspace / "results/summary.md",
        demo_workspace / "reports/report.html",
    ]
    assert {p.relative_to(demo_workspace).as_posix(): oct(mode(p)) for p in outputs} == {
        p.relative_to(demo_workspace).as_posix(): oct(expected) for p in outputs
    }
