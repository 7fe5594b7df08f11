"""The documentation site builds: `mkdocs build --strict` (a broken link, a missing page or an
API reference to a name that does not exist fails it), as CI runs it through this test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _mkdocs() -> list[str]:
    # The venv's own mkdocs (a dev dependency), run as a module of this interpreter.
    return [sys.executable, "-m", "mkdocs"]


def test_the_docs_site_builds_strictly(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([*_mkdocs(), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("TrainConfig", "train_gan", "load_classifier", "open_dataset", "ModelCard"):
        assert re.search(rf'id="galaxymorph\.[\w.]*\b{name}"', api), f"{name} is not in the API reference"


def test_every_docs_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(nav) -> list[str]:
        out = []
        for item in nav:
            for value in (item.values() if isinstance(item, dict) else [item]):
                out += pages(value) if isinstance(value, list) else [value]
        return out

    in_nav = set(pages(config["nav"]))
    on_disk = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert on_disk == in_nav, "every docs/ page is in mkdocs.yml's nav, and only those"


def test_the_readme_is_short_and_its_links_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert any(link.startswith("docs/") for link in local)
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
    assert len(readme.split()) <= 1300, "the README is the short way in; details go to docs/"
