"""Apps that only talk to a node stay light: importing the clients loads no network stack."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("p2pchat.aio", ("trio", "libp2p", "p2pchat.node")),
        ("p2pchat.client", ("libp2p", "p2pchat.node")),
        ("p2pchat.cli", ("trio", "libp2p", "textual")),
        ("p2pchat.tui", ("trio", "libp2p", "p2pchat.node")),
    ],
)
def test_importing_a_client_loads_no_network_stack(module: str, forbidden: tuple[str, ...]) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "", f"{module} loaded {out.stdout.strip()}"
