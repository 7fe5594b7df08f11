"""Inference engines: choice and fallback, the ONNX graph cache, TTA as one batch, and predict,
evaluate and the detector giving the same answers through every engine."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import galaxymorph
from galaxymorph.data.transforms import dihedral, is_mirror, to_float
from galaxymorph.errors import ConfigError, ModelError
from galaxymorph.models import engine as engine_mod
from galaxymorph.models.engine import OnnxEngine, TorchEngine, make_engine, onnx_engine
from galaxymorph.models.loading import load_classifier


@pytest.fixture
def model(tiny_model, tmp_path):
    """A private copy of the tiny model: these tests write engine caches beside it."""
    dst = tmp_path / "model"
    shutil.copytree(tiny_model, dst, ignore=shutil.ignore_patterns("engine-*"))
    return dst


def _batch(n: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def _graphs(folder) -> list[str]:
    return sorted(p.name for p in folder.glob("engine-*.onnx"))


def test_auto_is_onnx_on_cpu_and_agrees_with_torch(model, tmp_home):
    onnx_clf = load_classifier(model, device="cpu")
    torch_clf = load_classifier(model, device="cpu", engine="torch")
    x = _batch()
    for tta in (False, True):
        np.testing.assert_allclose(onnx_clf.predict_proba(x, tta=tta),
                                   torch_clf.predict_proba(x, tta=tta), atol=1e-4)
    assert isinstance(onnx_clf.engine, OnnxEngine) and onnx_clf.engine_name == "onnx"
    assert isinstance(torch_clf.engine, TorchEngine) and torch_clf.engine_name == "torch"
    assert _graphs(model), "the graph is cached beside the model"
    sidecar = json.loads(next(model.glob("engine-*.json")).read_text())
    assert sidecar["max_abs_diff"] <= 1e-4


def _eight_passes(net: nn.Module, x: torch.Tensor, swap: list[int]) -> np.ndarray:
    """The reference: one forward pass per symmetry, chiral columns swapped back on mirrors."""
    x = to_float(x)
    total = 0
    with torch.inference_mode():
        for k in range(8):
            logits = net(dihedral(x, k))
            total = total + (logits[:, swap] if is_mirror(k) else logits)
    return (total / 8).numpy()


@pytest.mark.parametrize("kind", ["torch", "onnx"])
def test_tta_in_one_batch_equals_eight_passes(model, tmp_home, kind):
    clf = load_classifier(model, engine=kind)
    swap = list(reversed(range(len(clf.class_names))))  # a chirality swap that changes numbers
    x = _batch(5)
    calls = []
    forward = clf.engine.forward
    clf.engine.forward = lambda v: calls.append(len(v)) or forward(v)
    got = clf.engine.logits(x, tta=True, swap=swap)
    assert calls == [8 * len(x)], "the 8 views of a batch go through the engine in one call"
    net = load_classifier(model, engine="torch").net.eval()
    np.testing.assert_allclose(got, _eight_passes(net, x, swap), atol=1e-4)


def test_no_onnxruntime_falls_back_to_torch(model, tmp_home, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with caplog.at_level(logging.WARNING, logger="galaxymorph"):
        clf = load_classifier(model)
        assert clf.engine.name == "torch"
        clf.predict_proba(_batch())
    assert caplog.text.count("onnxruntime is not importable") == 1, "one warning, not one per batch"
    with pytest.raises(ConfigError, match="needs onnxruntime"):
        _ = load_classifier(model, engine="onnx").engine
    assert not _graphs(model)


class _Unexportable(nn.Module):
    """A network with an operator the ONNX exporter has no translation for."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.special.bessel_j0(x).mean(dim=(2, 3)))


def test_model_that_does_not_export_falls_back(tmp_path, tmp_home, caplog):
    net = _Unexportable()
    folder = tmp_path / "beside"
    folder.mkdir()
    with caplog.at_level(logging.WARNING, logger="galaxymorph"):
        eng = make_engine(net, 16, "auto", "cpu", folder)
    assert isinstance(eng, TorchEngine)
    assert "does not export to ONNX" in caplog.text
    with pytest.raises(ModelError, match="does not export to ONNX"):
        make_engine(net, 16, "onnx", "cpu", folder)
    assert list(folder.iterdir()) == [], "a failed export leaves nothing behind"


def test_cached_graph_is_reused_and_replaced_when_weights_change(model, tmp_home, monkeypatch):
    clf = load_classifier(model)
    first = clf.predict_proba(_batch())
    (graph,) = _graphs(model)

    # Same weights: the cached graph is used, nothing is exported again.
    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the weights did not change")

    monkeypatch.setattr(engine_mod, "_export", no_export)
    again = load_classifier(model)
    np.testing.assert_array_equal(again.predict_proba(_batch()), first)
    monkeypatch.undo()

    # New weights (a fine-tuned model saved over the old one): a new graph, the old one removed.
    from galaxymorph.models.artifact import save_artifact

    changed = load_classifier(model, engine="torch")
    with torch.no_grad():
        for p in changed.net.parameters():
            p.add_(0.05)
    save_artifact(model, changed.net, changed.card)
    fresh = load_classifier(model)
    p_new = fresh.predict_proba(_batch())
    (new_graph,) = _graphs(model)
    assert new_graph != graph
    assert not np.allclose(p_new, first, atol=1e-4)
    np.testing.assert_allclose(p_new, changed.predict_proba(_batch()), atol=1e-4)


def test_a_cached_graph_is_found_from_the_weights_file_without_the_network(model, tmp_home):
    first = load_classifier(model)
    expected = first.predict_proba(_batch())  # exports, notes the weights file in the sidecar
    assert first._net is not None
    clf = load_classifier(model)
    assert clf._net is None and clf._graph is not None, "found from the weights file"
    np.testing.assert_array_equal(clf.predict_proba(_batch()), expected)
    assert clf.engine_name == "onnx"
    # The network is still there when asked for (Grad-CAM, features, the torch engine).
    torch_p = clf.use_engine("torch").predict_proba(_batch())
    assert clf._net is not None
    np.testing.assert_allclose(torch_p, expected, atol=1e-4)
    # A graph changed since its check is not trusted: the network is built and checked again.
    (graph,) = model.glob("engine-*.onnx")
    graph.write_bytes(graph.read_bytes()[:-16])
    rebuilt = load_classifier(model)
    assert rebuilt._net is not None and rebuilt._graph is None
    np.testing.assert_allclose(rebuilt.predict_proba(_batch()), expected, atol=1e-4)


def test_the_weights_file_shortcut_keeps_load_time_errors(model, tmp_home):
    """A card edited after the graph was cached (another class count) no longer matches the
    noted weights: the network is built at load and the mismatch is the usual clear error."""
    load_classifier(model).predict_proba(_batch())
    card = json.loads((model / "model_card.json").read_text())
    card["class_names"] = [*card["class_names"], "Extra"]
    (model / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="weights do not fit the card"):
        load_classifier(model)


def test_predict_with_a_cached_graph_never_imports_torchvision_or_pandas(model, tmp_home, tmp_path):
    """torchvision's import (~1.5 s, most of it torch._dynamo) and pandas's (~0.3 s) are a
    large share of a short predict run: with the graph cached, neither preprocessing nor the
    engine needs them."""
    import subprocess

    from PIL import Image

    from makedata import galaxy_image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(galaxy_image(i, 48)).save(images / f"g{i}.png")
    load_classifier(model).predict_proba(_batch())  # the graph, as any earlier run leaves it
    code = ("import sys, galaxymorph; galaxymorph.predict(sys.argv[1], model=sys.argv[2], "
            "out=sys.argv[3], progress=False, workers=0); "
            "print('torchvision' in sys.modules, 'pandas' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(images), str(model),
                           str(tmp_path / "out.csv")], capture_output=True, text=True,
                          check=False)  # GALAXYMORPH_HOME: tmp_home's, inherited
    assert done.returncode == 0, done.stderr[-2000:]
    # Nor pandas (the dataset readers' import) for plain image files written to CSV.
    assert done.stdout.strip().splitlines()[-1] == "False False"
    assert len(pd.read_csv(tmp_path / "out.csv")) == 3


def test_read_only_model_folder_uses_the_shared_cache(model, tmp_home, monkeypatch):
    real_access = engine_mod.os.access
    monkeypatch.setattr(engine_mod.os, "access",
                        lambda p, mode: False if str(p) == str(model) else real_access(p, mode))
    clf = load_classifier(model)
    assert clf.engine.name == "onnx"
    assert not _graphs(model)
    shared = tmp_home / "cache" / "engines"
    assert _graphs(shared)
    # The shared cache holds other models' graphs: a new export there removes none of them.
    (shared / "engine-0123456789abcdef0123.onnx").write_bytes(b"another model's graph")
    _ = make_engine(_Linear(), 8, "onnx", "cpu", model).name
    assert "engine-0123456789abcdef0123.onnx" in _graphs(shared)
    # The built-in model is never written beside: its folder is the installed package.
    assert load_classifier("default").model_dir is None


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


def test_a_tampered_cache_entry_is_not_trusted(model, tmp_home):
    net = load_classifier(model, engine="torch").net
    eng = onnx_engine(net, 32, model)
    meta = eng.path.with_suffix(".json")
    meta.write_text('{"key": "something else", "max_abs_diff": 0.0}')
    again = onnx_engine(net, 32, model)  # re-exported, sidecar rewritten
    assert again.path == eng.path and "something else" not in meta.read_text()
    # A graph changed after its check (its sidecar left alone) is exported again too.
    eng.path.write_bytes(eng.path.read_bytes()[:-16])
    third = onnx_engine(net, 32, model)
    x = to_float(_batch())
    with torch.inference_mode():
        np.testing.assert_allclose(third.forward(x), net(x).numpy(), atol=1e-4)


def test_unknown_engine_is_a_clear_error(model):
    with pytest.raises(ConfigError, match="unknown inference engine 'tensorrt'"):
        load_classifier(model, engine="tensorrt")
    with pytest.raises(ConfigError, match="unknown engine 'tensorrt'"):
        galaxymorph.predict([], model=model, engine="tensorrt", progress=False)


def test_a_classifier_with_a_live_session_pickles(model, tmp_home):
    """Ray sends a loaded detector to its actors; each builds its own engine."""
    clf = load_classifier(model)
    p = clf.predict_proba(_batch())
    assert clf.engine_name == "onnx"
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(copy.predict_proba(_batch()), p, atol=1e-6)


@pytest.fixture
def framed_model(model):
    """The tiny model with automatic (Petrosian) framing and an abstention threshold."""
    path = model / "model_card.json"
    card = json.loads(path.read_text())
    card.update(framing="auto", frame_radii=1.25, abstention={"threshold": 0.5})
    path.write_text(json.dumps(card))
    return model


def _predict(framed_model, inference_catalog, engine, **kw):
    # device cpu: auto means ONNX Runtime there (on a GPU machine, auto would pick PyTorch)
    return galaxymorph.predict(f"catalog:{inference_catalog}", model=framed_model, engine=engine,
                               batch_size=8, progress=False, device="cpu", **kw)


def test_predict_is_the_same_through_every_engine(framed_model, inference_catalog, tmp_home, tmp_path):
    """Framing, calibration and abstention behave alike: same columns and labels, probabilities
    within 1e-4, with and without TTA; the summary names the engine that ran."""
    for tta in (False, True):
        ref = _predict(framed_model, inference_catalog, "torch", tta=tta)
        assert ref.attrs["summary"]["engine"] == "torch"
        assert (ref["error"] == "").all() and ref["uncertain"].any(), "the threshold is used"
        for kind in ("onnx", "auto"):
            df = _predict(framed_model, inference_catalog, kind, tta=tta)
            assert df.attrs["summary"]["engine"] == "onnx"
            assert list(df.columns) == list(ref.columns)
            assert (df["path"] == ref["path"]).all() and (df["label"] == ref["label"]).all()
            probs = [c for c in df.columns if c.startswith("prob")]
            np.testing.assert_allclose(df[probs].to_numpy(float), ref[probs].to_numpy(float), atol=1e-4)
            clear = (ref["probability"] - 0.5).abs() > 1e-4
            assert (df["uncertain"][clear] == ref["uncertain"][clear]).all()
    with pytest.warns(FutureWarning, match="'local' is deprecated"):
        old = _predict(framed_model, inference_catalog, "local")
    assert old.attrs["summary"]["engine"] == "onnx"


def test_detector_runs_on_the_engine_asked_for(model, inference_catalog, tmp_home, tmp_path):
    from galaxymorph.models.artifact import ModelCard, save_artifact
    from galaxymorph.models.network import build_network

    det_dir = tmp_path / "detector"
    card = ModelCard(architecture="cnn2", class_names=["real", "synthetic"], image_size=24, crop=1.0)
    save_artifact(det_dir, build_network("cnn2", 2), card)
    out = {}
    for kind in ("torch", "onnx"):
        det = galaxymorph.load_detector(det_dir)
        df = galaxymorph.predict(f"catalog:{inference_catalog}", model=model, engine=kind,
                                 detector=det, batch_size=8, progress=False, device="cpu")
        assert det.classifier.engine_name == kind
        out[kind] = df["synthetic_score"].to_numpy(float)
    np.testing.assert_allclose(out["onnx"], out["torch"], atol=1e-4)
    assert _graphs(det_dir), "the detector's graph is cached beside it"


def test_evaluate_is_the_same_through_every_engine(framed_model, inference_catalog, tmp_home, tmp_path):
    results = {}
    for kind in ("torch", "onnx"):
        out = tmp_path / f"eval_{kind}"
        metrics = galaxymorph.evaluate(model=framed_model, data=f"catalog:{inference_catalog}",
                                       split="all", tta=True, out=out, engine=kind, device="cpu")
        results[kind] = (metrics, pd.read_csv(out / "predictions.csv"))
    (m_t, p_t), (m_o, p_o) = results["torch"], results["onnx"]
    assert list(p_o.columns) == list(p_t.columns) and m_o["n"] == m_t["n"] > 0
    probs = [c for c in p_t.columns if c.startswith("prob")]
    np.testing.assert_allclose(p_o[probs].to_numpy(float), p_t[probs].to_numpy(float), atol=1e-4)
    assert (p_o["label"] == p_t["label"]).all()
    assert m_o["accuracy"] == m_t["accuracy"]


def test_a_forked_child_never_frees_an_inherited_session(model, tmp_home):
    """predict forks its decoders after the engine exists. A session's destructor joins its
    intra-op threads, which fork does not copy (their stacks are reused by the child's own
    threads): a decoder whose garbage collector reached the parent's session hung for ever in
    the test suite. The child must hold every inherited session instead."""
    import gc
    import os
    import time

    clf = load_classifier(model)
    clf.engine.threads = 2  # a session with an intra-op thread besides the caller's
    clf.predict_proba(_batch())
    session = id(next(iter(clf.engine._sessions.values())))
    pid = os.fork()
    if pid == 0:  # the child: drop the only reference and collect, then leave as workers do
        code = 1
        try:
            del clf
            gc.collect()
            # Sessions of earlier tests still alive in the parent are inherited too.
            code = 0 if session in [id(s) for s in engine_mod._INHERITED] else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0, "the child did not keep the session"
            assert engine_mod._INHERITED == [], "the parent keeps nothing"
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung freeing an inherited ONNX Runtime session")


def test_an_unreadable_weights_file_is_the_usual_clear_error(model, tmp_home, monkeypatch):
    """Hashing the weights file for the graph lookup must not turn an unreadable file into a
    raw OSError: the full load reports it, naming the file."""
    load_classifier(model).predict_proba(_batch())
    real_sha = engine_mod._file_sha256

    def refuse(path):
        if path.name == "model.safetensors":
            raise PermissionError(13, "Permission denied", str(path))
        return real_sha(path)

    monkeypatch.setattr(engine_mod, "_file_sha256", refuse)
    from safetensors import torch as st_torch

    def unreadable(*args, **kwargs):
        raise OSError("Permission denied")

    monkeypatch.setattr(st_torch, "load_file", unreadable)
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        load_classifier(model)
