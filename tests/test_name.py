"""The distribution, import package and command are called galaxymorph (PyPI's galmorph is another project)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

import galaxymorph
from galaxymorph import paths


def test_distribution_and_command_carry_the_new_name():
    dist = importlib.metadata.distribution("galaxymorph")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"galaxymorph": "galaxymorph.cli.main:main"}  # no galmorph alias
    assert Path(galaxymorph.__file__).parent.name == "galaxymorph"
    bindir = Path(sys.executable).parent
    assert (bindir / "galaxymorph").exists()
    assert not (bindir / "galmorph").exists()
    out = subprocess.run([str(bindir / "galaxymorph"), "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "galaxymorph" in out.stdout
    assert "galmorph " not in out.stdout


def test_new_environment_variable_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("GALAXYMORPH_HOME", str(tmp_path / "new"))
    monkeypatch.setenv("GALMORPH_HOME", str(tmp_path / "old"))
    assert paths.home() == tmp_path / "new"


def test_old_environment_variable_is_read_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.delenv("GALAXYMORPH_HOME", raising=False)
    monkeypatch.setenv("GALMORPH_HOME", str(tmp_path / "old"))
    with pytest.warns(FutureWarning, match="GALAXYMORPH_HOME"):
        assert paths.home() == tmp_path / "old"


def test_default_home_is_the_new_folder(monkeypatch):
    monkeypatch.delenv("GALAXYMORPH_HOME", raising=False)
    monkeypatch.delenv("GALMORPH_HOME", raising=False)
    assert paths.home() == Path(os.path.expanduser("~")) / ".galaxymorph"
