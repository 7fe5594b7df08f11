"""One device resolution and one worker-count policy for every command."""

from __future__ import annotations

import pytest
import torch

from galaxymorph import runtime
from galaxymorph.errors import ConfigError
from galaxymorph.runtime import default_workers, resolve_device


def test_resolve_device_checks_names(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda:0")
    with pytest.raises(ConfigError, match="no Apple MPS"):
        resolve_device("mps")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("cores, train, decode, predict, cache",
                         [(1, 0, 1, 1, 1), (2, 0, 1, 2, 2), (8, 4, 4, 4, 4), (32, 4, 8, 8, 4)])
def test_default_workers_by_role(monkeypatch, cores, train, decode, predict, cache):
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: cores)
    assert (default_workers("train"), default_workers("decode"), default_workers("predict"),
            default_workers("cache")) == (train, decode, predict, cache)
    # A small job is not worth starting processes for.
    assert default_workers("decode", n_items=runtime.SMALL_JOB) == 0
    assert default_workers("cache", n_items=runtime.SMALL_JOB + 1) == cache
