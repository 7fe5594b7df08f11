"""The top-level Python API: lazy names resolve, and importing galaxymorph stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import galaxymorph


@pytest.mark.parametrize("name", galaxymorph.__all__)
def test_public_names_resolve(name):
    assert getattr(galaxymorph, name) is not None


def test_import_and_cli_help_do_not_load_torch():
    code = ("import sys, galaxymorph, galaxymorph.cli.main; "
            "print('torch' in sys.modules, 'lightning' in sys.modules, 'streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"], out.stdout + out.stderr


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError):
        galaxymorph.no_such_thing  # noqa: B018
