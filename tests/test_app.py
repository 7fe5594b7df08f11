"""The Streamlit page under Streamlit's AppTest harness, and the logic behind it."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from galaxymorph.app import core, launcher
from galaxymorph.errors import ImageReadError
from galaxymorph.models.loading import load_classifier

SCRIPT = str(launcher.app_script())


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def app(tiny_model, monkeypatch):
    monkeypatch.setenv(core.ENV_MODEL, str(tiny_model))
    monkeypatch.delenv(core.ENV_EXAMPLES, raising=False)
    monkeypatch.delenv(core.ENV_INDEX, raising=False)
    at = AppTest.from_file(SCRIPT, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture(scope="module")
def galaxy_png(inference_catalog) -> bytes:
    return next((inference_catalog.parent / "images").glob("*.png")).read_bytes()


def test_page_renders_with_model_card(app, tiny_model):
    assert not app.error
    card = "\n".join(m.value for m in app.sidebar.markdown)
    assert "cnn2" in card and "Elliptical" in card and "training data" in card
    assert app.sidebar.selectbox[0].value == str(tiny_model)
    uploader = app.file_uploader[0]
    assert {".png", ".jpg", ".fits", ".fit"} <= set(uploader.allowed_type)
    assert uploader.accept_multiple_files


def test_upload_shows_class_probabilities_and_gradcam(app, tiny_model, galaxy_png):
    app.file_uploader[0].set_value(("galaxy.png", galaxy_png, "image/png"))
    app.run()
    assert not app.exception and not app.error
    text = [m.value for m in app.markdown if "Predicted class" in m.value]
    assert len(text) == 1
    label, pct = re.search(r"\*\*(.+?)\*\* · probability \*\*([\d.]+)%\*\*", text[0]).groups()
    from galaxymorph.data.imageio import decode_image

    probs = load_classifier(tiny_model).predict_proba([decode_image(galaxy_png, "galaxy.png")])[0]
    classes = load_classifier(tiny_model).class_names
    assert label == classes[int(probs.argmax())]
    assert float(pct) == pytest.approx(100 * probs.max(), abs=0.06)
    table = app.table[0].value
    assert sorted(table.index) == sorted(classes)
    captions = [img.caption for el in app.get("image") for img in el.proto.imgs]
    assert "uploaded image" in captions and any(c.startswith("Grad-CAM for") for c in captions)


def test_corrupt_oversized_and_good_uploads_together(app, galaxy_png, monkeypatch):
    app.file_uploader[0].set_value([("broken.png", b"\x89PNG\r\n\x1a\nnot really", "image/png"),
                                    ("galaxy.png", galaxy_png, "image/png")])
    app.run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert len(errors) == 1 and "broken.png" in errors[0] and "Traceback" not in errors[0]
    assert sum("Predicted class" in m.value for m in app.markdown) == 1


def test_oversized_upload_is_refused(tiny_model, monkeypatch):
    monkeypatch.setenv(core.ENV_MODEL, str(tiny_model))
    monkeypatch.setenv(core.ENV_MAX_UPLOAD_MB, "1")
    at = AppTest.from_file(SCRIPT, default_timeout=120).run()
    at.file_uploader[0].set_value(("huge.png", b"\0" * (1024 * 1024 + 10), "image/png")).run()
    assert not at.exception
    assert any("at most 1 MB" in e.value for e in at.error)


def test_example_gallery_classifies_a_render(app):
    buttons = [b for b in app.button if b.key and b.key.startswith("example_")]
    assert len(buttons) == 8
    buttons[1].click().run()
    assert not app.exception
    assert any("Predicted class" in m.value for m in app.markdown)
    assert any(m.value.startswith("##### synthetic") for m in app.markdown)
    # Started without --index: the "Similar galaxies" panel says how to build one.
    assert any("Similar galaxies" in m.value for m in app.markdown)
    assert any("galaxymorph index build" in i.value and "--index" in i.value for i in app.info)


def test_upload_with_a_detector_shows_its_verdict_and_which_part_flagged(tiny_model, tmp_path,
                                                                          galaxy_png, monkeypatch):
    """Started with --detector: beside the classes, the detector's verdict and, line by line,
    its score, which part flagged the image (or that none did) and what each part read."""
    from galaxymorph.data.imageio import decode_image
    from galaxymorph.detection import load_detector
    from galaxymorph.models.artifact import ModelCard, save_artifact
    from galaxymorph.models.network import build_network

    det_dir = tmp_path / "detector"
    card = ModelCard(architecture="cnn2", class_names=["real", "synthetic"], image_size=24, crop=1.0)
    save_artifact(det_dir, build_network("cnn2", 2), card)
    monkeypatch.setenv(core.ENV_MODEL, str(tiny_model))
    monkeypatch.setenv(core.ENV_DETECTOR, str(det_dir))
    monkeypatch.delenv(core.ENV_INDEX, raising=False)
    at = AppTest.from_file(SCRIPT, default_timeout=120).run()
    at.file_uploader[0].set_value(("galaxy.png", galaxy_png, "image/png")).run()
    assert not at.exception and not at.error
    det = load_detector(det_dir)
    want = core.analyse(load_classifier(tiny_model), decode_image(galaxy_png, "galaxy.png"),
                        "galaxy.png", with_cam=False, detector=det)
    assert want.verdict in ("real", "synthetic")
    assert any(m.value == f"Real-vs-synthetic detector: **{want.verdict}**" for m in at.markdown)
    caption = next(c.value for c in at.caption if "score" in c.value and "threshold" in c.value)
    caption = caption.replace("\\", "")  # the app escapes Markdown in plain text
    first = "flagged by the network" if want.verdict == "synthetic" else "no part flags it"
    assert f"score {want.synthetic_score:.3f}" in caption and first in caption
    assert f"p(synthetic) {want.detector_parts['p_network']:.3f}" in caption
    assert "atypicality" not in caption  # a bare classifier has no fake-free part


def test_missing_default_model_is_explained(tmp_path, monkeypatch):
    import galaxymorph.models.loading as loading

    monkeypatch.setattr(loading, "default_model_dir", lambda: tmp_path / "no_default_model")
    monkeypatch.setenv(core.ENV_MODEL, "default")
    at = AppTest.from_file(SCRIPT, default_timeout=120).run()
    assert not at.exception
    assert any("default model is not installed" in e.value for e in at.error)


# -- the logic behind the page ---------------------------------------------------------------


def test_decode_upload_limits(galaxy_png):
    assert core.decode_upload(galaxy_png, "g.png").shape[2] == 3
    with pytest.raises(ImageReadError, match="file type"):
        core.decode_upload(b"hello", "notes.txt")
    with pytest.raises(ImageReadError, match="at most 1 MB"):
        core.decode_upload(b"\0" * (2 * 1024 * 1024), "big.png", max_upload_mb=1)
    big = np.zeros((100, 120, 3), dtype=np.uint8)
    with pytest.raises(ImageReadError, match="pixels"):
        core.decode_upload(_png(big), "wide.png", max_pixels=10_000)


def test_analyse_fits_upload(tiny_model):
    from astropy.io import fits

    yy, xx = np.mgrid[0:40, 0:40]
    buf = io.BytesIO()
    fits.PrimaryHDU(np.exp(-((xx - 20.0) ** 2 + (yy - 20.0) ** 2) / 30.0)).writeto(buf)
    clf = load_classifier(tiny_model)
    a = core.analyse_bytes(clf, buf.getvalue(), "stamp.fits")
    assert a.probs.sum() == pytest.approx(1.0) and a.label_name in clf.class_names
    assert a.cam is not None and a.cam.overlay.dtype == np.uint8
    assert a.cam.heatmap.min() >= 0 and a.cam.heatmap.max() <= 1


def test_gradcam_library_and_fallback_agree(tiny_model, galaxy_png):
    from galaxymorph.data.imageio import decode_image
    from galaxymorph.inference import gradcam as gc
    from galaxymorph.models.introspect import gradcam_target_layer

    clf = load_classifier(tiny_model)
    img = decode_image(galaxy_png, "g.png")
    lib = gc.gradcam(clf, img)
    x = clf.prepare(img).float().div(255).unsqueeze(0)
    layer = gradcam_target_layer(clf.net.backbone, image_size=x.shape[-1])
    hooks = gc._hook_cam(clf.net, layer, x, gc._class_score(clf, lib.target))
    assert lib.method == "pytorch-grad-cam"
    np.testing.assert_allclose(hooks, lib.heatmap, atol=1e-4)


def test_model_choices_and_launch_command(tiny_model, tmp_path):
    runs = tmp_path / "runs"
    (runs / "a").mkdir(parents=True)
    (runs / "a" / "model_card.json").write_text("{}")
    (runs / "not_a_run").mkdir()
    settings = core.AppSettings(model=str(tiny_model), models_dir=str(runs))
    choices = core.model_choices(settings)
    assert choices[0] == str(tiny_model) and str(runs / "a") in choices
    assert not any("not_a_run" in c for c in choices)
    assert core.AppSettings.from_env(settings.to_env()) == settings
    cmd = launcher.build_command("127.0.0.1", 8765, 20)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("streamlit_app.py")
    for flag in ("--server.address=127.0.0.1", "--server.port=8765", "--server.headless=true",
                 "--server.maxUploadSize=20", "--browser.gatherUsageStats=false"):
        assert flag in cmd
    assert "--client.showErrorDetails=none" in cmd  # from config.toml


def test_card_summary_shows_test_metrics_with_intervals(tiny_model):
    card = load_classifier(tiny_model).card
    card.metrics = {"n": 50, "accuracy": 0.8, "f1_macro": 0.6, "ece": 0.05,
                    "ci95": {"accuracy": [0.7, 0.9], "f1_macro": [0.45, 0.72]}}
    rows = core.card_summary(card)
    assert rows["test accuracy"] == "0.800 (95% interval 0.700-0.900)"
    assert rows["macro F1"].startswith("0.600 (95% interval 0.450") and rows["ECE"] == "0.050"
    assert rows["test images"] == "50"


def test_card_summary_names_each_training_source_with_its_images(tiny_model):
    """The data sets a model learned from, by name and image count, never the paths of the
    machine that trained it; counts from the card, or else from the model's split.json."""
    from galaxymorph.models.artifact import read_card
    from galaxymorph.models.loading import default_model_dir

    shipped = read_card(default_model_dir())
    assert shipped.training_data["spec"][0] == "catalog:../shared/data/gz1/labels.csv"
    rows = core.card_summary(shipped, core.split_sources("default"))
    assert rows["training data"] == (
        "gz1 (5,617 images), gz2_clean/train.csv (235), gz2_votes (4,388), gz2_hart8 (2,659), "
        "gz2_kaggle/spirals.csv (1,539, weak labels); label map gz1-4")
    # Without its split, the same names, no counts.
    assert core.card_summary(shipped)["training data"].startswith("gz1, gz2_clean/train.csv, ")
    # A card written by training records each source and its images itself.
    card = load_classifier(tiny_model).card
    source = card.training_data["sources"][0]
    assert core.card_summary(card)["training data"] == f"{source['name']} ({source['images']} images)"
    assert source["images"] == sum(card.training_data["counts"].values()) > 0


@pytest.mark.parametrize("training_data", [
    {}, None, {"spec": 5}, {"spec": "catalog:/a/b/labels.csv", "weak": [3, None]},
    {"sources": "x"}, {"sources": [{"spec": "gz1", "images": "many"}, 7]}, {"spec": ["x"], "weak": {}}])
def test_card_summary_survives_any_training_data(tiny_model, training_data):
    card = load_classifier(tiny_model).card
    card.training_data = training_data
    assert isinstance(core.card_summary(card, [{"counts": "x"}, 4])["training data"], str)


def test_app_answers_in_a_chosen_labelling_convention(galaxy_png, monkeypatch):
    """A model trained with --noisy-labels offers its sources' conventions in the sidebar; the
    answer then is p @ T, as `predict --convention` gives it."""
    from galaxymorph.data.imageio import decode_image

    monkeypatch.setenv(core.ENV_MODEL, "default")
    monkeypatch.delenv(core.ENV_EXAMPLES, raising=False)
    monkeypatch.delenv(core.ENV_INDEX, raising=False)
    at = AppTest.from_file(SCRIPT, default_timeout=180).run()
    assert not at.exception, at.exception
    box = next(b for b in at.sidebar.selectbox if b.key == "convention")
    clf = load_classifier("default")
    spec = next(k for k in clf.conventions() if "gz1" in k)
    assert box.value.startswith("the model's own") and spec in box.options
    box.set_value(spec)
    at.file_uploader[0].set_value(("galaxy.png", galaxy_png, "image/png"))
    at.run()
    assert not at.exception and not at.error
    image = [decode_image(galaxy_png, "galaxy.png")]
    expected = clf.with_convention(spec).predict_proba(image)[0]
    own = clf.predict_proba(image)[0]
    assert np.abs(expected - own).max() > 1e-3  # the choice changes the answer
    shown = at.table[0].value["probability"]
    got = {c: float(v.rstrip("%")) / 100 for c, v in shown.items()}
    for name, p in zip(clf.class_names, expected, strict=True):
        assert got[name] == pytest.approx(p, abs=6e-4)
    assert any("convention of" in c.value for c in at.sidebar.caption)
