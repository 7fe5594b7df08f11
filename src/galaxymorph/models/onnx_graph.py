"""A network as an ONNX graph: the exporter call and the rewrites it needs.

Shared by ``galaxymorph export`` (a file for deployment outside Python) and the ONNX Runtime
inference engine (:mod:`~galaxymorph.models.engine`), so both run the same graph.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

OPSET = 17


class _BinAveragePool(nn.Module):
    """``AdaptiveAvgPool2d`` for one known input size, as two matrix products.

    The TorchScript exporter refuses adaptive pooling whose output size does not divide the
    input size (the seed CNNs pool a small map *up* to a fixed grid); the same bins written as
    averaging matrices export everywhere and give identical numbers.
    """

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]):
        super().__init__()
        self.register_buffer("rows", _bin_matrix(in_hw[0], out_hw[0]))
        self.register_buffer("cols", _bin_matrix(in_hw[1], out_hw[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.rows, x), self.cols.t())


def _bin_matrix(n_in: int, n_out: int) -> torch.Tensor:
    m = torch.zeros(n_out, n_in)
    for i in range(n_out):
        start = (i * n_in) // n_out
        end = -(-((i + 1) * n_in) // n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def exportable(net: nn.Module, image_size: int) -> nn.Module:
    """A copy of ``net`` with adaptive average pools the exporter cannot express replaced."""
    net = copy.deepcopy(net).cpu().eval()
    net = net.to(memory_format=torch.contiguous_format)
    shapes: dict[str, tuple[int, int]] = {}
    handles = []
    for name, mod in net.named_modules():
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            handles.append(mod.register_forward_pre_hook(
                lambda m, inp, name=name: shapes.__setitem__(name, tuple(inp[0].shape[-2:]))))
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in handles:
            h.remove()
    for name, in_hw in shapes.items():
        mod = net.get_submodule(name)
        out_hw = _pair(mod.output_size if mod.output_size is not None else in_hw)
        out_hw = (out_hw[0] or in_hw[0], out_hw[1] or in_hw[1])
        if in_hw[0] % out_hw[0] or in_hw[1] % out_hw[1]:
            parent_name, _, child = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            setattr(parent, child, _BinAveragePool(in_hw, out_hw))
    return net


def export_graph(module: nn.Module, image_size: int, path: str | Path, output_names: list[str],
                 opset: int = OPSET) -> None:
    """Write ``module`` (input ``image``: float ``(batch, 3, S, S)``) as a checked ONNX file.

    Raises whatever the exporter raises for an operator it cannot express; callers turn that
    into a :class:`~galaxymorph.errors.ModelError` naming the model.
    """
    import onnx

    dummy = torch.rand(2, 3, image_size, image_size)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice, tracer notes
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (dummy,), str(path), dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=output_names,
                          dynamic_axes={"image": {0: "batch"}, **{n: {0: "batch"} for n in output_names}})
    onnx.checker.check_model(str(path))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
