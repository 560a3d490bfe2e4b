"""`drn score` scores any method's outputs under the standard protocol."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import REFS, SET5, SET5_NAMES

from drn.cli import main
from drn.core.errors import DataError
from drn.core.images import image_key, pair_images

RCAN = REFS / "eval/rcan_set5"
RCAN_PUBLISHED = {2: (38.27, 0.9614), 3: (34.74, 0.9299), 4: (32.63, 0.9002)}


def score(tmp_path, *args):
    out = tmp_path / "scores.json"
    assert main(["score", *map(str, args), "--json", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_rcan_set5_outputs_give_the_published_means(tmp_path, scale):
    result = score(
        tmp_path,
        "--sr",
        RCAN / f"SR_RCAN/x{scale}",
        "--hr",
        RCAN / f"HR/x{scale}",
        "--scale",
        scale,
    )
    psnr, ssim = RCAN_PUBLISHED[scale]
    assert round(result["psnr"], 2) == psnr
    assert round(result["ssim"], 4) == ssim
    assert result["scale"] == scale and result["shave"] == scale
    assert [image["name"] for image in result["images"]] == list(SET5_NAMES)
    assert result["psnr"] == pytest.approx(sum(i["psnr"] for i in result["images"]) / 5)
    assert result["ssim"] == pytest.approx(sum(i["ssim"] for i in result["images"]) / 5)


def test_uncropped_hr_is_cropped_to_the_sr_size(tmp_path):
    # Set5 HR straight from the set (baby is 512x512; RCAN's x3 output is 510x510).
    cropped = score(tmp_path, "--sr", RCAN / "SR_RCAN/x3", "--hr", RCAN / "HR/x3", "--scale", 3)
    uncropped = score(tmp_path, "--sr", RCAN / "SR_RCAN/x3", "--hr", SET5, "--scale", 3)
    assert uncropped["images"] == cropped["images"]


def test_rgb_psnr_is_reported_beside_the_y_numbers_and_labelled(tmp_path, capsys):
    result = score(
        tmp_path, "--sr", RCAN / "SR_RCAN/x4", "--hr", RCAN / "HR/x4", "--scale", 4, "--rgb"
    )
    assert round(result["psnr"], 2) == 32.63  # the standard number is unchanged
    assert 25 < result["psnr_rgb"] < result["psnr"]
    assert all("psnr_rgb" in image for image in result["images"])
    printed = capsys.readouterr().out
    assert "PSNR-RGB" in printed and "PSNR-Y" in printed


def test_custom_shave_is_recorded(tmp_path):
    result = score(
        tmp_path, "--sr", RCAN / "SR_RCAN/x4", "--hr", RCAN / "HR/x4", "--scale", 4, "--shave", 0
    )
    assert result["shave"] == 0
    assert result["psnr"] != pytest.approx(32.63, abs=0.005)


def test_the_table_names_every_image_and_the_mean(tmp_path, capsys):
    score(tmp_path, "--sr", RCAN / "SR_RCAN/x2", "--hr", RCAN / "HR/x2", "--scale", 2)
    printed = capsys.readouterr().out
    for name in SET5_NAMES:
        assert name in printed
    assert "mean of 5" in printed and "38.27" in printed and "0.9614" in printed


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("baby_x4.png", "baby"),
        ("babyx4.png", "baby"),
        ("baby_SR.png", "baby"),
        ("baby_HR.png", "baby"),
        ("baby_HR_x4.png", "baby"),
        ("baby_RCAN_x4.png", "baby_RCAN"),
        ("img_001_SRF_4_LR.png", "img_001"),
        ("baby.png", "baby"),
        ("x4.png", "x4"),
    ],
)
def test_image_keys_drop_the_usual_tags(name, key):
    assert image_key(name) == key


def test_sr_names_with_tags_and_method_names_are_matched(tmp_path):
    sr, hr = tmp_path / "sr", tmp_path / "hr"
    sr.mkdir(), hr.mkdir()
    sr_names = ["baby_x4", "birdx4", "butterfly_SR", "head_RCAN_x4", "woman"]
    for stem, sr_name in zip(SET5_NAMES, sr_names, strict=True):
        shutil.copy(RCAN / f"SR_RCAN/x4/{stem}_RCAN_x4.png", sr / f"{sr_name}.png")
        shutil.copy(RCAN / f"HR/x4/{stem}_HR_x4.png", hr / f"{stem}_HR.png")
    result = score(tmp_path, "--sr", sr, "--hr", hr, "--scale", 4)
    assert round(result["psnr"], 2) == 32.63


def test_pairing_refuses_unmatched_and_ambiguous_files(tmp_path):
    def paths(*names):
        return [tmp_path / n for n in names]

    with pytest.raises(DataError, match=r"head\.png: no SR image"):
        pair_images(paths("baby_x2.png"), paths("baby.png", "head.png"))
    with pytest.raises(DataError, match=r"zebra_x2\.png: no HR image"):
        pair_images(paths("baby_x2.png", "zebra_x2.png"), paths("baby.png"))
    with pytest.raises(DataError, match="already matched"):
        pair_images(paths("baby_x2.png", "baby_SR.png"), paths("baby.png"))


def test_a_method_name_after_the_hr_name_needs_a_separator(tmp_path):
    sr = [tmp_path / "img_0011_EDSR_x2.png", tmp_path / "img_001_EDSR_x2.png"]
    hr = [tmp_path / "img_001.png", tmp_path / "img_0011.png"]
    assert [(name, s.name) for name, s, _ in pair_images(sr, hr)] == [
        ("img_001", "img_001_EDSR_x2.png"),
        ("img_0011", "img_0011_EDSR_x2.png"),
    ]


def test_the_console_script_runs(tmp_path):
    out = tmp_path / "x2.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "drn",
            "score",
            "--sr",
            RCAN / "SR_RCAN/x2",
            "--hr",
            RCAN / "HR/x2",
            "--scale",
            "2",
            "--json",
            out,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["psnr"] == pytest.approx(38.27, abs=0.005)
