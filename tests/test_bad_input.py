"""Bad input: one line naming the file or argument, exit 2 (usage) or 1 (data), no partial JSON."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import REFS, SET5
from PIL import Image

from drn.cli import main

RCAN = REFS / "eval/rcan_set5"


def run(*args):
    try:
        return main([str(a) for a in args])
    except SystemExit as exit_:  # argparse's usage errors
        return exit_.code


@pytest.fixture
def folders(tmp_path):
    """A valid SR/HR pair of folders (RCAN Set5 x2) that each test then breaks in one way."""
    sr, hr = tmp_path / "sr", tmp_path / "hr"
    shutil.copytree(RCAN / "SR_RCAN/x2", sr)
    shutil.copytree(RCAN / "HR/x2", hr)
    return sr, hr


def score(sr, hr, scale=2):
    """The arguments of `drn score` on an SR and an HR folder."""
    return ("score", "--sr", sr, "--hr", hr, "--scale", scale)


def expect_failure(capsys, tmp_path, code, needle, *args):
    out = tmp_path / "out" / "scores.json"
    assert run(*args, "--json", out) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("drn: error: "), err
    assert needle in err
    assert not out.parent.exists() or not any(out.parent.iterdir())  # nothing half-written


def test_missing_folder_is_a_usage_error(capsys, tmp_path, folders):
    sr, _ = folders
    missing = tmp_path / "nowhere"
    expect_failure(capsys, tmp_path, 2, str(missing), *score(sr, missing))


def test_empty_folder_is_a_data_error(capsys, tmp_path, folders):
    sr, _ = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    expect_failure(capsys, tmp_path, 1, str(empty), *score(sr, empty))


def test_a_file_that_is_not_an_image_is_named(capsys, tmp_path, folders):
    sr, hr = folders
    (sr / "baby_RCAN_x2.png").write_text("this is not a PNG")
    expect_failure(capsys, tmp_path, 1, "baby_RCAN_x2.png: not a readable image", *score(sr, hr))


def test_a_truncated_image_is_named(capsys, tmp_path, folders):
    sr, hr = folders
    target = hr / "head_HR_x2.png"
    target.write_bytes(target.read_bytes()[:5000])
    expect_failure(capsys, tmp_path, 1, "head_HR_x2.png: not a readable image", *score(sr, hr))


def test_sizes_that_cannot_match_are_named(capsys, tmp_path, folders):
    sr, hr = folders
    image = Image.open(sr / "bird_RCAN_x2.png")
    image.crop((0, 0, image.width - 4, image.height)).save(sr / "bird_RCAN_x2.png")
    expect_failure(capsys, tmp_path, 1, "bird_RCAN_x2.png: SR is 284x288 but HR", *score(sr, hr))


def test_an_sr_larger_than_its_hr_is_refused(capsys, tmp_path, folders):
    sr, hr = folders
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(sr / "bird_RCAN_x2.png")
    expect_failure(capsys, tmp_path, 1, "bird_RCAN_x2.png", *score(sr, hr))


def test_colour_sr_against_grayscale_hr_is_refused(capsys, tmp_path, folders):
    sr, hr = folders
    Image.open(hr / "woman_HR_x2.png").convert("L").save(hr / "woman_HR_x2.png")
    expect_failure(capsys, tmp_path, 1, "is colour", *score(sr, hr))


@pytest.mark.parametrize("scale", ["1", "0", "-2", "2.5", "x4", ""])
def test_an_unknown_scale_is_a_usage_error(capsys, tmp_path, folders, scale):
    sr, hr = folders
    expect_failure(capsys, tmp_path, 2, "--scale", *score(sr, hr, scale))


def test_an_unknown_model_is_a_usage_error(capsys, tmp_path):
    expect_failure(
        capsys,
        tmp_path,
        2,
        "--model edsr",
        "evaluate",
        "--model",
        "edsr",
        "--hr",
        SET5,
        "--scale",
        2,
    )


def test_an_image_smaller_than_the_ssim_window_is_named(capsys, tmp_path):
    hr = tmp_path / "hr"
    hr.mkdir()
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(hr / "tiny.png")
    expect_failure(
        capsys, tmp_path, 1, "tiny.png", "evaluate", "--model", "bicubic", "--hr", hr, "--scale", 2
    )


def test_a_failed_run_keeps_the_previous_json(tmp_path, folders, capsys):
    sr, hr = folders
    out = tmp_path / "scores.json"
    assert run(*score(sr, hr), "--json", out) == 0
    before = out.read_text()
    (sr / "baby_RCAN_x2.png").write_text("broken")
    assert run(*score(sr, hr), "--json", out) == 1
    assert out.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr", "scores.json", "sr"]
