"""ONNX export: the graph gives the same probabilities as PyTorch, for any batch size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from galaxymorph.errors import ConfigError
from galaxymorph.inference.export import TOLERANCE, export_onnx, exportable
from galaxymorph.models.loading import load_classifier


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    return export_onnx(tiny_model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_onnx_matches_torch_on_real_preprocessing(tiny_model, exported, inference_catalog):
    import onnxruntime as ort

    from galaxymorph.data.imageio import read_image

    assert exported.path.exists() and exported.max_abs_diff <= TOLERANCE
    clf = load_classifier(tiny_model)
    files = sorted((inference_catalog.parent / "images").glob("*.png"))[:5]
    batch = torch.stack([clf.prepare(read_image(f)) for f in files])
    expected = clf.predict_proba(batch, tta=False)
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    for rows in (slice(0, 5), slice(0, 1)):  # dynamic batch axis
        x = batch[rows].float().div(255).numpy()
        logits, probs = session.run(["logits", "probabilities"], {"image": x})
        np.testing.assert_allclose(probs, expected[rows], atol=1e-5)
        assert logits.shape == probs.shape == (len(x), len(clf.class_names))


def test_sidecar_holds_card_and_input_contract(tiny_model, exported):
    card = json.loads(exported.card_path.read_text())
    clf = load_classifier(tiny_model)
    assert card["class_names"] == clf.class_names and card["architecture"] == "cnn2"
    onnx_info = card["onnx"]
    assert onnx_info["opset"] == 17 and onnx_info["input_range"] == [0.0, 1.0]
    assert onnx_info["input_shape"] == ["batch", 3, clf.preprocessing.image_size,
                                        clf.preprocessing.image_size]
    assert onnx_info["verified_max_abs_diff"] == pytest.approx(exported.max_abs_diff)


def test_adaptive_pool_rewrite_is_exact():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d((5, 7)), nn.Flatten())
    rewritten = exportable(net, 12)  # 12 -> 5 and 12 -> 7: bins overlap, exporter refuses
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in rewritten.modules())
    x = torch.rand(3, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), net(x))


def test_cli_export_reports_difference(tiny_model, tmp_path, capsys):
    from galaxymorph.cli.main import main

    out = tmp_path / "cli.onnx"
    main(["export", str(tiny_model), "--format", "onnx", "--out", str(out)])
    err = capsys.readouterr().err
    assert out.exists() and out.with_suffix(".json").exists()
    assert "max |Δp|" in err


def test_export_rejects_wrong_suffix(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match=r"\.onnx"):
        export_onnx(tiny_model, tmp_path / "model.pt")
