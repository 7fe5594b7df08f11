"""The model registry, the seed CNNs, the zoo, offline weights, transfer policies, introspection."""

from __future__ import annotations

import socket
import urllib.error

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import galaxymorph.models as gm
from galaxymorph.errors import ConfigError, ModelError
from galaxymorph.models import weights as weights_mod

NUM_CLASSES = 3


def _params_under(model: nn.Module, prefixes: tuple[str, ...]) -> set[str]:
    return {
        n
        for n, _ in model.named_parameters()
        if any(n == p or n.startswith(p + ".") for p in prefixes)
    }


def _trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty ``TORCH_HOME`` and no network at all (any connection attempt fails at once)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GALAXYMORPH_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("GALAXYMORPH_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"


# -- every registered model ---------------------------------------------------------------------


@pytest.mark.parametrize("name", gm.model_names())
def test_model_builds_trains_and_exposes_parts(name):
    torch.manual_seed(0)
    model = gm.create_model(name, NUM_CLASSES)
    spec = gm.model_spec(model)
    assert spec.name == name
    x = torch.rand(2, 3, 64, 64)
    model.train()
    out = model(x)
    assert out.shape == (2, NUM_CLASSES)
    out.logsumexp(1).mean().backward()
    head = gm.head_module(model)
    assert head.out_features == NUM_CLASSES and head.weight.grad is not None

    # Every parameter belongs to exactly one backbone block or to the classifier.
    groups = [_params_under(model, block) for block in spec.blocks]
    groups.append(_params_under(model, spec.classifier))
    assert sum(len(g) for g in groups) == len(set().union(*groups))
    assert set().union(*groups) == {n for n, _ in model.named_parameters()}

    model.eval()
    with torch.no_grad():
        feats = gm.features(model, x)
    assert feats.shape == (2, gm.feature_dim(model))
    layer = gm.gradcam_target_layer(model)
    assert any(layer is m for m in model.modules()) and layer is not head


def test_list_models_and_infos():
    infos = gm.list_models()
    names = [i.name for i in infos]
    assert len(names) == len(set(names))
    for expected in ("cnn2", "cnn3", "cnn5", "cnn6", "cnn4-wide", "seed-detector", "vgg16",
                     "resnet18", "resnet50", "mobilenet", "mobilenetv2", "mobilenetv3-small",
                     "efficientnet-b0", "convnext-tiny", "efficientnet-lite0"):  # fmt: skip
        assert expected in names
    by_name = {i.name: i for i in infos}
    assert by_name["seed-detector"].default_image_size == 150
    assert not by_name["cnn6"].pretrained_ok and by_name["mobilenetv2"].pretrained_ok
    assert by_name["efficientnet-lite0"].mean == (0.5, 0.5, 0.5)


def test_unknown_model_lists_registry():
    with pytest.raises(ModelError) as err:
        gm.create_model("resnet1000", NUM_CLASSES)
    message = str(err.value)
    assert "resnet1000" in message
    for name in gm.model_names():
        assert name in message


def test_bad_options_are_model_errors():
    with pytest.raises(ModelError, match="no pretrained weights"):
        gm.create_model("cnn6", NUM_CLASSES, pretrained=True)
    with pytest.raises(ModelError, match="colour"):
        gm.create_model("cnn6", NUM_CLASSES, colour=True)
    with pytest.raises(ModelError, match="num_classes"):
        gm.create_model("cnn6", 0)


# -- the seed's custom CNNs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "n_conv"), [("cnn2", 2), ("cnn3", 3), ("cnn5", 5), ("cnn6", 6), ("cnn4-wide", 4)]
)
def test_cnn_family_is_parameterised(name, n_conv):
    model = gm.create_model(name, NUM_CLASSES)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == n_conv and len(pools) == n_conv
    widths = [c.out_channels for c in convs]
    assert widths == sorted(set(widths))  # channels grow layer by layer
    assert type(model) is type(gm.create_model("cnn2", NUM_CLASSES))


def test_cnn_shapes_follow_the_seed():
    # At the seed's input sizes the flatten widths are the seed's (Keras summaries).
    cnn6 = gm.create_model("cnn6", 10)
    assert cnn6.classifier[0].in_features == 2048  # 4x4x128 at 256 px
    assert [m.out_features for m in cnn6.classifier if isinstance(m, nn.Linear)] == [120, 84, 10]
    wide = gm.create_model("cnn4-wide", 10)
    assert [c.out_channels for c in wide.modules() if isinstance(c, nn.Conv2d)] == [
        32,
        64,
        128,
        256,
    ]
    assert wide.classifier[0].in_features == 4096  # 4x4x256 at 64 px
    assert [m.p for m in wide.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert [m.p for m in gm.create_model("cnn4-wide", 10, dropout=0.2).modules()
            if isinstance(m, nn.Dropout)] == [0.2, 0.2]  # fmt: skip
    det = gm.create_model("seed-detector", 2)
    assert det.classifier[0].in_features == 36 * 36 * 64  # valid 3x3 convs at 150 px
    assert det(torch.rand(1, 3, 150, 150)).shape == (1, 2)


def test_cnn_accepts_any_input_size_and_channels():
    model = gm.create_model("cnn6", NUM_CLASSES, in_chans=1).eval()
    for size in (32, 48, 97):
        assert model(torch.rand(2, 1, size, size)).shape == (2, NUM_CLASSES)


# -- transfer policies ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cnn4-wide", "resnet18", "mobilenetv3-small"])
def test_transfer_policies_freeze_what_they_say(name):
    model = gm.create_model(name, NUM_CLASSES)
    spec = gm.model_spec(model)
    everything = {n for n, _ in model.named_parameters()}

    gm.apply_policy(model, "linear-probe")
    assert _trainable(model) == _params_under(model, (spec.head,))
    assert 0 < len(_trainable(model)) < len(everything)

    gm.apply_policy(model, "last-block")
    expected = _params_under(model, (*spec.blocks[-1], *spec.classifier))
    assert _trainable(model) == expected
    assert _params_under(model, spec.blocks[-1]) and expected != everything

    gm.apply_policy(model, "full")
    assert _trainable(model) == everything

    with pytest.raises(ConfigError, match="linear-probe"):
        gm.apply_policy(model, "half")


def test_param_groups_have_the_right_lrs():
    model = gm.create_model("resnet18", NUM_CLASSES)
    groups = gm.param_groups(model, "full", lr=1e-3, backbone_lr_mult=0.1)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"head", "backbone"}
    assert by_name["head"]["lr"] == pytest.approx(1e-3)
    assert by_name["backbone"]["lr"] == pytest.approx(1e-4)
    assert {id(p) for p in by_name["head"]["params"]} == {id(p) for p in model.fc.parameters()}
    all_ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(all_ids) == sorted(id(p) for p in model.parameters())

    probe = gm.param_groups(model, "linear-probe", lr=0.01)
    assert [(g["name"], g["lr"]) for g in probe] == [("head", 0.01)]
    assert len(probe[0]["params"]) == 2

    last = gm.param_groups(model, "last-block", lr=0.01, backbone_lr_mult=0.1)
    assert [(g["name"], g["lr"]) for g in last] == [("head", 0.01), ("last-block", 0.01)]
    layer4 = {id(p) for p in model.layer4.parameters()}
    assert {id(p) for p in last[1]["params"]} == layer4

    opt = torch.optim.AdamW(gm.param_groups(model, "full", lr=1e-3), lr=1e-3)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 1e-4])
    with pytest.raises(ConfigError):
        gm.param_groups(model, "full", lr=0.0)


def test_freeze_norm_stats_keeps_frozen_bn_in_eval():
    model = gm.create_model("resnet18", NUM_CLASSES)
    gm.apply_policy(model, "last-block")
    model.train()
    gm.freeze_norm_stats(model)
    assert not model.bn1.training and not model.layer3[0].bn1.training
    assert model.layer4[0].bn1.training


def test_helpers_see_through_wrappers():
    class Wrapper(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.backbone = inner

        def forward(self, x):
            return self.backbone(x * 2 - 1)

    inner = gm.create_model("cnn4-wide", NUM_CLASSES)
    wrapped = Wrapper(inner).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(gm.features(wrapped, x), gm.features(inner, x * 2 - 1))
    assert gm.gradcam_target_layer(wrapped) is gm.gradcam_target_layer(inner)
    assert [g["name"] for g in gm.param_groups(wrapped, "last-block", 1e-3)] == [
        "head",
        "last-block",
    ]
    with pytest.raises(ModelError, match="galaxymorph_spec"):
        gm.model_spec(nn.Linear(2, 2))


# -- offline ImageNet weights ---------------------------------------------------------------------


def test_mobilenetv2_pretrained_loads_offline_from_seeded_cache(offline):
    seeded = gm.seed_torch_hub_from_wheels()
    target = offline / "mobilenet_v2-b0353104.pth"
    assert target in seeded and target.is_file()

    model = gm.create_model("mobilenetv2", NUM_CLASSES, pretrained=True)
    reference = torch.load(target, map_location="cpu", weights_only=True)
    own = model.state_dict()
    backbone = [k for k in reference if not k.startswith("classifier.")]
    assert len(backbone) > 100
    for key in backbone:
        assert torch.equal(own[key], reference[key]), key
    assert own["classifier.1.weight"].shape == (NUM_CLASSES, 1280)

    # A 1000-class build keeps the ImageNet head too.
    full = gm.create_model("mobilenetv2", 1000, pretrained=True)
    assert torch.equal(full.classifier[1].weight, reference["classifier.1.weight"])


def test_pretrained_without_file_or_network_names_the_file(offline):
    with pytest.raises(ModelError) as err:
        gm.create_model("mobilenetv2", NUM_CLASSES, pretrained=True)
    message = str(err.value)
    assert "mobilenet_v2-b0353104.pth" in message
    assert "hub/checkpoints" in message and "weights_path" in message
    # No urllib / huggingface exception chained onto it.
    assert err.value.__cause__ is None
    assert err.value.__context__ is None or err.value.__suppress_context__


def test_failed_download_is_one_model_error(offline, monkeypatch):
    # The host looks reachable, but the download itself breaks.
    monkeypatch.setattr(weights_mod, "_unreachable", lambda source: None)

    def broken(url, dst, *args, **kwargs):
        raise urllib.error.URLError("connection reset")

    monkeypatch.setattr(torch.hub, "download_url_to_file", broken)
    with pytest.raises(ModelError, match=r"resnet18-f37072fd\.pth") as err:
        gm.create_model("resnet18", NUM_CLASSES, pretrained=True)
    assert "URLError" in str(err.value) and err.value.__suppress_context__


def test_galaxymorph_offline_env_skips_download(offline, monkeypatch):
    monkeypatch.setenv("GALAXYMORPH_OFFLINE", "1")
    with pytest.raises(ModelError, match="GALAXYMORPH_OFFLINE"):
        gm.create_model("mobilenetv3-small", NUM_CLASSES, pretrained=True)


def test_local_weight_files(offline, tmp_path, monkeypatch):
    source = gm.create_model("mobilenetv3-small", 1000)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / "mnv3.safetensors"
    save_file(state, str(path))

    model = gm.create_model("mobilenetv3-small", NUM_CLASSES, weights_path=path, pretrained=True)
    assert torch.equal(model.features[5].block[0][0].weight, source.features[5].block[0][0].weight)

    # in_chans=1: the stem is adapted (channel sum), the rest loads unchanged.
    gray = gm.create_model("mobilenetv3-small", NUM_CLASSES, pretrained=True, in_chans=1,
                           weights_path=path)  # fmt: skip
    stem = source.features[0][0].weight
    assert torch.allclose(gray.features[0][0].weight, stem.sum(1, keepdim=True))

    # $GALAXYMORPH_WEIGHTS_DIR/<name>.pth
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    torch.save(state, weights_dir / "mobilenetv3-small.pth")
    monkeypatch.setenv("GALAXYMORPH_WEIGHTS_DIR", str(weights_dir))
    from_env = gm.create_model("mobilenetv3-small", NUM_CLASSES, pretrained=True)
    assert torch.equal(from_env.features[0][0].weight, stem)

    with pytest.raises(ModelError, match="does not exist"):
        gm.create_model("mobilenetv3-small", NUM_CLASSES, weights_path=tmp_path / "nope.pth")
    bad = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(2)}, str(bad))
    with pytest.raises(ModelError, match="do not fit"):
        gm.create_model("mobilenetv3-small", NUM_CLASSES, weights_path=bad)


def test_efficientnet_lite0_loads_the_wheel_file_offline(offline):
    gm.seed_torch_hub_from_wheels()
    path = offline / "efficientnet-lite0-57934424.pth"
    raw = torch.load(path, map_location="cpu", weights_only=True)
    model = gm.create_model("efficientnet-lite0", NUM_CLASSES, pretrained=True)
    assert torch.equal(model.conv_stem.weight, raw["_conv_stem.weight"])
    assert torch.equal(model.conv_head.weight, raw["_conv_head.weight"])
    assert torch.equal(model.blocks[6][0].conv_pwl.weight, raw["_blocks.15._project_conv.weight"])
    assert model.classifier.out_features == NUM_CLASSES


def test_gradcam_layer_keeps_a_map_that_can_show_a_galaxy():
    """At 96 px MobileNetV2's last stage is 3x3; the chosen stage must be at least 6x6, while a
    224 px input keeps the usual last stage."""
    model = gm.create_model("mobilenetv2", NUM_CLASSES).eval()
    sizes = {}

    def grab(size):
        layer = gm.gradcam_target_layer(model, image_size=size)
        handle = layer.register_forward_hook(lambda _m, _i, out: sizes.__setitem__(size, out.shape[-1]))
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
        handle.remove()
        return layer

    assert grab(224) is gm.gradcam_target_layer(model) and sizes[224] == 7
    assert grab(96) is not gm.gradcam_target_layer(model) and sizes[96] == 6


def test_one_local_weight_lookup_order(tmp_path, monkeypatch):
    # Backbones and FID's Inception search the same places, in the same order.
    own, home, hub = tmp_path / "own", tmp_path / "home", tmp_path / "hub"
    monkeypatch.setenv("GALAXYMORPH_WEIGHTS_DIR", str(own))
    monkeypatch.setenv("GALAXYMORPH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    bundled = tmp_path / "wheel" / "w.pth"
    found, searched = weights_mod.find_local_weights(["w.pth"], extra=[bundled])
    assert found is None
    assert searched == [str(own / "w.pth"), str(home / "weights" / "w.pth"), str(bundled),
                        str(hub / "checkpoints" / "w.pth")]
    for path in reversed([own / "w.pth", home / "weights" / "w.pth", bundled,
                          hub / "checkpoints" / "w.pth"]):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        assert weights_mod.find_local_weights(["w.pth"], extra=[bundled])[0] == path
