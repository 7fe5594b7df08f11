"""The galaxymorph web page (run by ``galaxymorph app``; ``streamlit run`` this file also works).

Settings arrive as environment variables (see :class:`galaxymorph.app.core.AppSettings`). Every
per-image problem is shown as a one-line ``st.error``, never as a traceback on the page.
"""

from __future__ import annotations

import logging

import numpy as np
import streamlit as st

from galaxymorph.app import core
from galaxymorph.errors import GalaxymorphError

log = logging.getLogger("galaxymorph.app")
THUMB = 224


@st.cache_resource(show_spinner="Loading the model…")
def get_classifier(ref: str, device: str, convention: str | None = None,
                   taxonomy: str | None = None):
    """Loaded once per server process and shared by every session (one per labelling
    convention and taxonomy asked for: each keeps its own engine)."""
    from galaxymorph.models.loading import load_classifier

    if convention is not None or taxonomy is not None:
        return get_classifier(ref, device).with_taxonomy(taxonomy).with_convention(convention)
    clf = load_classifier(ref, device=device)
    # Every upload gets a Grad-CAM map, which runs the PyTorch network: build it here, behind
    # the loading spinner, not on the first upload (a model whose ONNX graph is cached is
    # loaded without it).
    clf.net  # noqa: B018
    return clf


#: The convention choice that keeps the model's own answers.
OWN_CONVENTION = "the model's own (clean labels)"


@st.cache_resource(show_spinner="Loading the detector…")
def get_detector(ref: str, device: str):
    """The real-vs-synthetic detector, loaded once like the classifier."""
    from galaxymorph.detection.detector import Detector

    return Detector.load(ref, device=device)


@st.cache_resource(show_spinner="Loading the similarity index…")
def get_index(folder: str):
    """The similarity index, checked and loaded once per server process."""
    from galaxymorph.search.index import SimilarityIndex

    return SimilarityIndex.open(folder)


@st.cache_data(show_spinner="Rendering example galaxies…")
def get_examples(folder: str | None) -> list[tuple[str, np.ndarray]]:
    return core.folder_examples(folder) if folder else core.synthetic_examples()


def thumbnail(image: np.ndarray, size: int = THUMB) -> np.ndarray:
    """Upscale small network inputs (nearest, so pixels stay honest) and shrink big uploads."""
    from PIL import Image

    h, w = image.shape[:2]
    scale = size / max(h, w)
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    return np.asarray(Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                    resample))


def sidebar(settings: core.AppSettings):
    """Model choice, options and model card; returns (classifier or None, tta, gradcam, detector)."""
    st.sidebar.header("Model")
    choices = core.model_choices(settings)
    ref = st.sidebar.selectbox("Classifier", choices, index=0, key="model",
                               help="The built-in default model, the one given with --model, and "
                                    "run folders found in --models-dir.")
    try:
        clf = get_classifier(ref, settings.device)
    except GalaxymorphError as exc:
        st.error(core.plain(f"Cannot load the model '{ref}': {exc}"))
        if ref == "default":
            st.info("The built-in default model is not installed in this copy of galaxymorph. Train one "
                    "(`galaxymorph train --data ... --out runs/x`) and start the app with "
                    "`galaxymorph app --model runs/x`.")
        return None, False, False, None
    taxonomy = None
    if clf.is_tree:
        taxonomy = st.sidebar.selectbox(
            "Classes (taxonomy)", clf.taxonomies(), index=0, key="taxonomy",
            help="The model answers Galaxy Zoo's questions; each taxonomy is a set of cuts on "
                 "its answers (`predict --taxonomy`).")
        clf = get_classifier(ref, settings.device, None, taxonomy)
        merges = clf.taxonomy.merges
        if merges:
            st.sidebar.caption(core.plain("Merged (the questions cannot tell them apart): " + "; ".join(
                f"{k} = {' + '.join(v)}" for k, v in merges.items())))
    conventions = list(clf.conventions())
    if conventions:
        choice = st.sidebar.selectbox(
            "Answer in the labelling convention of", [OWN_CONVENTION, *conventions], index=0,
            key="convention",
            help="A noisy training source's convention: the probabilities its labellers would "
                 "have given (a map re-fitted on that source's validation images, or p @ T with "
                 "the class-transition matrix the model learned for it; `predict --convention`).")
        if choice != OWN_CONVENTION:
            clf = get_classifier(ref, settings.device, choice, taxonomy)
            st.sidebar.caption(core.plain(f"Probabilities in the convention of {choice}."))
    tta = st.sidebar.checkbox("Test-time augmentation (8 rotations/flips)", value=clf.card.tta_default,
                              key="tta")
    with_cam = st.sidebar.checkbox("Grad-CAM heat map", value=True, key="gradcam")
    st.sidebar.subheader("Model card")
    # Card values come from a file: shown as plain text, never as markdown.
    summary = core.card_summary(clf.card, core.split_sources(ref))
    lines = [f"- **{k}:** {core.plain(v)}" for k, v in summary.items()]
    st.sidebar.markdown("\n".join(lines))
    if clf.card.notes:
        st.sidebar.caption(core.plain(" · ".join(clf.card.notes)))
    detector = None
    if settings.detector:
        try:
            detector = get_detector(settings.detector, settings.device)
            st.sidebar.caption(f"Real-vs-synthetic detector: {settings.detector}")
        except GalaxymorphError as exc:
            st.sidebar.warning(core.plain(f"Detector not used: {exc}"))
            detector = None
    return clf, tta, with_cam, detector


def show_analysis(a: core.Analysis, clf=None, settings: core.AppSettings | None = None) -> None:
    with st.container(border=True):
        st.markdown(f"##### {core.plain(a.name)}")  # a file name is text, never markdown
        left, middle, right = st.columns([1, 1, 2])
        left.image(thumbnail(a.image), caption="uploaded image", width=THUMB)
        if a.cam is not None:
            middle.image(thumbnail(a.cam.overlay), width=THUMB,
                         caption=f"Grad-CAM for {a.class_names[a.cam.target]} (network input)")
        elif a.cam_error:
            middle.caption(a.cam_error)
        if a.uncertain:  # abstain rather than state a class the model is not sure of
            right.markdown(f"Predicted class: **uncertain** · most likely {core.plain(a.label_name)} at "
                           f"{a.probability:.1%}, below this model's {a.threshold:.0%} confidence "
                           "threshold (calibrated)")
        else:
            right.markdown(f"Predicted class: **{core.plain(a.label_name)}** · probability **{a.probability:.1%}** "
                           "(calibrated)")
        table = a.table()
        right.bar_chart(table, x="class", y="probability", horizontal=True, sort="-probability",
                        height=70 + 30 * len(table), x_label="", y_label="probability")
        shown = table.assign(probability=table["probability"].map(lambda p: f"{p:.1%}"))
        right.table(shown.set_index("class"))
        if a.tree is not None:
            show_tree(right, a.tree)
        explanation = a.detector_explanation()
        if explanation:  # the detector's verdict, and which part flagged the image
            right.markdown(f"Real-vs-synthetic detector: **{a.verdict}**")
            right.caption("  \n".join(core.plain(line) for line in explanation))
        if clf is not None and settings is not None:
            similar_panel(a, clf, settings)


def similar_panel(a: core.Analysis, clf, settings: core.AppSettings) -> None:
    """The uploaded galaxy's nearest neighbours in the index given with ``--index``."""
    st.markdown("###### Similar galaxies")
    if not settings.index:
        st.info(core.NO_INDEX_HELP)
        return
    try:
        neighbours = core.similar_galaxies(get_index(settings.index), clf, a.image)
    except GalaxymorphError as exc:
        st.warning(core.plain(f"Similar galaxies unavailable: {exc}"))
        return
    st.caption(core.plain(f"The {len(neighbours)} nearest of the index {settings.index} in this "
                          "model's representation (distance: 1 - cosine similarity)."))
    per_row = 4
    for start in range(0, len(neighbours), per_row):
        cols = st.columns(per_row)
        for col, n in zip(cols, neighbours[start:start + per_row], strict=False):
            caption = f"#{n.rank} {n.label} · d = {n.distance:.3f} · {n.name}"
            if n.image is not None:
                col.image(thumbnail(n.image, 160), caption=caption, width=160)
            else:
                col.caption(f"{caption} (image unreadable: {n.error})")


def show_tree(box, tree: list[core.QuestionAnswer]) -> None:
    """The decision tree's answers: each question, how many volunteers would reach it, and the
    predicted vote fractions of its answers (the class above is a cut on these)."""
    import pandas as pd

    box.markdown("**Galaxy Zoo's questions** (predicted vote fractions)")
    rows = [{"question": q.question, "reached by": f"{q.reach:.0%}",
             "answer": f"{q.top[0]} ({q.top[1]:.0%})",
             "all answers": ", ".join(f"{a} {p:.0%}" for a, p in q.answers)} for q in tree]
    box.table(pd.DataFrame(rows).set_index("question"))


def show_failure(name: str, exc: Exception) -> None:
    if isinstance(exc, GalaxymorphError):
        text = str(exc)
        st.error(core.plain(text if name in text else f"{name}: {text}"))
    else:  # a bug: one line here, the traceback in the server log
        log.exception("processing %s failed", name)
        st.error(core.plain(f"{name}: could not be processed ({type(exc).__name__}: {exc})"))


def upload_tab(clf, settings: core.AppSettings, tta: bool, with_cam: bool, detector) -> None:
    uploads = st.file_uploader(
        f"Galaxy images (JPEG, PNG, TIFF or FITS; up to {settings.max_upload_mb} MB each)",
        type=core.UPLOAD_TYPES, accept_multiple_files=True, key="uploads")
    if not uploads:
        st.caption("Upload one or more cutouts centred on a galaxy, or try the examples tab.")
        return
    for up in uploads:
        try:
            a = core.analyse_bytes(clf, up.getvalue(), up.name, settings, tta=tta,
                                   with_cam=with_cam, detector=detector)
        except Exception as exc:
            show_failure(up.name, exc)
            continue
        show_analysis(a, clf, settings)


def examples_tab(clf, settings: core.AppSettings, tta: bool, with_cam: bool, detector) -> None:
    if settings.examples:
        st.caption(f"Images from {settings.examples}.")
    else:
        st.caption("Synthetic galaxies rendered on the fly (this app ships no real images; start it "
                   "with `--examples DIR` to show your own). A model trained on survey data may "
                   "well misjudge these renders.")
    try:
        examples = get_examples(settings.examples)
    except GalaxymorphError as exc:
        st.error(core.plain(exc))
        return
    per_row = 4
    for start in range(0, len(examples), per_row):
        cols = st.columns(per_row)
        for i, (col, (caption, img)) in enumerate(zip(cols, examples[start:start + per_row], strict=False)):
            n = start + i
            col.image(thumbnail(img, 160), caption=caption, width=160)
            col.button("Classify", key=f"example_{n}", on_click=_choose_example, args=(n,))
    chosen = st.session_state.get("example")
    if chosen is not None and chosen < len(examples):
        caption, img = examples[chosen]
        try:
            show_analysis(core.analyse(clf, img, caption, tta=tta, with_cam=with_cam, detector=detector),
                          clf, settings)
        except Exception as exc:
            show_failure(caption, exc)


def _choose_example(n: int) -> None:
    st.session_state["example"] = n


def main() -> None:
    st.set_page_config(page_title="galaxymorph · galaxy morphology", page_icon="🌌", layout="wide")
    settings = core.AppSettings.from_env()
    st.title("galaxymorph: galaxy morphology")
    clf, tta, with_cam, detector = sidebar(settings)
    if clf is None:
        return
    st.caption(f"Classes: {core.plain(', '.join(clf.class_names))}. Probabilities are calibrated on the "
               "model's validation images.")
    upload, examples = st.tabs(["Upload", "Examples"])
    with upload:
        upload_tab(clf, settings, tta, with_cam, detector)
    with examples:
        examples_tab(clf, settings, tta, with_cam, detector)


main()
