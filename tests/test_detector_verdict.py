"""The detector's one verdict: a monotone, calibrated combination of its three parts, with its
threshold set on real images only, that flags a fake only the fake-free part catches."""

from __future__ import annotations

import numpy as np
import pytest

from galaxymorph.detection.scoring import threshold_at_false_alarm
from galaxymorph.detection.verdict import PART_VALUES, PARTS, Verdict, fit_monotone_logistic
from galaxymorph.detection.verdict_fit import fit_verdict
from galaxymorph.errors import DataError


def _sample(rng: np.random.Generator, n: int, net: float = 0.0, head: float = 0.0,
            atyp: float = 0.0) -> dict[str, np.ndarray]:
    """Parts of ``n`` images: log-odds (network, head) and log-distance (atypicality) drawn
    around the given shifts from where real images sit (0)."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    return {"p_network": sig(rng.normal(-4 + net, 1, n)),
            "p_statistics": sig(rng.normal(-2 + head, 1, n)),
            "atypicality_distance": np.exp(rng.normal(1 + atyp, 0.3, n))}


def _fitted(rng: np.random.Generator, held_out: bool = True) -> tuple[Verdict, dict]:
    """A verdict fitted as calibration fits one: real images; seen fakes the network knows
    well; held-out fakes (two families) that only the fake-free parts tell apart."""
    real = _sample(rng, 2000)
    seen = _sample(rng, 200, net=9.0, head=2.0, atyp=0.3)
    held = _sample(rng, 400, head=1.0, atyp=1.5) if held_out else None
    families = np.repeat(["a", "b"], 200) if held_out else None
    return fit_verdict(PARTS, real, seen, held, families, 0.01)[0], real


def test_the_combined_score_is_monotone_in_each_part():
    rng = np.random.default_rng(0)
    verdict, _ = _fitted(rng)
    assert (verdict.weights >= 0).all() and (verdict.weights > 0).any()
    base = _sample(rng, 300, net=rng.normal(0, 3), atyp=1.0)
    before = verdict.score(base)
    for part in PARTS:
        for factor in (1.05, 2.0, 50.0):
            more = dict(base)
            # "More synthetic": a higher probability, a larger distance to the real images.
            key = PART_VALUES[part]
            more[key] = (base[key] * factor if part == "atypicality"
                         else 1 - (1 - base[key]) / factor)
            assert (verdict.score(more) >= before - 1e-12).all(), part
            assert (verdict.flagged(more) >= verdict.flagged(base)).all(), part
    # The fitter keeps every weight non-negative even when the data pull one below zero.
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] - x[:, 1] + rng.normal(0, 0.3, 400) > 0).astype(float)
    w, _ = fit_monotone_logistic(x, y)
    assert w[0] > 0.5 and w[1] == 0.0
    # A stored verdict with a negative weight is refused: it would not be monotone.
    stored = verdict.to_dict()
    stored["weights"][0][0] = -1.0
    with pytest.raises(DataError, match="non-negative"):
        Verdict.from_dict(stored)
    assert Verdict.from_dict(verdict.to_dict()).cut == verdict.cut


def test_the_threshold_is_set_on_real_images_only():
    """The cut is the real images' false-alarm quantile of the score: other generated images
    change the score's weights, never how many real images it flags."""
    rng = np.random.default_rng(1)
    real = _sample(rng, 1000)
    flagged = []
    for shift in (2.0, 6.0):
        seen = _sample(rng, 300, net=shift, head=shift / 2, atyp=shift / 3)
        verdict, record = fit_verdict(PARTS, real, seen, None, None, 0.01)
        assert record["n_real"] == 1000
        assert verdict.cut == threshold_at_false_alarm(verdict.logits(real), 0.01)
        flagged.append(int(verdict.flagged(real).sum()))
    # k = floor(0.01 * 1001) - 1 = 9 of 1000 flagged, so a new real image is flagged at <= 1%.
    assert flagged == [9, 9]
    fresh = _sample(rng, 20000)
    assert verdict.flagged(fresh).mean() == pytest.approx(0.01, abs=0.004)


def test_a_fake_only_the_atypicality_catches_is_flagged():
    """A generator the network and the head take for real but whose images lie far from every
    real one is flagged, by the atypicality, and said so. A score fitted on the seen
    families alone leans on the network and lets it through (what the held-out model is
    for)."""
    rng = np.random.default_rng(2)
    verdict, _ = _fitted(rng)
    odd = _sample(rng, 200, atyp=1.5)  # real-like network and head, far from the real images
    assert verdict.flagged(odd).mean() > 0.9
    assert all(why == ["atypicality"] for why, hit in zip(verdict.explain(odd),
                                                            verdict.flagged(odd), strict=True) if hit)
    seen_only, _ = _fitted(np.random.default_rng(2), held_out=False)
    assert seen_only.flagged(odd).mean() < 0.5
    # A known generator is flagged by the network; a real-looking image by nothing.
    known = _sample(rng, 50, net=9.0)
    assert verdict.flagged(known).all()
    assert all("p_network" in why for why in verdict.explain(known))
    assert verdict.explain(_sample(rng, 1)) in ([[]], [["atypicality"]], [["p_network"]])
    # A cut below a typical real image's score still names a part for every flagged image.
    low = Verdict(verdict.parts, verdict.centre, verdict.scale, verdict.weights,
                  verdict.intercepts, float(verdict.intercepts.max()) - 1.0)
    # Just below a typical real image in every part: no part pulls it up.
    just_below = verdict.centre - 0.01 * verdict.scale
    below = {"p_network": np.full(5, 1 / (1 + np.exp(-just_below[0]))),
             "p_statistics": np.full(5, 1 / (1 + np.exp(-just_below[1]))),
             "atypicality_distance": np.full(5, np.exp(just_below[2]))}
    mixed = {k: np.r_[odd[k][:5], known[k][:5], below[k]] for k in odd}
    assert low.flagged(mixed).all()
    assert all(len(why) >= 1 for why in low.explain(mixed))


def test_a_damaged_verdict_is_one_clear_error(tmp_path):
    verdict, _ = _fitted(np.random.default_rng(3))
    good = verdict.to_dict()
    for change, message in ((dict(parts=["p_network", "nope", "atypicality"]), "parts"),
                            (dict(centre=[0.0, 1.0]), "centre"),
                            (dict(scale=[1.0, 0.0, 1.0]), "positive"),
                            (dict(weights=[[1.0, 2.0]]), "weights"),
                            (dict(cut="high"), "cut"),
                            (dict(intercepts=[float("nan"), 0.0]), "intercepts")):
        with pytest.raises(DataError, match=message) as err:
            Verdict.from_dict(good | change, tmp_path / "detector.json")
        assert "detector.json" in str(err.value)
    with pytest.raises(DataError, match="object"):
        Verdict.from_dict([1, 2], tmp_path / "detector.json")


def test_the_app_says_which_part_flagged_the_image():
    from galaxymorph.app.core import Analysis

    a = Analysis("x.png", np.zeros((4, 4, 3), np.uint8), np.array([0.6, 0.4]), ["a", "b"], 0,
                 synthetic_score=0.97, verdict="synthetic", flagged_by=["atypicality"],
                 detector_parts={"p_network": 0.02, "p_statistics": None, "atypicality": 0.9995},
                 detector_threshold=0.6)
    lines = a.detector_explanation()
    assert lines[0].startswith("Synthetic") and "flagged by atypicality" in lines[0]
    assert any("atypicality" in line and "(flagged)" in line for line in lines)
    assert any("network" in line and "(flagged)" not in line for line in lines)
    assert not any("statistics head" in line for line in lines)  # a part it lacks
    real = Analysis("y.png", a.image, a.probs, a.class_names, 0, synthetic_score=0.1,
                    verdict="real", detector_parts={"p_network": 0.1}, detector_threshold=0.6)
    assert real.detector_explanation()[0].startswith("Real") and "no part" in real.detector_explanation()[0]
