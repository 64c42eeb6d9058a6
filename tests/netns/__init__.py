"""Real hosts in Linux network namespaces for tests: see docs/testing-netns.md.

``with NetnsWorld() as world:`` builds a private "internet" (a bridge in its own namespace),
public hosts, NAT routers with hosts behind them, per-link loss, partitions and link cuts, and
removes all of it (processes included) at the end, after an error, at exit or on SIGTERM.
The pytest fixture ``netns_world`` (tests/conftest.py) yields a fresh one.
"""

from __future__ import annotations

import os

from tests.netns._system import (
    PREFIX,
    LeftoversError,
    NetnsError,
    available,
    cleanup,
    iptables_available,
    leftovers,
)
from tests.netns.machines import Host, Machine, Nat
from tests.netns.world import NetnsWorld, close_all

__all__ = [
    "PREFIX",
    "Host",
    "LeftoversError",
    "Machine",
    "Nat",
    "NetnsError",
    "NetnsWorld",
    "available",
    "cleanup",
    "close_all",
    "iptables_available",
    "leftovers",
    "require_netns",
]


def require_netns() -> None:
    """For tests: skip when not root (with the reason), fail loudly when root but unusable.

    CI and these machines run as root, so a namespace test is never silently skipped there.
    """
    import pytest

    ok, reason = available()
    if not ok:
        if os.geteuid() == 0:
            pytest.fail(f"running as root but network namespaces are unusable: {reason}")
        pytest.skip(reason)
    ok, reason = iptables_available()
    if not ok:
        pytest.fail(reason)
