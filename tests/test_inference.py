"""Checkpoints, tiled and self-ensembled inference, `drn evaluate --model CKPT`, `drn upscale`."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from conftest import SET5
from PIL import Image
from torch import nn

from drn.cli import main
from drn.core.errors import DataError
from drn.core.images import read_image
from drn.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from drn.engine.inference import evaluate_model, super_resolve, to_tensor, upscale_image
from drn.models import build_model

SMALL = {"channels": 16, "block_channels": 16, "distill": 4, "blocks": 2, "groups": 2}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model("drn", 2, **SMALL).eval()


@pytest.fixture
def checkpoint(tmp_path, model):
    path = tmp_path / "drn_x2.pt"
    save_checkpoint(path, model)
    return path


class FlipCommuting(nn.Module):
    """Per-pixel colour mixing then nearest upsampling: commutes with every flip and rotation."""

    def __init__(self, scale):
        super().__init__()
        self.mix, self.scale = nn.Conv2d(3, 3, 1), scale

    def forward(self, x):
        return nn.functional.interpolate(self.mix(x), scale_factor=self.scale, mode="nearest")


def test_tiled_equals_untiled(model):
    lr = torch.rand(1, 3, 45, 61)
    whole = super_resolve(model, lr, 2, tile=None)
    for tile in (8, 16, 40):
        tiled = super_resolve(model, lr, 2, tile=tile)
        assert tiled.shape == (1, 3, 90, 122)
        assert (tiled - whole).abs().max() < 1e-4


def test_tiles_need_the_receptive_field_as_context(model):
    lr = torch.rand(1, 3, 40, 40)
    whole = super_resolve(model, lr, 2, tile=None)
    too_little = super_resolve(model, lr, 2, tile=8, context=1)
    assert (too_little - whole).abs().max() > 1e-3  # so the test above is not vacuous


def test_self_ensemble_of_a_flip_commuting_model_is_the_plain_output():
    torch.manual_seed(1)
    commuting = FlipCommuting(3)
    lr = torch.rand(1, 3, 13, 17)
    plain = super_resolve(commuting, lr, 3, tile=None)
    for tile in (None, 8):
        ensemble = super_resolve(commuting, lr, 3, tile=tile, self_ensemble=True)
        assert (ensemble - plain).abs().max() < 1e-6


def test_self_ensemble_averages_the_eight_transforms(model):
    lr = torch.rand(1, 3, 12, 9)
    outputs = []
    with torch.no_grad():
        for rot in range(4):
            for flip in (False, True):
                x = torch.rot90(lr, rot, (-2, -1))
                x = x.flip(-1) if flip else x
                y = model(x)
                y = y.flip(-1) if flip else y
                outputs.append(torch.rot90(y, -rot, (-2, -1)))
    expected = torch.stack(outputs).mean(0)
    ensemble = super_resolve(model, lr, 2, tile=None, self_ensemble=True)
    torch.testing.assert_close(ensemble, expected, rtol=1e-5, atol=1e-6)


def test_checkpoint_round_trip(checkpoint, model):
    loaded, payload = model_from_checkpoint(checkpoint)
    assert payload["model"] == {"name": "drn", "scale": 2, "config": {**vars(model.config)}}
    lr = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        assert torch.equal(loaded(lr), model(lr))


def test_a_truncated_checkpoint_is_a_clear_error(checkpoint):
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"drn_x2\.pt: not a readable PyTorch checkpoint"):
        load_checkpoint(checkpoint)


def test_a_foreign_checkpoint_is_a_clear_error(tmp_path, model):
    path = tmp_path / "edsr.pt"
    torch.save(model.state_dict(), path)  # a plain state_dict from another tool
    with pytest.raises(DataError, match=r"edsr\.pt: not a drn-repro checkpoint"):
        load_checkpoint(path)


def test_a_tampered_checkpoint_is_a_clear_error(checkpoint):
    payload = torch.load(checkpoint, weights_only=True)
    payload["state_dict"]["head.weight"][0, 0, 0, 0] += 1
    torch.save(payload, checkpoint)
    with pytest.raises(DataError, match="do not match their checksum"):
        load_checkpoint(checkpoint)


class Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_a_checkpoint_with_code_in_it_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "drn-repro-checkpoint", "x": Payload()}, path, pickle_module=pickle)
    with pytest.raises(DataError, match=r"evil\.pt: refused.*weights_only=True"):
        load_checkpoint(path)


def test_evaluate_a_checkpoint_writes_the_score_json(checkpoint, tmp_path, model):
    out = tmp_path / "eval.json"
    args = ["evaluate", "--model", str(checkpoint), "--hr", str(SET5), "--scale", "2"]
    assert main([*args, "--json", str(out), "--device", "cpu", "--tile", "64"]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "drn" and result["scale"] == 2 and not result["self_ensemble"]
    assert [i["name"] for i in result["images"]] == ["baby", "bird", "butterfly", "head", "woman"]
    direct = evaluate_model(model, SET5, 2, tile=None)
    assert result["psnr"] == pytest.approx(direct.psnr, abs=1e-3)


def test_evaluate_refuses_a_checkpoint_of_another_scale(checkpoint, capsys):
    args = ["evaluate", "--model", str(checkpoint), "--hr", str(SET5), "--scale", "4"]
    assert main(args) == 2
    assert "is a x2 model" in capsys.readouterr().err


def test_upscale_handles_rgb_gray_and_alpha(checkpoint, tmp_path, model):
    rgb = read_image(SET5 / "bird.png")[:40, :50]
    images = {
        "rgb.png": Image.fromarray(rgb),
        "gray.jpg": Image.fromarray(rgb[:, :, 1]),
        "alpha.webp": Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])),
        "palette.gif": Image.fromarray(rgb).convert("P"),
    }
    for name, image in images.items():
        image.save(tmp_path / name, lossless=True) if name.endswith("webp") else image.save(
            tmp_path / name
        )
    out = tmp_path / "out"
    paths = [str(tmp_path / n) for n in images]
    assert (
        main(["upscale", *paths, "--weights", str(checkpoint), "--scale", "2", "-o", str(out)]) == 0
    )
    modes = {p.name: Image.open(p).mode for p in sorted(out.iterdir())}
    assert modes == {
        "alpha_x2.png": "RGBA", "gray_x2.png": "L", "palette_x2.png": "RGB", "rgb_x2.png": "RGB",
    }  # fmt: skip
    for name in modes:
        assert Image.open(out / name).size == (100, 80)
    expected = upscale_image(model, rgb, 2)
    np.testing.assert_array_equal(read_image(out / "rgb_x2.png"), expected)
    assert (np.asarray(Image.open(out / "alpha_x2.png"))[:, :, 3] == 200).all()


def test_upscale_to_a_single_named_file(checkpoint, tmp_path):
    Image.fromarray(read_image(SET5 / "head.png")[:30, :30]).save(tmp_path / "in.bmp")
    target = tmp_path / "big.png"
    args = ["upscale", str(tmp_path / "in.bmp"), "--weights", str(checkpoint)]
    assert main([*args, "--scale", "2", "-o", str(target), "--self-ensemble"]) == 0
    assert Image.open(target).size == (60, 60)


def test_upscale_with_missing_weights_is_a_usage_error(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    args = ["upscale", str(tmp_path / "a.png"), "--weights", str(tmp_path / "none.pt")]
    assert main([*args, "--scale", "2", "-o", str(tmp_path / "out")]) == 2
    assert "--weights" in (err := capsys.readouterr().err) and "none.pt: no such checkpoint" in err


def test_to_tensor_and_back_is_lossless():
    from drn.engine.inference import to_uint8

    img = np.random.default_rng(0).integers(0, 256, (7, 9, 3)).astype(np.uint8)
    np.testing.assert_array_equal(to_uint8(to_tensor(img)), img)
