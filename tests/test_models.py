"""The model families: exact sizes, the papers' structures, DRN's fast forward equal to the plain
one, EDSR's baseline as EDSR-PyTorch builds it; every variant through every deployment path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import REPO
from reference_drn import ReferenceDRN
from torch import nn

from drn.cli import main
from drn.core.errors import UsageError
from drn.models import build_model, resolve_config, variants
from drn.models.complexity import forward_flops, trainable_parameters
from drn.models.drn import DRNConfig
from drn.models.edsr import EDSRConfig
from drn.pipeline.params import build_from_params, load_params

VARIANTS = sorted(variants())
DRN_VARIANTS = [n for n in VARIANTS if isinstance(variants()[n].config, DRNConfig)]
SCALES = (2, 3, 4)
SMALL = {"channels": 16, "block_channels": 12, "distill": 4, "blocks": 3, "groups": 2}
EDSR_SMALL = {"channels": 16, "blocks": 2, "res_scale": 0.5}
SMALL_OF_FAMILY = {DRNConfig: SMALL, EDSRConfig: EDSR_SMALL}  # a new family adds its own


def small(name):
    """Small sizes for variant ``name`` (its family's), to keep the deployment tests quick."""
    return SMALL_OF_FAMILY[type(variants()[name].config)]


# One variant per family: the deployment paths are the same for every variant of a family.
FAMILIES = sorted({type(variants()[n].config): n for n in reversed(VARIANTS)}.values())

# The reading of the paper, counted by hand (weights and biases).
PARAMETERS = {
    ("drn", 2): 2_898_227,
    ("drn", 3): 3_082_867,
    ("drn", 4): 3_341_363,
    ("drn_plus", 4): 35_295_539,
    ("drn_no_rd", 4): 3_062_723,
    # EDSR's baseline, counted from EDSR-PyTorch's layers; its README prints 1.37M/1.55M/1.52M.
    ("edsr_baseline", 2): 1_369_859,
    ("edsr_baseline", 3): 1_554_499,
    ("edsr_baseline", 4): 1_517_571,
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_every_paper_variant_is_registered():
    assert {"drn", "drn_plus", "drn_no_rd", "edsr_baseline"} <= set(VARIANTS)
    assert FAMILIES == ["drn", "edsr_baseline"]


@pytest.mark.parametrize(("name", "scale"), sorted(PARAMETERS))
def test_trainable_parameter_counts(name, scale):
    with torch.device("meta"):
        model = build_model(name, scale)
    assert trainable_parameters(model) == PARAMETERS[name, scale]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", VARIANTS)
def test_output_is_scale_times_an_odd_input(name, scale):
    model = build_model(name, scale).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 7, 5))
    assert out.shape == (2, 3, 7 * scale, 5 * scale)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_reach_every_parameter(name):
    model = build_model(name, 2)
    model(torch.rand(2, 3, 6, 7)).abs().mean().backward()
    for key, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, key


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", DRN_VARIANTS)
def test_equals_the_plain_reference_with_the_same_checkpoint(name, scale):
    model = build_model(name, scale).eval()
    reference = ReferenceDRN(resolve_config(name), scale).eval()
    fast_keys = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in reference.state_dict().items()} == fast_keys
    reference.load_state_dict(model.state_dict(), strict=True)
    lr = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(model(lr), reference(lr), rtol=1e-5, atol=1e-5)


def test_reference_gradients_equal_the_fast_ones():
    model = build_model("drn", 3, **SMALL)
    reference = ReferenceDRN(resolve_config("drn", **SMALL), 3)
    reference.load_state_dict(model.state_dict())
    lr = torch.rand(2, 3, 8, 9)
    model(lr).square().mean().backward()
    reference(lr).square().mean().backward()
    grads = dict(reference.named_parameters())
    for key, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, grads[key].grad, rtol=1e-4, atol=1e-7)


def test_no_distillation_keeps_the_channels_constant():
    model = build_model("drn_no_rd", 2)
    for block in model.body[0].blocks:
        assert block.reduce.in_channels == block.expand.out_channels == 64
    grown = build_model("drn", 2).body[0].blocks
    assert [b.expand.out_channels for b in grown] == [64 + 8 * k for k in range(1, 10)]


def test_drn_plus_has_256_filters_in_each_block():
    block = build_model("drn_plus", 2).body[0].blocks[0]
    assert block.reduce.out_channels == block.conv.out_channels == 256


@pytest.mark.parametrize(("scale", "upsampler"), [(2, [256]), (3, [576]), (4, [256, 256])])
def test_edsr_baseline_has_edsr_pytorchs_layers_and_names(scale, upsampler):
    """EDSR-PyTorch's state_dict keys (src/model/edsr.py), less its constant MeanShift convs."""
    model = build_model("edsr_baseline", scale)

    def conv(name, out, inp=64):
        return {f"{name}.weight": (out, inp, 3, 3), f"{name}.bias": (out,)}

    expected = conv("head.0", 64, 3) | conv("body.16", 64) | conv("tail.1", 3)
    for i in range(16):
        expected |= conv(f"body.{i}.body.0", 64) | conv(f"body.{i}.body.2", 64)
    for i, out in enumerate(upsampler):
        expected |= conv(f"tail.0.{2 * i}", out)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == expected


def edsr_by_hand(state, lr, scale, res_scale):
    """EDSR's forward written out from EDSR-PyTorch's edsr.py and common.py, on a state_dict."""

    def conv(x, name):
        return F.conv2d(x, state[f"{name}.weight"], state[f"{name}.bias"], padding=1)

    mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1) * 255
    x = conv(lr * 255 - mean, "head.0")  # sub_mean on rgb_range 255 input
    blocks = max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    res = x
    for i in range(blocks):
        y = conv(F.relu(conv(res, f"body.{i}.body.0")), f"body.{i}.body.2")
        res = res + y * res_scale
    res = conv(res, f"body.{blocks}") + x
    for i, factor in enumerate([3] if scale == 3 else [2] * (scale.bit_length() - 1)):
        res = F.pixel_shuffle(conv(res, f"tail.0.{2 * i}"), factor)
    return (conv(res, "tail.1") + mean) / 255  # add_mean, back to [0, 1]


@pytest.mark.parametrize("scale", (2, 3, 4, 8))
def test_edsr_equals_its_forward_written_out(scale):
    model = build_model("edsr_baseline", scale, **EDSR_SMALL).eval()
    lr = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        expected = edsr_by_hand(model.state_dict(), lr, scale, EDSR_SMALL["res_scale"])
        torch.testing.assert_close(model(lr), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", (3, 4))
@pytest.mark.parametrize("name", FAMILIES)
def test_context_covers_the_receptive_field_so_tiles_are_seamless(name, scale):
    from drn.engine.inference import super_resolve

    model = build_model(name, scale, **small(name)).eval()
    lr = torch.rand(1, 3, 20, 17)
    whole = super_resolve(model, lr, scale, tile=None)
    torch.testing.assert_close(super_resolve(model, lr, scale, tile=6), whole, rtol=0, atol=1e-5)
    changed = lr.clone()
    changed[..., 10, 8] += 1  # moves output pixels at most `context` LR pixels away
    with torch.no_grad():
        rows, cols = torch.nonzero((model(changed) - model(lr)).abs().sum((0, 1)) > 0).T
    reach = max((rows // scale - 10).abs().max(), (cols // scale - 8).abs().max())
    assert reach <= model.context < reach + 3


def test_edsr_refuses_a_scale_its_upsampler_cannot_make():
    with pytest.raises(UsageError, match=r"EDSR upsamples by 3 or a power of 2 .* not x5"):
        build_model("edsr_baseline", 5)


@pytest.mark.parametrize("name", FAMILIES)
def test_state_dict_round_trip_through_a_file(tmp_path, name):
    model = build_model(name, 4, **small(name)).eval()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    loaded = build_model(name, 4, **small(name)).eval()
    loaded.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    lr = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        assert torch.equal(model(lr), loaded(lr))
    assert set(model.state_dict()) == {k for k, _ in model.named_parameters()}  # no constants


def test_builds_from_params_yaml(tmp_path):
    params = load_params(REPO / "params.yaml")
    for name in VARIANTS:
        with torch.device("meta"):
            assert trainable_parameters(build_from_params(params, name, 4)) == trainable_parameters(
                build_model(name, 4, **(params.get("models", {}).get(name) or {}))
            )
    params["models"] = {"drn": SMALL}
    model = build_from_params(params, "drn", 2)
    assert model.config == resolve_config("drn", **SMALL)
    assert len(model.body) == 2 and len(model.body[0].blocks) == 3


def test_params_yaml_models_section_matches_the_config_fields():
    schema = yaml.safe_load((REPO / "drn/schemas/params.schema.yaml").read_text())
    models = schema["properties"]["models"]["properties"]
    assert set(models) == set(VARIANTS)
    for name in VARIANTS:
        definition = schema["$defs"][models[name]["$ref"].rsplit("/", 1)[1]]
        assert set(definition["properties"]) == set(vars(resolve_config(name)))


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("edsr", {}, "unknown model 'edsr'; choose from drn, drn_no_rd, drn_plus, edsr_baseline"),
        ("drn", {"width": 3}, "unknown setting width; choose from block_channels"),
        ("drn", {"channels": 0}, "channels must be a positive integer"),
        ("drn", {"blocks": 2.5}, "blocks must be a positive integer"),
        ("drn", {"distill": -1}, "distill must be an integer >= 0"),
        ("drn", {"elu_alpha": 0}, "elu_alpha must be a positive number"),
        ("edsr_baseline", {"distill": 8}, "unknown setting distill; choose from blocks, channels"),
        ("edsr_baseline", {"blocks": 0}, "model edsr_baseline: blocks must be a positive integer"),
        ("edsr_baseline", {"res_scale": 0}, "res_scale must be a positive number"),
    ],
)
def test_bad_names_and_sizes_are_refused_with_the_choices(name, overrides, message):
    with pytest.raises(UsageError, match=message):
        build_model(name, 2, **overrides)


@pytest.mark.parametrize("scale", [1, 0, 2.0, True])
def test_bad_scales_are_refused(scale):
    with pytest.raises(UsageError, match="scale must be an integer >= 2"):
        build_model("drn", scale)


def count_conv_flops_with_hooks(model, height, width):
    """Independent count: 2 * Cin * k * k (/ groups) per output element of every convolution."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        total += 2 * output.numel() * module.in_channels * kernel // module.groups

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, height, width))
    for handle in handles:
        handle.remove()
    return total


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", FAMILIES)
def test_flops_equal_an_independent_count(name, scale):
    model = build_model(name, scale, **small(name))
    assert forward_flops(model, 24, 20) == count_conv_flops_with_hooks(model, 24, 20)


def test_drn_info_prints_parameters_and_flops(capsys):
    assert main(["info", "drn", "--scale", "4"]) == 0
    out = capsys.readouterr().out
    assert "trainable parameters: 3,341,363" in out
    with torch.device("meta"):
        flops = forward_flops(build_model("drn", 4), 256, 256)
    assert f"256x256 LR image (-> 1024x1024): {flops / 1e9:,.2f} G" in out
    assert main(["info", "edsr_baseline", "--scale", "2"]) == 0
    out = capsys.readouterr().out
    assert "trainable parameters: 1,369,859" in out and "channels=64 blocks=16 res_scale=1.0" in out


def test_drn_info_applies_overrides(capsys, tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"models": {"drn_plus": {"groups": 3}}}))
    args = ["info", "drn_plus", "--scale", "2", "--params", str(tmp_path / "params.yaml")]
    assert main([*args, "--set", "models.drn_plus.blocks=4", "--size", "48x32"]) == 0
    with torch.device("meta"):
        expected = trainable_parameters(build_model("drn_plus", 2, groups=3, blocks=4))
    out = capsys.readouterr().out
    assert f"trainable parameters: {expected:,}" in out and "48x32" in out


def test_drn_info_and_drn_train_read_set_the_same_way(capsys):
    """A value YAML 1.1 reads as a string (5e-1) is a number for both commands."""
    assert main(["info", "drn", "--scale", "2", "--set", "models.drn.elu_alpha=5e-1"]) == 0
    assert "elu_alpha=0.5" in capsys.readouterr().out
    assert main(["info", "drn", "--scale", "2", "--set", "blocks=4"]) == 2
    assert "--set blocks=4: drn info changes this model's sizes" in capsys.readouterr().err


def test_drn_info_rejects_an_unknown_variant(capsys):
    assert main(["info", "drn_tiny", "--scale", "2"]) == 2
    assert "choose from drn, drn_no_rd, drn_plus, edsr_baseline" in capsys.readouterr().err


# Deployment paths: channels_last, bf16 autocast, torch.compile, torch.export, ONNX.


@pytest.mark.parametrize("name", FAMILIES)
def test_channels_last_gives_the_same_output(name):
    model = build_model(name, 2, **small(name)).eval()
    lr = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        expected = model(lr)
        model = model.to(memory_format=torch.channels_last)
        out = model(lr.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_bf16_autocast_runs_and_stays_close(name):
    model = build_model(name, 2, **small(name)).eval()
    lr = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        expected = model(lr)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(lr)
    assert out.dtype == torch.float32  # the mean shift brings the output back to fp32
    assert (out - expected).abs().max() < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_torch_compile_gives_the_same_output_and_gradients(name):
    model = build_model(name, 3, **small(name))
    compiled = torch.compile(model)
    lr = torch.rand(2, 3, 8, 9)
    torch.testing.assert_close(compiled(lr), model(lr), rtol=1e-5, atol=1e-5)
    compiled(lr).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", FAMILIES)
def test_torch_export_with_dynamic_image_size(name):
    model = build_model(name, 4, **small(name)).eval()
    height, width = torch.export.Dim("height", min=4, max=2048), torch.export.Dim("width", min=4)
    program = torch.export.export(
        model, (torch.rand(1, 3, 12, 10),), dynamic_shapes=({2: height, 3: width},)
    )
    other = torch.rand(1, 3, 7, 13)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(other), model(other), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_export_runs_in_onnxruntime(tmp_path, name):
    import onnxruntime

    model = build_model(name, 2, **small(name)).eval()
    height, width = torch.export.Dim("height", min=4), torch.export.Dim("width", min=4)
    exported = torch.onnx.export(
        model, (torch.rand(1, 3, 12, 10),), dynamo=True, verbose=False,
        dynamic_shapes=({2: height, 3: width},),
    )  # fmt: skip
    exported.save(tmp_path / "drn.onnx")
    session = onnxruntime.InferenceSession(tmp_path / "drn.onnx")
    other = torch.rand(1, 3, 9, 14)
    (out,) = session.run(None, {session.get_inputs()[0].name: other.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(other), rtol=1e-4, atol=1e-5)
