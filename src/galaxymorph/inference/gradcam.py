"""Grad-CAM heat maps: which part of the cutout drove the predicted class.

Uses pytorch-grad-cam on :func:`~galaxymorph.models.introspect.gradcam_target_layer` (the
deepest convolutional stage of any registry model whose map is at least 6 cells across at the
model's input size, so a 96 px MobileNetV2 gets a 6x6 map rather than 3x3). If that library is missing or fails on a model, a
small hook-based Grad-CAM gives the same map, so the web app always has one to show.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger("galaxymorph")

#: Grad-CAM registers hooks on a shared network: one map at a time per process (the web app
#: serves several sessions with one cached model).
LOCK = threading.RLock()


@dataclass
class CamResult:
    image: np.ndarray  # (S, S, 3) uint8: the network's input (cropped, resized)
    heatmap: np.ndarray  # (S, S) float in [0, 1]
    overlay: np.ndarray  # (S, S, 3) uint8: heat map blended over the image
    target: int  # class index explained
    method: str  # "pytorch-grad-cam" or "hooks"


def gradcam(clf, image: np.ndarray, target: int | None = None) -> CamResult:
    """Grad-CAM of decoded image ``image`` (H, W, 3) uint8 for class ``target`` (default: the
    predicted class), through the classifier's own preprocessing. For a decision-tree model the
    score explained is the log of the class's score in its taxonomy (the product of the answers
    along the class's path)."""
    from galaxymorph.models.ensemble import members_of
    from galaxymorph.models.introspect import gradcam_target_layer

    prepared = clf.prepare(image)  # (3, S, S) uint8
    x = prepared.float().div(255.0).unsqueeze(0).to(clf.device)
    net = clf.net.eval()
    with LOCK, torch.inference_mode(False), torch.enable_grad():
        if target is None:
            target = int(clf.predict_proba(prepared.unsqueeze(0), tta=False)[0].argmax())
        score = _class_score(clf, target)
        # An ensemble's map is the mean of its members' maps for the ensemble's class.
        heats = []
        for member in members_of(net):
            layer = gradcam_target_layer(member.backbone, image_size=x.shape[-1])
            heat, method = _member_cam(member, layer, x, score)
            heats.append(heat)
        heat = _normalise(np.mean(heats, axis=0))
        net.zero_grad(set_to_none=True)
    rgb = prepared.permute(1, 2, 0).cpu().numpy()
    return CamResult(rgb, heat, overlay(rgb, heat), target, method)


Score = Callable[[torch.Tensor], torch.Tensor]


def _class_score(clf, target: int) -> Score:
    """The scalar Grad-CAM differentiates, from one image's network outputs ``(C,)``."""
    if not clf.is_tree:
        return lambda out: out[target]
    from galaxymorph.models.tree import class_log_score

    schema, taxonomy = clf.schema, clf.taxonomy
    return lambda out: class_log_score(out.unsqueeze(0), schema, taxonomy, target)[0]


def _member_cam(net: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor,
                score: Score) -> tuple[np.ndarray, str]:
    try:
        return _library_cam(net, layer, x, score), "pytorch-grad-cam"
    except Exception as exc:  # missing package, or a layer layout it does not handle
        log.debug("pytorch-grad-cam failed (%s); using the hook implementation", exc)
        return _hook_cam(net, layer, x, score), "hooks"


def _library_cam(net: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, score: Score) -> np.ndarray:
    from pytorch_grad_cam import GradCAM

    with GradCAM(model=net, target_layers=[layer]) as cam:  # a target: a callable on one output
        heat = cam(input_tensor=x, targets=[score])[0]
    return _normalise(np.asarray(heat, dtype=np.float64))


def _hook_cam(net: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, score: Score) -> np.ndarray:
    """Grad-CAM from first principles: channel weights = mean gradient of the class score."""
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        x = x.clone().requires_grad_(True)  # so activations need gradients even if frozen
        score = score(net(x)[0])
    finally:
        handle.remove()
    acts = captured[-1]
    grads = torch.autograd.grad(score, acts)[0]
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * acts).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return _normalise(cam[0, 0].detach().cpu().double().numpy())


def _normalise(heat: np.ndarray) -> np.ndarray:
    heat = np.nan_to_num(heat, nan=0.0)
    lo, hi = float(heat.min()), float(heat.max())
    return (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a heat map (jet colours, the Grad-CAM convention) over an RGB uint8 image."""
    from matplotlib import colormaps

    colours = colormaps["jet"](heat)[..., :3]
    blend = (1 - alpha) * rgb.astype(np.float64) / 255.0 + alpha * colours
    return (np.clip(blend, 0, 1) * 255 + 0.5).astype(np.uint8)
