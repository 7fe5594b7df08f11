"""Load a trained classifier from ``default``, a run folder, a model folder or a checkpoint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galaxymorph.data.questions import Schema, answer_probabilities
from galaxymorph.data.taxonomies import Taxonomy
from galaxymorph.data.transforms import DEFAULT_FRAME_RADII, Preprocessing, prepare, swap_table
from galaxymorph.errors import ModelError
from galaxymorph.models.artifact import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelCard,
    load_network,
    load_weights,
    read_card,
)
from galaxymorph.models.calibration import apply_convention_map, softmax
from galaxymorph.models.engine import (
    Engine,
    OnnxEngine,
    check_engine,
    graph_for,
    make_engine,
    unit_rows,
    wants_onnx,
    weights_key,
    weights_record,
)
from galaxymorph.runtime import resolve_device


def default_model_dir() -> Path:
    return Path(str(resources.files("galaxymorph") / "default_model"))


@dataclass
class Classifier:
    """A ready-to-use model: network, preprocessing, classes and calibration.

    Forward passes go through :attr:`engine` (built on first use, see
    :mod:`~galaxymorph.models.engine`); :attr:`net` stays the PyTorch module, for Grad-CAM and
    features. A model loaded from a folder whose ONNX graph is already cached is built without
    its network (``_graph``): ``net`` then builds it from the folder on first use.
    """

    _net: torch.nn.Module | None
    card: ModelCard
    source: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    engine_kind: str = "auto"
    #: The model's own folder, where an exported ONNX graph is cached (None: the shared cache).
    model_dir: Path | None = None
    #: A labelling convention's class-transition matrix (``with_convention``): probabilities
    #: come out as ``p @ T``, the classes that source's labellers would have given.
    transition: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: The same convention as an affine map of log-probabilities, re-fitted on that source's
    #: validation images (``calibrate --conventions``); used in place of ``transition``.
    convention_map: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False,
                                                                 compare=False)
    #: A decision-tree model's active taxonomy (``with_taxonomy``; None: the card's default).
    taxonomy_name: str | None = None
    #: Builds the network when it was not loaded (the weights file and card it comes from).
    _net_loader: Callable[[], torch.nn.Module] | None = field(default=None, repr=False, compare=False)
    #: The cached ONNX graph of these weights, found from the weights file (see ``_load``).
    _graph: Path | None = field(default=None, repr=False, compare=False)
    #: What the weights file is (:func:`weights_record`), for the graph cache.
    _built_from: dict | None = field(default=None, repr=False, compare=False)
    _engine: Engine | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def net(self) -> torch.nn.Module:
        if self._net is None:
            if self._net_loader is None:
                raise ModelError("this classifier has no network", self.source)
            self._net = self._net_loader().to(self.device)
        return self._net

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            if self._graph is not None and wants_onnx(self.engine_kind, self.device):
                self._engine = OnnxEngine(self._graph)
            else:
                self._engine = make_engine(self.net, self.card.image_size, self.engine_kind,
                                           self.device, self.model_dir, self.temperature,
                                           built_from=self._built_from)
        return self._engine

    @property
    def engine_name(self) -> str:
        """The engine that ran (``torch`` after a fallback), or, before the first batch, the
        one asked for."""
        return self._engine.name if self._engine is not None else self.engine_kind

    def use_engine(self, kind: str) -> Classifier:
        """Run through engine ``kind`` from the next batch on."""
        self.engine_kind = check_engine(kind)
        self._engine = None
        return self

    def __getstate__(self) -> dict:
        # Ray pickles a loaded detector to its actors: an ONNX Runtime session does not pickle,
        # and each process builds its own engine (from the cached graph) anyway.
        return {**self.__dict__, "_engine": None}

    def __post_init__(self) -> None:
        self.abstain_threshold  # noqa: B018  (a bad card fails on load, not on the first image)

    @property
    def class_names(self) -> list[str]:
        """The classes its probabilities are over: a tree model's active taxonomy's."""
        if self.is_tree:
            return list(self.taxonomy.classes)
        return self.card.class_names

    @property
    def is_tree(self) -> bool:
        """Does the network answer Galaxy Zoo's questions (classes come from a taxonomy)?"""
        return bool(self.card.questions)

    @cached_property
    def schema(self) -> Schema | None:
        return self.card.schema

    @property
    def taxonomy_entry(self) -> dict[str, Any]:
        return self.card.taxonomies[self.taxonomy_name or self.card.default_taxonomy]

    @property
    def taxonomy(self) -> Taxonomy:
        return Taxonomy.from_dict(self.taxonomy_entry)

    def taxonomies(self) -> list[str]:
        """The taxonomies a tree model answers in (empty for a classifier)."""
        return list(self.card.taxonomies)

    def with_taxonomy(self, name: str | None) -> Classifier:
        """This tree model answering in taxonomy ``name`` (``gz1-4``, ``gz2-8``, ``galaxy10``);
        itself when ``name`` is None."""
        if name is None:
            return self
        if not self.is_tree:
            raise ModelError(f"taxonomy '{name}' needs a decision-tree model; this one is a "
                             f"classifier of {self.card.class_names}", self.source)
        if name not in self.card.taxonomies:
            raise ModelError(f"no taxonomy '{name}' in this model (it has: "
                             f"{', '.join(self.card.taxonomies)})", self.source)
        return replace(self, taxonomy_name=name, convention_map=None, transition=None)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.card.preprocessing

    def with_crop(self, crop: float | None) -> Classifier:
        """This model with a fixed centre crop instead of its own framing (``--crop``);
        itself when ``crop`` is None."""
        if crop is None:
            return self
        self.preprocessing.fixed(crop)  # validates the fraction
        return replace(self, card=replace(self.card, framing="fixed", crop=float(crop)))

    def conventions(self) -> dict[str, dict]:
        """The labelling conventions the model learned (``train --noisy-labels``): source spec ->
        ``{"classes", "matrix"}`` as the card records them; a tree model's are per taxonomy,
        source -> adapter fitted on that source's validation images."""
        if self.is_tree:
            return dict(self.taxonomy_entry.get("conventions") or {})
        learned = (self.card.training or {}).get("label_transitions") or {}
        return learned if isinstance(learned, dict) else {}

    def with_convention(self, name: str | None) -> Classifier:
        """This model answering in the labelling convention of one of its noisy training sources
        (``name``: the source spec, or a part of its path such as ``gz1``): probabilities are
        ``p @ T`` with that source's learned class-transition matrix T, or the affine map of
        log-probabilities that ``calibrate`` re-fitted on the source's validation images when
        the card has one. Itself when ``name`` is None."""
        if name is None:
            return self
        known = self.conventions()
        spec = name if name in known else next(
            (k for k in known if name in Path(k.removeprefix("catalog:")).parts), None)
        if spec is None:
            listed = ", ".join(known) or "none: it was not trained with --noisy-labels"
            raise ModelError(f"no labelling convention '{name}' in this model (it has: {listed})",
                             self.source)
        entry = known[spec]
        if self.is_tree:  # an adapter, checked with the card
            return replace(self, convention_map=_adapter(entry))
        t = _numbers(entry.get("matrix") if isinstance(entry, dict) else None)
        k = len(self.class_names)
        if (not isinstance(entry, dict) or list(entry.get("classes") or []) != list(self.class_names)
                or t.shape != (k, k) or not np.isfinite(t).all() or (t < 0).any()
                or (t.sum(axis=1) <= 0).any()):
            raise ModelError(f"the model card's transition matrix for '{spec}' is not a "
                             f"{k}x{k} matrix over its classes", self.source)
        fitted = entry.get("logit_map")
        if fitted is None:
            return replace(self, transition=t / t.sum(axis=1, keepdims=True))
        w = _numbers(fitted.get("weight") if isinstance(fitted, dict) else None)
        b = _numbers(fitted.get("bias") if isinstance(fitted, dict) else None)
        if w.shape != (k, k) or b.shape != (k,) or not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ModelError(f"the model card's convention map for '{spec}' is not a {k}x{k} "
                             f"weight and {k} biases", self.source)
        return replace(self, convention_map=(w, b))

    @property
    def temperature(self) -> float:
        return float(self.card.temperature)

    @property
    def abstain_threshold(self) -> float | None:
        """Top probability below which the answer is "uncertain" (None: the card has no rule)."""
        rule = (self.taxonomy_entry.get("abstention") if self.is_tree else self.card.abstention) or {}
        value = rule.get("threshold") if isinstance(rule, dict) else rule
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ModelError(f"model card abstention threshold must be a number in [0, 1], got {value!r}",
                             self.source)
        return float(value)

    @property
    def swap(self) -> list[int]:
        return swap_table(len(self.card.output_names), [tuple(p) for p in self.card.chiral_pairs])

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        return prepare(image, self.preprocessing)

    def logits(self, batch: torch.Tensor, tta: bool | None = None) -> np.ndarray:
        """Logits of a prepared uint8 batch (N, 3, S, S)."""
        tta = self.card.tta_default if tta is None else tta
        return self.engine.logits(batch, tta, self.swap)

    def predict_proba(self, images: list[np.ndarray] | torch.Tensor, tta: bool | None = None) -> np.ndarray:
        """Calibrated class probabilities for decoded images (H, W, 3) or a prepared batch."""
        return self.predict_outputs(images, tta)[0]

    def predict_outputs(self, images: list[np.ndarray] | torch.Tensor,
                        tta: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities and, for a tree model, its conditional answer probabilities
        (``(N, A)`` in :attr:`Schema.answer_names` order; None for a classifier), from one
        forward pass."""
        logits = self.logits(self._batch(images), tta)
        answers = self.answers(logits) if self.is_tree else None
        return self.probabilities(logits, answers), answers

    def answers(self, logits: np.ndarray) -> np.ndarray:
        """A tree model's conditional answer probabilities: a softmax per question of its
        logits over the card's temperature."""
        return answer_probabilities(logits, self.schema,
                                    self.card.question_temperatures or self.temperature)

    def probabilities(self, logits: np.ndarray, answers: np.ndarray | None = None) -> np.ndarray:
        """Calibrated class probabilities from the engine's logits: the softmax over the
        temperature, or a tree model's taxonomy scores through its adapter (the convention's,
        when one was chosen); in the convention chosen with ``with_convention``."""
        if not self.is_tree:
            return self.in_convention(softmax(logits, self.temperature))
        from galaxymorph.models.taxonomy_fit import taxonomy_probabilities

        answers = self.answers(logits) if answers is None else answers
        chosen = "own" if self.convention_map is None else dict(
            zip(("weight", "bias"), self.convention_map, strict=True))
        return taxonomy_probabilities(self.taxonomy_entry, self.schema, answers, chosen)

    def settings(self) -> dict[str, Any]:
        """What ``with_crop``, ``with_taxonomy`` and ``with_convention`` changed, as plain data,
        for another process that loads the same model (a Ray actor): :meth:`with_settings`."""
        return {"card": self.card.to_dict(), "taxonomy_name": self.taxonomy_name,
                "convention_map": None if self.convention_map is None
                else [a.tolist() for a in self.convention_map],
                "transition": None if self.transition is None else self.transition.tolist()}

    def with_settings(self, settings: dict[str, Any]) -> Classifier:
        cmap, t = settings.get("convention_map"), settings.get("transition")
        return replace(self, card=ModelCard.from_dict(settings["card"], self.source),
                       taxonomy_name=settings.get("taxonomy_name"),
                       convention_map=None if cmap is None else tuple(np.asarray(a) for a in cmap),
                       transition=None if t is None else np.asarray(t))

    def embed(self, images: list[np.ndarray] | torch.Tensor,
              tta: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The representation of decoded images or a prepared batch: the network's features
        before its head(s), L2-normalised (float32 ``(N, D)``; cosine similarity is then a dot
        product), and the calibrated probabilities of the same pass."""
        tta = self.card.tta_default if tta is None else tta
        logits, feats = self.engine.outputs(self._batch(images), tta, self.swap)
        return unit_rows(feats), self.probabilities(logits)

    def _batch(self, images: list[np.ndarray] | torch.Tensor) -> torch.Tensor:
        return images if isinstance(images, torch.Tensor) else torch.stack([self.prepare(i) for i in images])

    def representation_record(self, tta: bool | None = None) -> dict[str, Any]:
        """What an embedding of this model depends on: the weights file's SHA-256, the network
        and the preprocessing (:meth:`embed` with ``tta``). Embeddings compare only under one
        record: an index keeps its hash (:meth:`representation_hash`) and refuses others."""
        pre = self.preprocessing
        return {"weights_sha256": self._weights_sha256(), "architecture": self.card.architecture,
                "model_kwargs": self.card.model_kwargs, "layer": "head input",
                "preprocessing": {"image_size": pre.image_size, "crop": pre.crop,
                                  "framing": pre.framing, "frame_radii": pre.frame_radii},
                "tta": bool(self.card.tta_default if tta is None else tta)}

    def representation_hash(self, tta: bool | None = None) -> str:
        text = json.dumps(self.representation_record(tta), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def _weights_sha256(self) -> str:
        """The weights file's SHA-256 (a checkpoint's, for a .ckpt model), else the weights'."""
        if self._built_from is not None:
            return str(self._built_from["weights_sha256"])
        source = default_model_dir() if self.source == "default" else Path(self.source)
        path = source / WEIGHTS_FILE if source.is_dir() else source
        if path.is_file():
            card = self.card
            return weights_record(path, card.architecture, len(card.output_names), card.model_kwargs,
                                  card.image_size)["weights_sha256"]
        return weights_key(self.net, self.card.image_size, 0)

    def in_convention(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities in the labelling convention chosen with ``with_convention``
        (unchanged without one)."""
        if self.convention_map is not None:
            return apply_convention_map(probs, *self.convention_map)
        return probs if self.transition is None else probs @ self.transition

    def to(self, device: str | torch.device) -> Classifier:
        self.device = resolve_device(device) if isinstance(device, str) else device
        if self._net is not None:  # an unbuilt network is built on the device when needed
            self._net.to(self.device)
        self._engine = None
        return self


def _adapter(entry: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """A card's adapter ``{"weight", "bias"}`` (checked when the card was read) as arrays."""
    if not entry:
        return None
    return np.asarray(entry["weight"], dtype=np.float64), np.asarray(entry["bias"], dtype=np.float64)


def _numbers(value: Any) -> np.ndarray:
    """A card field as a float array; a scalar NaN for anything that is not a rectangular array
    of numbers (ragged lists, strings), so the shape check that follows refuses it by name."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return np.asarray(np.nan)


def load_classifier(ref: str | Path = "default", device: str = "cpu", engine: str = "auto") -> Classifier:
    """``ref``: ``"default"`` (the built-in model), a run/model folder, or a ``.ckpt`` file.

    ``engine``: ``auto`` (ONNX Runtime on CPU, PyTorch on a GPU), ``torch`` or ``onnx``.
    """
    check_engine(engine)
    clf = _load(ref, device, engine)
    clf.engine_kind = engine
    return clf


def _cache_dir_for(source: str) -> Path | None:
    """Beside the model, so a shared file system exports once for a whole cluster; never in the
    built-in model's folder, which is part of the installed package (None: the shared cache)."""
    if source == "default":
        return None
    folder = Path(source)
    return folder if folder.is_dir() else folder.parent


def _from_folder(folder: Path, source: str, device: str, engine: str) -> Classifier:
    """A model folder (card + safetensors). When the engine will be ONNX Runtime and the graph
    of exactly this weights file and card is cached, the network is not built (nor torchvision
    imported): a graph is only cached after its network was built from these weights, loaded
    against this card and checked against PyTorch."""
    card = read_card(folder)
    model_dir = _cache_dir_for(source)
    record = graph = None
    if wants_onnx(engine, device) and (folder / WEIGHTS_FILE).is_file():
        try:
            record = weights_record(folder / WEIGHTS_FILE, card.architecture,
                                    len(card.output_names), card.model_kwargs, card.image_size)
            graph = graph_for(record, model_dir)
        except OSError:  # unreadable: the full load below says so, naming the file
            record = graph = None
    loader = partial(load_network, folder, card)
    net = None if graph is not None else loader()
    clf = Classifier(net, card, source, _net_loader=loader, _graph=graph, _built_from=record)
    clf.model_dir = model_dir
    return clf.to(device)


def _load(ref: str | Path, device: str, engine: str = "auto") -> Classifier:
    if str(ref) == "default":
        folder = default_model_dir()
        if not (folder / CARD_FILE).exists():
            raise ModelError("the built-in default model is not installed with this copy of galaxymorph",
                             folder, hint="train one with `galaxymorph train` and pass --model RUN_DIR")
        return _from_folder(folder, "default", device, engine)
    path = Path(ref)
    if not path.exists():
        raise ModelError("no such model folder or checkpoint (use 'default', a run folder or a "
                         ".ckpt file)", path)
    if path.is_dir():
        if (path / CARD_FILE).exists():
            return _from_folder(path, str(path), device, engine)
        ckpt = path / "checkpoints" / "best.ckpt"
        if ckpt.exists():
            return _from_checkpoint(ckpt, device)
        raise ModelError(f"neither {CARD_FILE} nor checkpoints/best.ckpt here", path)
    if path.suffix == ".ckpt":
        return _from_checkpoint(path, device)
    if path.name == WEIGHTS_FILE:
        return _load(path.parent, device, engine)
    raise ModelError("unknown model file type (expected a run folder, model_card.json folder or .ckpt)", path)


def _from_checkpoint(path: Path, device: str) -> Classifier:
    """A Lightning checkpoint written by ``galaxymorph train`` (loaded with weights_only=True)."""
    import pickle

    from galaxymorph.models.network import build_network

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as exc:
        raise ModelError(f"not a readable galaxymorph checkpoint ({str(exc).splitlines()[0]})", path) from exc
    info = ckpt.get("galaxymorph") if isinstance(ckpt, dict) else None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise ModelError("checkpoint was not written by galaxymorph train (no run information)", path)
    if not isinstance(ckpt.get("state_dict"), dict):
        raise ModelError("checkpoint holds no weights (state_dict)", path)
    cfg = info["config"]
    # The same checks as a model card read from disk: a checkpoint is untrusted input too.
    card = ModelCard.from_dict({"architecture": cfg.get("model"), "class_names": info.get("class_names"),
                                "image_size": cfg.get("image_size"), "crop": cfg.get("crop"),
                                "framing": cfg.get("framing", "fixed"),
                                "frame_radii": cfg.get("frame_radii", DEFAULT_FRAME_RADII),
                                "model_kwargs": info.get("model_kwargs", {}), "name": path.stem},
                               str(path))
    net = build_network(card.architecture, len(card.class_names), **card.model_kwargs)
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items()
             if isinstance(k, str) and k.startswith("net.")}
    load_weights(net, state, card, path)
    clf = Classifier(net.eval(), card, str(path))
    clf.model_dir = _cache_dir_for(str(path))
    return clf.to(device)
