"""The public surface of p2pchat.rpc and p2pchat.client is what ``__all__`` says."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("name", ["p2pchat.rpc", "p2pchat.client"])
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []
    public = {n for n in vars(module) if not n.startswith("_")} - set(module.__all__)
    assert {n for n in public if not isinstance(getattr(module, n), type(importlib))} == set()
