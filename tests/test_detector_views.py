"""What a detector's network sees and starts from: the frequency view (a deterministic
whitened log spectrum beside the pixels, taken inside the network so every command applies it
alike, that shows a periodic upsampling artefact the pixels barely do), and a frozen
pretrained backbone with a linear head trained through the same path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from galaxymorph.data.synthetic import make_synthetic_arrays, write_synthetic_catalog
from galaxymorph.errors import ConfigError, ModelError
from galaxymorph.models.artifact import ModelCard
from galaxymorph.models.network import build_network
from galaxymorph.models.views import log_spectrum, view_channels


def _checkerboard(size: int) -> np.ndarray:
    """(-1)^(i+j): the pattern a stride-2 transposed convolution leaves behind."""
    i, j = np.indices((size, size))
    return np.where((i + j) % 2 == 0, 1.0, -1.0)


def test_log_spectrum_is_deterministic_shape_correct_and_shows_the_upsampling_peak():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=gen)
    a, b = log_spectrum(x), log_spectrum(x.clone())
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and torch.isfinite(a).all()
    assert torch.allclose(a.flatten(2).std(-1), torch.ones(2, 3), atol=1e-3)  # per image/channel
    # A faint checkerboard (4 grey levels, under the renderer's sky noise) sits alone at the
    # (Nyquist, Nyquist) corner of the shifted spectrum: whitening must keep it there, the
    # brightest frequency of every channel.
    images, _ = make_synthetic_arrays(1, size=32, seed=0)
    clean = torch.from_numpy(images[:1].astype(np.float32) / 255).permute(0, 3, 1, 2)
    marked = log_spectrum(clean + torch.from_numpy(4 / 255 * _checkerboard(32)).float())[0]
    assert (marked.flatten(1).argmax(1) == 0).all()
    assert (marked[:, 0, 0] > log_spectrum(clean)[0, :, 0, 0] + 1).all()
    with pytest.raises(ValueError, match="N, C, H, W"):
        log_spectrum(x[0])


def test_network_takes_the_view_inside():
    x = torch.rand(2, 3, 32, 32)
    for view in ("pixels", "frequency", "both"):
        net = build_network("seed-detector", 2, view=view, image_size=32).eval()
        assert net.backbone.features[0].conv.in_channels == view_channels(view)
        assert net(x).shape == (2, 2)  # RGB in, whatever the view
    with pytest.raises(ConfigError, match="view must be one of"):
        build_network("seed-detector", 2, view="wavelets")
    card = {"architecture": "seed-detector", "class_names": ["real", "synthetic"],
            "image_size": 32, "crop": 1.0, "model_kwargs": {"view": "fourier"}}
    with pytest.raises(ModelError, match="view must be one of"):
        ModelCard.from_dict(card, "card.json")


def _upsampled_folder(folder: Path, n_per_class: int, seed: int, size: int = 32) -> Path:
    """Renders made at half the size and enlarged by a nearest-neighbour upsampling layer,
    the commonest generator upsampler: the same galaxies, sky noise and brightness as the real
    toy images, but every 2 x 2 block repeats one pixel (spectral replicas at Nyquist)."""
    images, _ = make_synthetic_arrays(n_per_class, size=size // 2, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img.repeat(2, axis=0).repeat(2, axis=1)).save(folder / f"up_{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def both_run(tmp_path_factory):
    from galaxymorph.detection import train_detector

    root = tmp_path_factory.mktemp("views")
    toy = {"real": f"catalog:{write_synthetic_catalog(root / 'real', 25, size=32, seed=1)}",
           "fake": str(_upsampled_folder(root / "fake", 25, seed=2)),
           "real_eval": f"catalog:{write_synthetic_catalog(root / 'real_eval', 12, size=32, seed=3)}",
           "fake_eval": str(_upsampled_folder(root / "fake_eval", 12, seed=4))}
    # No zoom or shift (resampling smears a one-pixel pattern; the flips and quarter turns of
    # the default augmentation keep it) and no degradations (their blur would erase it). With
    # these settings the pixels alone reached validation loss 0.54 after 4 epochs, both views
    # 0.006 after one.
    run = train_detector(toy["real"], toy["fake"], root / "run", view="both", image_size=32,
                         epochs=2, patience=0, batch_size=16, progress=False, threads=2,
                         cache=False, auto_fakes=[], augment=False, zoom=0.0, shift=0.0)
    return run, toy, root


def test_both_view_separates_a_periodic_upsampling_artefact(both_run):
    from galaxymorph.detection import evaluate_detector

    run, toy, root = both_run
    metrics = evaluate_detector(run.run_dir, toy["real_eval"], toy["fake_eval"], root / "eval",
                                exclude_training=False, progress=False)
    assert metrics["n"] == 96
    assert metrics["roc_auc"] >= 0.9  # chance is 0.5


def test_card_round_trips_the_view(both_run):
    from galaxymorph.detection import load_detector, predict_detector

    run, toy, _ = both_run
    info = json.loads((run.run_dir / "detector.json").read_text())
    card = json.loads((run.run_dir / "model_card.json").read_text())
    assert info["view"] == "both" and card["model_kwargs"]["view"] == "both"
    det = load_detector(run.run_dir)
    assert det.input_view == "both" and det.classifier.net.view == "both"
    first = sorted(Path(toy["fake_eval"]).glob("*.png"))[0]
    assert predict_detector(run.run_dir, [first])[0]["synthetic_score"] is not None
    # detector.json and the card must agree on what the network sees.
    (run.run_dir / "detector.json").write_text(json.dumps({**info, "view": "pixels"}))
    try:
        with pytest.raises(Exception, match="view 'pixels' but the model card builds 'both'"):
            load_detector(run.run_dir)
    finally:
        (run.run_dir / "detector.json").write_text(json.dumps(info))


def test_predict_writes_the_verdict_and_its_parts_as_detector_predict_does(both_run):
    """galaxymorph predict --detector: the one score, the verdict, what flagged it and the
    parts as columns, the same values detector predict gives for the same file."""
    import galaxymorph
    from galaxymorph.detection import load_detector, predict_detector

    run, toy, _ = both_run
    files = sorted(str(f) for f in Path(toy["fake_eval"]).glob("*.png"))[:4]
    df = galaxymorph.predict(files, model="default", detector=load_detector(run.run_dir),
                             progress=False)
    from galaxymorph.inference.writers import DETECTOR_COLUMNS

    assert list(df.columns)[-7:] == [*DETECTOR_COLUMNS, "error"]
    direct = predict_detector(run.run_dir, files)
    for column in ("synthetic_score", "p_network", "p_statistics", "atypicality"):
        np.testing.assert_allclose(df[column], [r[column] for r in direct], atol=1e-6)
    assert df["verdict"].tolist() == [r["verdict"] for r in direct]
    assert df["flagged_by"].fillna("").tolist() == [r["flagged_by"] for r in direct]
    assert df["atypicality"].between(0, 1).all()


def test_backbone_options_freeze_a_pretrained_network():
    from galaxymorph.detection.train import backbone_options

    assert backbone_options(None, "seed-detector") == {}
    assert backbone_options("imagenet", "seed-detector") == {
        "model": "mobilenetv2", "pretrained": True, "transfer": "linear-probe"}
    assert backbone_options("imagenet", "resnet18", view="both")["model"] == "resnet18"
    assert backbone_options("default", "seed-detector") == {
        "model": "mobilenetv2", "init_from": "default", "transfer": "linear-probe"}
    with pytest.raises(ConfigError, match="keeps its own input view"):
        backbone_options("default", "seed-detector", view="frequency")
    with pytest.raises(ConfigError, match="choose one"):
        backbone_options("imagenet", "resnet18", pretrained=True)
    with pytest.raises(ModelError, match="no such model folder"):
        backbone_options("runs/nowhere", "seed-detector")


def test_default_backbone_with_a_linear_head(tmp_path):
    """The built-in morphology model's MobileNetV2, frozen (BatchNorm statistics included),
    with a new two-class head trained through galaxymorph.train: better than chance."""
    from safetensors.torch import load_file

    from galaxymorph.detection import evaluate_detector, train_detector
    from galaxymorph.models.loading import default_model_dir

    real = f"catalog:{write_synthetic_catalog(tmp_path / 'real', 20, size=32, seed=1)}"
    fake = str(_upsampled_folder(tmp_path / "fake", 20, seed=2))
    run = train_detector(real, fake, tmp_path / "run", backbone="default", image_size=32,
                         epochs=3, patience=0, batch_size=16, lr=1e-2, progress=False, threads=2,
                         cache=False, auto_fakes=[], augment=False)
    parent = load_file(str(default_model_dir() / "model.safetensors"))
    trained = load_file(str(run.run_dir / "model.safetensors"))
    head = "backbone.classifier.1."
    assert set(trained) == set(parent)
    assert all(torch.equal(trained[k], parent[k]) for k in parent if not k.startswith(head))
    assert trained[head + "weight"].shape == (2, parent[head + "weight"].shape[1])
    card = json.loads((run.run_dir / "model_card.json").read_text())
    assert card["training"]["transfer"] == "linear-probe" and card["training"]["init_from"] == "default"
    info = json.loads((run.run_dir / "detector.json").read_text())
    assert info["backbone"] == "default"
    metrics = evaluate_detector(
        run.run_dir, f"catalog:{write_synthetic_catalog(tmp_path / 'real_eval', 10, size=32, seed=3)}",
        str(_upsampled_folder(tmp_path / "fake_eval", 10, seed=4)), tmp_path / "eval",
        exclude_training=False, progress=False)
    assert metrics["roc_auc"] >= 0.8  # chance is 0.5
