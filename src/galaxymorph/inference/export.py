"""Export a trained classifier to ONNX and check it against PyTorch with onnxruntime.

The graph takes what :class:`~galaxymorph.models.network.GalaxyNet` takes, RGB floats in
``[0, 1]`` shaped ``(N, 3, S, S)`` with a dynamic batch axis (normalisation is inside), and
returns ``logits`` and calibrated ``probabilities`` (softmax of logits / temperature), so a
deployment outside Python needs only the centre crop and resize recorded in the sidecar JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from galaxymorph.errors import ConfigError, ModelError
from galaxymorph.io_utils import atomic_path, write_json
from galaxymorph.models.engine import TOLERANCE
from galaxymorph.models.onnx_graph import OPSET, export_graph, exportable, first_line

__all__ = ["OPSET", "TOLERANCE", "ExportResult", "export_onnx", "exportable"]


@dataclass
class ExportResult:
    path: Path
    card_path: Path
    max_abs_diff: float
    image_size: int
    opset: int

    def __str__(self) -> str:
        return (f"wrote {self.path} (opset {self.opset}, input image float[N,3,{self.image_size},"
                f"{self.image_size}] in [0,1]) and {self.card_path}\n"
                f"onnxruntime vs torch: max |Δp| = {self.max_abs_diff:.2e} (tolerance {TOLERANCE:g})")


class _WithProbabilities(nn.Module):
    """Logits and temperature-calibrated probabilities in one graph."""

    def __init__(self, net: nn.Module, temperature: float):
        super().__init__()
        self.net = net
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x)
        return logits, torch.softmax(logits / self.temperature, dim=1)


def export_onnx(model: str | Path = "default", out: str | Path = "model.onnx", opset: int = OPSET,
                check_batch: int = 5, seed: int = 0) -> ExportResult:
    """Export ``model`` to ONNX at ``out``, verify it with onnxruntime, write ``out``.json."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ConfigError("the ONNX file name should end in .onnx", out)
    try:
        import onnx  # noqa: F401
        import onnxruntime as ort
    except ImportError as exc:
        raise ConfigError("ONNX export needs onnx and onnxruntime, which are not installed",
                          hint="pip install onnx onnxruntime (dependencies of galaxymorph)") from exc
    from galaxymorph.models.loading import load_classifier

    clf = load_classifier(model, device="cpu")
    size = clf.preprocessing.image_size
    graph = _WithProbabilities(exportable(clf.net, size), clf.temperature).eval()
    card_path = out.with_suffix(".json")
    with atomic_path(out) as tmp:
        try:
            export_graph(graph, size, tmp, ["logits", "probabilities"], opset)
        except Exception as exc:  # the exporter raises many types for an unsupported operator
            raise ModelError(f"ONNX export of '{clf.card.architecture}' failed: {first_line(exc)}",
                             clf.source) from exc
        diff = _max_diff(clf, str(tmp), ort, check_batch, size, seed)
        if not diff <= TOLERANCE:
            raise ModelError(f"the exported graph disagrees with PyTorch: max |Δp| = {diff:.2e} > "
                             f"{TOLERANCE:g}; not written", out)
    sidecar = clf.card.to_dict() | {"onnx": {
        "file": out.name, "opset": opset, "input": "image",
        "input_shape": ["batch", 3, size, size], "input_dtype": "float32", "input_range": [0.0, 1.0],
        "outputs": {"logits": ["batch", len(clf.class_names)],
                    "probabilities": ["batch", len(clf.class_names)]},
        "preprocessing": (f"decode to RGB, {_framing_text(clf.preprocessing)}, "
                          f"resize to {size}x{size} (antialiased), divide by 255; ImageNet "
                          "normalisation is inside the graph"),
        "probabilities_note": f"softmax(logits / {clf.temperature:.4g}) (temperature-calibrated); "
                              "no test-time augmentation",
        "verified_max_abs_diff": diff, "source_model": clf.source}}
    write_json(card_path, sidecar)
    _usual_permissions(out, card_path)
    return ExportResult(out, card_path, diff, size, opset)


def _usual_permissions(*paths: Path) -> None:
    """Atomic writes create files private (0600); an exported model is meant to be shared."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        os.chmod(p, 0o666 & ~umask)


def _max_diff(clf, path: str, ort, batch: int, size: int, seed: int) -> float:
    """Largest probability difference between onnxruntime and torch on random images."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, size, size, generator=gen)
    with torch.inference_mode():
        logits = clf.net(x)
        expected = torch.softmax(logits / clf.temperature, dim=1).numpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    _, probs = session.run(["logits", "probabilities"], {"image": x.numpy()})
    return float(np.abs(probs - expected).max())


def _framing_text(pre) -> str:
    if pre.framing == "auto":
        return (f"crop a square of {2 * pre.frame_radii:g} Petrosian radii (eta 0.2) of the central "
                "galaxy around the centre (galaxymorph.data.framing; the centre "
                f"{pre.crop:g} of the shorter side when no source is found)")
    return f"centre-crop {pre.crop:g} of the shorter side"
