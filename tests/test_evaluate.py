"""`drn evaluate --model bicubic` reproduces the literature's Bicubic baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SET5, SET14_SAMPLES, benchmark_set

from drn.cli import main
from drn.core.images import list_images, modcrop, read_image
from drn.protocol.metrics import psnr, shave
from drn.protocol.resize import imresize
from drn.protocol.scoring import evaluate_bicubic

# refs/eval/NOTES.md: the published dataset-level Bicubic baseline (Y, shave = scale).
PUBLISHED = {
    ("Set5", 2): (33.66, 0.9299),
    ("Set5", 3): (30.39, 0.8682),
    ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688),
    ("Set14", 3): (27.55, 0.7742),
    ("Set14", 4): (26.00, 0.7027),
    ("B100", 2): (29.56, 0.8431),
    ("B100", 3): (27.21, 0.7385),
    ("B100", 4): (25.96, 0.6675),
    ("Urban100", 2): (26.88, 0.8403),
    ("Urban100", 3): (24.46, 0.7349),
    ("Urban100", 4): (23.14, 0.6577),
}


@pytest.mark.parametrize(("dataset", "scale"), sorted(PUBLISHED))
def test_bicubic_reproduces_the_published_baseline(dataset, scale):
    folder = SET5 if dataset == "Set5" else benchmark_set(dataset)
    result = evaluate_bicubic(folder, scale)
    psnr, ssim = PUBLISHED[dataset, scale]
    assert abs(result.psnr - psnr) <= 0.02
    assert abs(result.ssim - ssim) <= 0.001
    assert len(result.images) == len(list_images(folder))


def test_set5_matches_the_exact_matlab_measurement():
    # Measured beforehand with an exact MATLAB resize (issue 2): slightly above the published
    # values, which older tools made with a slightly different LR.
    measured = {2: (33.67, 0.9303), 3: (30.40, 0.8689), 4: (28.43, 0.8111)}
    for scale, expected in measured.items():
        result = evaluate_bicubic(SET5, scale)
        assert (round(result.psnr, 2), round(result.ssim, 4)) == expected


def test_cli_writes_the_json_and_saves_the_sr_images(tmp_path, capsys):
    out, saved = tmp_path / "eval/bicubic/x3/Set5.json", tmp_path / "sr"
    args = ["evaluate", "--model", "bicubic", "--hr", str(SET5), "--scale", "3"]
    assert main([*args, "--json", str(out), "--save-sr", str(saved)]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "bicubic" and result["dataset"] == "Set5" and result["scale"] == 3
    assert set(result) >= {"scale", "psnr", "ssim", "images"}
    assert [i["name"] for i in result["images"]] == ["baby", "bird", "butterfly", "head", "woman"]
    for name in ("baby", "woman"):
        hr = modcrop(read_image(SET5 / f"{name}.png"), 3)
        np.testing.assert_array_equal(
            read_image(saved / f"{name}.png"), imresize(imresize(hr, 1 / 3), 3)
        )
    assert "Bicubic on" in capsys.readouterr().out


def test_grayscale_images_are_scored_on_their_own_values(tmp_path):
    hr = tmp_path / "gray"
    hr.mkdir()
    bridge = read_image(SET14_SAMPLES / "bridge.png")
    assert bridge.ndim == 2
    (hr / "bridge.png").write_bytes((SET14_SAMPLES / "bridge.png").read_bytes())
    result = evaluate_bicubic(hr, 2)
    hr_img = modcrop(bridge, 2)
    sr = imresize(imresize(hr_img, 0.5), 2)
    expected = psnr(shave(sr.astype(float), 2), shave(hr_img.astype(float), 2))
    assert result.images[0].psnr == pytest.approx(expected, abs=1e-12)
