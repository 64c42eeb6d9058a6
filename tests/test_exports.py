"""The public surfaces: every name in ``__all__`` exists, and nothing private leaks in."""

from __future__ import annotations

import importlib

import pytest

PUBLIC_MODULES = [
    "p2pchat",
    "p2pchat.errors",
    "p2pchat.events",
    "p2pchat.storage",
    "p2pchat_crypto",
    "p2pchat_crypto.errors",
    "p2pchat_crypto.cbor",
    "p2pchat_crypto.group",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_names_exist_and_are_public(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), "duplicate names in __all__"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"
        assert not attr.startswith("_") or attr == "__version__"


def test_crypto_surface() -> None:
    import p2pchat_crypto

    assert {"Account", "Session", "GroupSession", "ReplayCache", "CryptoError"} <= set(
        p2pchat_crypto.__all__
    )
