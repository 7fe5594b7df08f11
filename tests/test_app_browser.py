"""The web app in a real browser: `galaxymorph app` as a subprocess, driven by Debian's Chromium."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import galaxymorph

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_index(tiny_model, inference_catalog, tmp_path_factory):
    """A similarity index of the synthetic catalog (24 images, 4 classes) in the tiny model."""
    from galaxymorph.search.build import build_index

    out = tmp_path_factory.mktemp("app_index") / "ix"
    build_index([f"catalog:{inference_catalog}"], model=tiny_model, out=out, progress=False, workers=0)
    return out


@pytest.fixture(scope="module")
def server(tiny_model, app_index, tmp_path_factory):
    """``galaxymorph app`` on a free loopback port; the whole process group is ended afterwards."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("app_server") / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "galaxymorph.cli.main", "app", "--model", str(tiny_model),
             "--port", str(port), "--host", "127.0.0.1", "--index", str(app_index)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"galaxymorph app exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"galaxymorph app did not answer within 90 s:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _check_prediction(page, expected) -> None:
    """The page's class and probability are ``predict``'s row ``expected``."""
    verdict = page.get_by_text("Predicted class:")
    verdict.wait_for(timeout=60_000)
    label, pct = re.search(r"Predicted class:\s*(.+?)\s*·\s*probability\s*([\d.]+)%",
                           verdict.inner_text()).groups()
    assert label == expected["label_name"]
    assert float(pct) == pytest.approx(100 * expected["probability"], abs=0.06)


def test_upload_real_galaxy_and_corrupt_file(server, browser, tiny_model, app_index, shared_data,
                                             tmp_path):
    galaxy = sorted((Path(shared_data) / "gz1" / "images").glob("*.jpeg"))[0]
    expected = galaxymorph.predict([galaxy], model=tiny_model, progress=False).iloc[0]

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, wait_until="domcontentloaded")
    page.get_by_text("Model card").wait_for(timeout=90_000)
    assert page.get_by_text("cnn2").count() >= 1  # the card names the architecture

    page.locator('input[type="file"]').set_input_files(str(galaxy))
    _check_prediction(page, expected)
    table = page.locator('[data-testid="stTable"]').first
    table.get_by_text("%").first.wait_for(timeout=30_000)  # elements arrive one by one
    cells = [c.strip() for c in table.locator("td, th").all_inner_texts()]
    shown = [float(c.rstrip("%")) for c in cells if re.fullmatch(r"[\d.]+%", c)]
    assert len(shown) == 4 and sum(shown) == pytest.approx(100, abs=0.3)
    page.get_by_text("Grad-CAM for").first.wait_for(timeout=30_000)
    # The "Similar galaxies" panel: the 8 nearest of the index, each with its catalog class.
    page.get_by_text("Similar galaxies").first.wait_for(timeout=60_000)
    captions = page.get_by_text(re.compile(r"^#\d+ .+ · d = "))
    captions.nth(7).wait_for(timeout=30_000)
    shown = captions.all_inner_texts()
    nearest = galaxymorph.similar(app_index, [galaxy], k=8, progress=False)
    assert [int(re.match(r"#(\d+)", t).group(1)) for t in shown] == list(range(1, 9))
    assert [t.split(" · ")[0].split(" ", 1)[1] for t in shown] == list(nearest["label_name"])
    assert [t.rsplit(" · ", 1)[1] for t in shown] == [Path(n).name for n in nearest["neighbour"]]
    assert page.locator('[data-testid="stImage"] img').count() >= 8 + 2  # upload, Grad-CAM, 8
    time.sleep(1.0)  # let the chart draw before the screenshot
    page.screenshot(path=str(tmp_path / "prediction.png"), full_page=True)

    page.locator('input[type="file"]').set_input_files(
        files=[{"name": "corrupt.jpg", "mimeType": "image/jpeg", "buffer": b"\xff\xd8\xffnot a jpeg"}])
    alert = page.locator('[data-testid="stAlert"]').filter(has_text="corrupt.jpg")
    alert.wait_for(timeout=60_000)
    message = alert.inner_text()
    assert "corrupt" in message and "Traceback" not in page.content()
    page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
    assert (tmp_path / "prediction.png").stat().st_size > 10_000
    page.close()


def _choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_the_built_in_tree_model_shows_its_answers_and_any_taxonomy(server, browser, shared_data):
    """The built-in model answers Galaxy Zoo's questions: the page shows each question's vote
    fractions, and the class in the taxonomy chosen, as ``predict --taxonomy`` gives it."""
    galaxy = sorted((Path(shared_data) / "gz1" / "images").glob("*.jpeg"))[0]
    expected = galaxymorph.predict([galaxy], model="default", taxonomy="galaxy10",
                                   progress=False).iloc[0]

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, wait_until="domcontentloaded")
    page.get_by_text("Model card").wait_for(timeout=90_000)
    _choose(page, "Classifier", "default")
    page.get_by_text("Classes (taxonomy)").wait_for(timeout=60_000)
    _choose(page, "Classes (taxonomy)", "galaxy10")
    page.get_by_text("Merged (the questions cannot tell them apart)").wait_for(timeout=60_000)

    page.locator('input[type="file"]').set_input_files(str(galaxy))
    page.get_by_text("Galaxy Zoo's questions").first.wait_for(timeout=90_000)
    _check_prediction(page, expected)
    # One row per question, with its most voted answer as predict's vote columns give it.
    tree = page.locator('[data-testid="stTable"]').filter(has_text="reached by")
    tree.wait_for(timeout=30_000)
    text = tree.inner_text()
    for question in ("smooth-or-featured", "disk-edge-on", "bar", "has-spiral-arms", "how-rounded"):
        assert question in text
    smooth = {a: expected[f"vote_smooth-or-featured_{a}"]
              for a in ("smooth", "featured-or-disk", "artifact")}
    top = max(smooth, key=smooth.get)
    assert f"{top} ({smooth[top]:.0%})" in text
    page.close()
