"""`make demo` (drn demo): the bicubic baseline on scikit-image's own images, offline."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import REPO

from drn.cli import main


def test_demo_scores_every_sample_image_at_every_scale(tmp_path, capsys):
    params = yaml.safe_load((REPO / "params.yaml").read_text())["demo"]
    assert main(["demo", "--params", str(REPO / "params.yaml"), "--out", str(tmp_path)]) == 0
    names = sorted(name.rsplit(".", 1)[0] for name in params["sample_images"])
    assert sorted(p.stem for p in (tmp_path / "samples").iterdir()) == names
    for scale in params["scales"]:
        result = json.loads((tmp_path / f"bicubic/x{scale}.json").read_text())
        assert result["model"] == "bicubic" and result["scale"] == scale
        assert sorted(i["name"] for i in result["images"]) == names
        assert 20 < result["psnr"] < 40 and 0.5 < result["ssim"] < 1
    printed = capsys.readouterr().out
    assert all(f"x{scale}" in printed for scale in params["scales"])


def test_demo_names_a_sample_image_that_does_not_ship(tmp_path, capsys):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["demo"]["sample_images"] = ["astronaut.png", "no_such_picture.png"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["demo", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path)]) == 2
    assert "no_such_picture.png" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["demo: [unclosed", "- a list"])
def test_a_broken_params_file_is_named(tmp_path, capsys, content):
    (tmp_path / "params.yaml").write_text(content)
    assert main(["demo", "--params", str(tmp_path / "params.yaml")]) == 2
    err = capsys.readouterr().err
    assert "params.yaml" in err and err.count("\n") == 1
