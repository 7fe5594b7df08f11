"""Conditional GAN: networks, augmentation, EMA, the training loop, resume, sampling, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from galaxymorph.data import open_dataset
from galaxymorph.errors import ConfigError, GalaxymorphError
from galaxymorph.generative.augment import diff_augment, parse_policy, random_symmetry
from galaxymorph.generative.config import GanConfig
from galaxymorph.generative.ema import make_ema
from galaxymorph.generative.networks import Discriminator, Generator, minibatch_std
from galaxymorph.generative.sampling import load_generator, sample
from galaxymorph.generative.trainer import train_gan


def write_toy(root: Path, n_per_class: int = 48, size: int = 32, seed: int = 0) -> Path:
    """Two classes of blurred blobs on black sky: red ones ("Red", 0) and blue ones ("Blue", 1)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = ["filename,label,label_name"]
    yy, xx = np.mgrid[0:size, 0:size]
    for label, name in enumerate(["Red", "Blue"]):
        for i in range(n_per_class):
            cy, cx = size / 2 + rng.normal(0, 1.5, 2)
            r = rng.uniform(size / 8, size / 5)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            img = np.zeros((size, size, 3))
            img[..., 0 if label == 0 else 2] = blob
            img[..., 1] = 0.3 * blob
            img = (np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1) * 255).astype(np.uint8)
            Image.fromarray(img).save(root / "images" / f"{name}_{i:03d}.png")
            rows.append(f"images/{name}_{i:03d}.png,{label},{name}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def red_minus_blue(images: torch.Tensor) -> float:
    """Mean R - B in the central half of uint8 images: > 0 for red galaxies, < 0 for blue."""
    s = images.shape[-1]
    x = images.float()[:, :, s // 4:3 * s // 4, s // 4:3 * s // 4]
    return float((x[:, 0] - x[:, 2]).mean())


def toy_config(csv: Path, **kw) -> GanConfig:
    base = dict(data=f"catalog:{csv}", image_size=32, batch_size=16, epochs=1, steps_per_epoch=60,
                g_channels=16, d_channels=16, lr_g=1e-3, lr_d=1e-3, cache=False, log_every=10,
                seed=0, samples_per_class=4)
    base.update(kw)
    return GanConfig(**base)


@pytest.fixture(scope="module")
def toy_csv(tmp_path_factory) -> Path:
    return write_toy(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, toy_csv) -> Path:
    """60 steps on the toy set (a few seconds): shared by the learning and sampling tests."""
    run = tmp_path_factory.mktemp("gan") / "run"
    train_gan(run, toy_config(toy_csv), progress=False, echo=None)
    return run


# ---------------------------------------------------------------------------- networks


@pytest.mark.parametrize("size", [32, 64])
def test_network_shapes(size):
    g, d = Generator(4, size, base_channels=8), Discriminator(4, size, base_channels=8)
    z, y = torch.randn(3, 128), torch.tensor([0, 1, 3])
    x = g(z, y)
    assert x.shape == (3, 3, size, size)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x, y).shape == (3,)


def test_128px_generator_builds():
    assert Generator(2, 128, base_channels=8)(torch.randn(2, 128), torch.tensor([0, 1])).shape == (2, 3, 128, 128)
    with pytest.raises(ConfigError):
        Generator(2, 48)


def test_generator_is_conditioned_on_class():
    torch.manual_seed(0)
    g = Generator(3, 32, base_channels=8).eval()
    z = torch.randn(1, 128).repeat(3, 1)
    x = g(z, torch.tensor([0, 1, 2]))
    assert (x[0] - x[1]).abs().mean() > 1e-4
    assert (x[1] - x[2]).abs().mean() > 1e-4
    assert torch.allclose(g(z[:1], torch.tensor([1])), x[1:2], atol=1e-5)  # eval: no batch stats


def test_discriminator_projection_uses_label():
    torch.manual_seed(0)
    d = Discriminator(3, 32, base_channels=8).eval()
    x = torch.randn(1, 3, 32, 32).repeat(3, 1, 1, 1)
    with torch.no_grad():
        s = d(x, torch.tensor([0, 1, 2]))
    assert len(set(s.round(decimals=5).tolist())) == 3
    # The label enters only through the projection <embed(y), h>: score differences between
    # labels are exactly differences of embeddings dotted with the pooled features.
    with torch.no_grad():
        h = d.features(x)[0]
        e = d.embed(torch.tensor([0, 1, 2]))
    assert torch.allclose(s - s[0], (e - e[0]) @ h, atol=1e-4)


def test_minibatch_std_sees_collapse_within_groups_only():
    torch.manual_seed(0)
    x = torch.randn(8, 5, 4, 4)
    x[4:] = x[4:5]  # the second group of 4 is "mode collapsed"
    out = minibatch_std(x, group=4)
    assert out.shape == (8, 6, 4, 4)
    assert float(out[:4, 5].min()) > 0.1 and float(out[4:, 5].max()) < 1e-3


def test_ema_starts_as_copy_and_then_lags():
    torch.manual_seed(0)
    g = Generator(2, 32, base_channels=8)
    ema = make_ema(g, decay=0.999)
    ema.update_parameters(g)
    assert all(torch.equal(a, b) for a, b in zip(ema.module.state_dict().values(),
                                                  g.state_dict().values(), strict=True))
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    ema.update_parameters(g)  # warm-up decay after 1 update: 2/11, so it moves 9/11 of the way
    p_g, p_e = next(g.parameters()), next(ema.module.parameters())
    assert torch.allclose(p_g - p_e, torch.full_like(p_g, 2 / 11), atol=1e-5)
    assert not any(p.requires_grad for p in ema.parameters())


# ---------------------------------------------------------------------------- augmentation


def test_random_symmetry_swaps_mirrored_labels():
    torch.manual_seed(0)
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(200, 3, 1, 1)
    y = torch.zeros(200, dtype=torch.long)
    out, y8 = random_symmetry(x, y, 8, swap=[1, 0])
    assert 0 < int(y8.sum()) < 200  # about half are mirror images, relabelled
    _, y4 = random_symmetry(x, y, 4, swap=[1, 0])
    assert int(y4.sum()) == 0  # rotations never swap chirality
    flat = out.flatten(1)
    assert len({tuple(r.tolist()) for r in flat}) == 8  # all 8 symmetries occur


def test_diff_augment_keeps_shape_and_gradient():
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    y = diff_augment(x * 2 - 1, parse_policy("color,translation,cutout"))
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert parse_policy("none") == ()
    with pytest.raises(ConfigError):
        parse_policy("color,blur")


# ---------------------------------------------------------------------------- training


def test_training_learns_the_toy_classes(trained_run):
    """Before training every class is grey (R-B ~ 0); after 60 steps the generator draws red
    galaxies for class 0 and blue ones for class 1 on a dark sky."""
    torch.manual_seed(0)
    init = Generator(2, 32, base_channels=16).eval()
    with torch.no_grad():
        z = torch.randn(64, 128)
        before = [((init(z, torch.full((64,), c)) + 1) * 127.5) for c in range(2)]
    assert all(abs(red_minus_blue(b)) < 5 for b in before)
    gen = load_generator(trained_run)
    after = [gen.generate(torch.full((64,), c), seed=1) for c in range(2)]
    assert red_minus_blue(after[0]) > 25, red_minus_blue(after[0])
    assert red_minus_blue(after[1]) < -25, red_minus_blue(after[1])
    assert float(after[0].float().mean()) < 100 < float(before[0].mean())  # the sky got darker
    # The logged losses are finite and the discriminator learnt to score real above fake.
    losses = pd.read_csv(trained_run / "losses.csv")
    assert {"step", "epoch", "loss_d", "loss_g", "d_real", "d_fake", "imgs_per_s",
            "spread"} <= set(losses.columns)
    assert losses["step"].tolist() == [10, 20, 30, 40, 50, 60]  # one row per log_every steps
    last = losses.iloc[-1]
    assert np.isfinite([last["loss_d"], last["loss_g"]]).all() and last["spread"] > 0
    assert last["d_real"] > last["d_fake"]


def test_run_folder_contents(trained_run):
    for name in ("last.ckpt", "config.yaml", "losses.csv", "losses.png", "generator.safetensors",
                 "gan_card.json", "samples/epoch_001.png"):
        assert (trained_run / name).is_file(), name
    card = json.loads((trained_run / "gan_card.json").read_text())
    assert card["classes"] == ["Red", "Blue"] and card["class_labels"] == [0, 1]
    assert card["image_size"] == 32 and card["epochs"] == 1 and card["z_dim"] == 128
    grid = Image.open(trained_run / "samples/epoch_001.png")
    assert grid.size == (4 * 34 + 2, 2 * 34 + 2)  # 2 classes x 4 samples of 32 px, 2 px gaps
    ckpt = torch.load(trained_run / "last.ckpt", weights_only=True)  # Lightning's checkpoint
    assert ckpt["galaxymorph_gan"]["epochs"] == 1 and ckpt["galaxymorph_gan"]["steps"] == 60
    assert len(ckpt["optimizer_states"]) == 2 and any(k.startswith("ema.") for k in ckpt["state_dict"])


def test_resume_continues_exactly(tmp_path, toy_csv):
    cfg = dict(steps_per_epoch=2, batch_size=8, log_every=1)
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_gan(straight, toy_config(toy_csv, epochs=2, **cfg), progress=False, echo=None)
    train_gan(split, toy_config(toy_csv, epochs=1, **cfg), progress=False, echo=None)
    with pytest.raises(GalaxymorphError, match="--resume"):
        train_gan(split, toy_config(toy_csv, epochs=2, **cfg), progress=False, echo=None)
    with pytest.raises(ConfigError, match="keeps its settings"):
        train_gan(split, resume=True, overrides={"lr_g": 1.0}, progress=False, echo=None)
    summary = train_gan(split, resume=True, epochs=2, progress=False, echo=None)
    assert summary["epochs"] == 2 and summary["steps"] == 4
    a = torch.load(straight / "last.ckpt", weights_only=True)
    b = torch.load(split / "last.ckpt", weights_only=True)
    assert b["galaxymorph_gan"]["epochs"] == 2 and b["galaxymorph_gan"]["steps"] == 4
    # The same weights, optimiser moments and RNG state as the uninterrupted run...
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), f"{k} differs after resume"
    for sa, sb in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for k, v in sa["state"].items():
            assert all(torch.equal(v[n], sb["state"][k][n]) for n in v), f"optimiser state {k}"
    assert torch.equal(a["galaxymorph_gan"]["rng"]["torch"], b["galaxymorph_gan"]["rng"]["torch"])
    # ...and the same loss log, the resumed epoch appended to the first one's rows.
    la, lb = (pd.read_csv(d / "losses.csv").drop(columns="imgs_per_s") for d in (straight, split))
    assert lb["step"].tolist() == [1, 2, 3, 4]
    pd.testing.assert_frame_equal(la, lb[la.columns])
    assert (split / "samples/epoch_002.png").is_file()
    assert json.loads((split / "gan_card.json").read_text())["epochs"] == 2


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(GalaxymorphError, match=r"no last\.ckpt"):
        train_gan(tmp_path / "nothing", resume=True, progress=False, echo=None)


def test_bad_config_values_are_config_errors(toy_csv):
    with pytest.raises(ConfigError, match="image-size"):
        toy_config(toy_csv, image_size=48)
    with pytest.raises(ConfigError, match="multiple of 4"):
        toy_config(toy_csv, batch_size=10)
    with pytest.raises(ConfigError, match="loss"):
        toy_config(toy_csv, loss="wasserstein")
    with pytest.raises(ConfigError, match="unknown GAN config"):
        GanConfig.from_dict({"data": "x", "learning_rate": 1})


# ---------------------------------------------------------------------------- sampling


def test_sampled_catalog_is_a_dataset(trained_run, tmp_path):
    csv = sample(trained_run, tmp_path / "gen", n=5, seed=3)
    ds = open_dataset(f"catalog:{csv}")
    assert ds.class_names == ["Red", "Blue"]
    assert ds.class_counts().tolist() == [5, 5]
    assert ds.read(0).shape == (32, 32, 3)
    with pytest.raises(GalaxymorphError, match="overwrite"):
        sample(trained_run, tmp_path / "gen", n=1)
    only = sample(trained_run, tmp_path / "blue", n=3, class_name="Blue")
    ds = open_dataset(f"catalog:{only}")
    assert ds.labels.tolist() == [1, 1, 1] and ds.class_names[1] == "Blue"
    with pytest.raises(GalaxymorphError, match="does not model class 'Green'"):
        sample(trained_run, tmp_path / "green", n=1, class_name="Green")
    # Same seed, same images.
    again = sample(trained_run, tmp_path / "gen2", n=5, seed=3)
    assert (csv.parent / "images/Red_00002.png").read_bytes() == (again.parent / "images/Red_00002.png").read_bytes()


def test_class_subset_keeps_dataset_labels(tmp_path, toy_csv):
    run = tmp_path / "blue_only"
    train_gan(run, toy_config(toy_csv, classes=["Blue"], steps_per_epoch=2, batch_size=8),
              progress=False, echo=None)
    card = json.loads((run / "gan_card.json").read_text())
    assert card["classes"] == ["Blue"] and card["class_labels"] == [1]
    ds = open_dataset(f"catalog:{sample(run, tmp_path / 'out', n=2)}")
    assert ds.labels.tolist() == [1, 1] and ds.class_names[1] == "Blue"
    with pytest.raises(GalaxymorphError, match="Green"):
        train_gan(tmp_path / "x", toy_config(toy_csv, classes=["Green"]), progress=False, echo=None)


def test_gallery_writes_png(trained_run, tmp_path):
    from galaxymorph.generative.gallery import gallery

    out = gallery(trained_run, tmp_path / "g.png", n=3)
    img = Image.open(out)
    assert img.size[0] > 100 and img.size[1] > 50


# ---------------------------------------------------------------------------- CLI


def test_cli_train_sample_fid_end_to_end(tmp_path, toy_csv, monkeypatch, capsys):
    from galaxymorph.cli.main import main

    monkeypatch.setenv("GALAXYMORPH_HOME", str(tmp_path / "home"))
    run, gen = tmp_path / "run", tmp_path / "gen"
    main(["gan", "train", "--data", str(toy_csv.parent), "--image-size", "32", "--epochs", "1",
          "--steps-per-epoch", "2", "--batch-size", "8", "--g-channels", "8", "--d-channels", "8",
          "--out", str(run), "--no-progress"])
    assert (run / "generator.safetensors").is_file()
    main(["gan", "sample", str(run), "--n", "6", "--out", str(gen)])
    assert open_dataset(f"catalog:{gen / 'labels.csv'}").class_counts().tolist() == [6, 6]
    main(["gan", "gallery", str(run), "--out", str(tmp_path / "gallery.png"), "--n", "2"])
    assert (tmp_path / "gallery.png").is_file()
    # FID through the CLI on a small classifier's features (the Inception path is in test_fid).
    import galaxymorph.models.introspect as introspect
    import galaxymorph.models.loading as loading
    from galaxymorph.data.transforms import Preprocessing

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    clf = SimpleNamespace(net=net, preprocessing=Preprocessing(image_size=32),
                          class_names=["Red", "Blue"])

    monkeypatch.setattr(loading, "load_classifier", lambda ref, device="cpu": clf)
    monkeypatch.setattr(introspect, "features", lambda model, x: model(x))
    main(["fid", "--real", f"catalog:{toy_csv}", "--fake", f"catalog:{gen / 'labels.csv'}",
          "--features", "classifier:some/run", "--n", "12", "--image-size", "32", "--per-class",
          "--json", str(tmp_path / "fid.json"), "--no-progress"])
    result = json.loads((tmp_path / "fid.json").read_text())
    assert result["dim"] == 8 and result["n_fake"] == 12 and result["fid"] > 0
    assert result["fid"] == pytest.approx(result["fid_scipy"], rel=1e-5)
    assert set(result["per_class"]) <= {"Red", "Blue"}
    assert "real-vs-real baseline" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["gan", "sample", "/nonexistent/run", "--n", "2", "--out", "/tmp/x"], "not found"),
    (["gan", "train", "--out", "RUN"], "--data"),
    (["gan", "train", "--data", "/nonexistent/data.csv", "--out", "RUN"], "catalog CSV not found"),
    (["fid", "--real", "/nonexistent.csv", "--fake", "/nonexistent.csv"], "not found"),
])
def test_cli_errors_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    from galaxymorph.cli.main import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err and "Traceback" not in err


def test_split_restricted_gan_and_provenance_warning(tmp_path, toy_csv, trained_run):
    # A GAN for augmentation must learn from the classifier's training fold only; samples
    # from one that saw every image are flagged when a classifier trains on them.
    from galaxymorph.data.splits import make_split
    from galaxymorph.training.config import TrainConfig
    from galaxymorph.training.datamodule import GalaxyDataModule, open_training_data

    spec = f"catalog:{toy_csv}"
    ds = open_dataset(spec)
    split = make_split(ds.ids, ds.labels, seed=0, spec=spec)
    split_file = split.save(tmp_path / "split.json")
    run = tmp_path / "fold_gan"
    train_gan(run, toy_config(toy_csv, steps_per_epoch=2, batch_size=8, split_file=str(split_file)),
              progress=False, echo=None)
    card = json.loads((run / "gan_card.json").read_text())
    assert card["split"]["fold"] == "train" and sum(card["class_counts"]) == len(split.train)

    def warnings_for(generator: Path) -> list[list[str]]:
        fake = sample(generator, tmp_path / f"samples_{generator.name}", n=6)
        found = []
        # However the generated set is named: a catalog: spec, its CSV or its folder.
        for synthetic in (f"catalog:{fake}", str(fake), str(fake.parent)):
            cfg = TrainConfig(data=spec, split_file=str(split_file), synthetic=[synthetic],
                              synthetic_ratio=1.0, image_size=32, progress=False, cache=False)
            folds = GalaxyDataModule(cfg, open_training_data(cfg)).setup()
            assert folds.synthetic
            found.append(folds.warnings)
        return found

    assert warnings_for(run) == [[], [], []]
    for warnings in warnings_for(trained_run):
        (warning,) = warnings
        assert "validation and test images" in warning and "--split-file" in warning
