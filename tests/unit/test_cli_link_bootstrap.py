"""A linked device enters the network through the device that linked it; the node's
terminal is not doubled by a default handler some library call installed first."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from p2pchat.cli._logging import configure_logging
from p2pchat.cli.devices import link_bootstrap
from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat.protocol.device_link import LinkCode


def test_a_link_code_gives_the_linking_device_as_bootstrap() -> None:
    key = bytes(range(32))
    peer = peer_id_from_ed25519(key)
    code = LinkCode(
        device_key=key,
        secret=bytes(16),
        addrs=("/ip4/198.51.100.10/tcp/4242", f"/ip4/203.0.113.5/tcp/4242/p2p/{peer}"),
    ).encode()
    assert link_bootstrap(code) == [
        f"/ip4/198.51.100.10/tcp/4242/p2p/{peer}",
        f"/ip4/203.0.113.5/tcp/4242/p2p/{peer}",
    ]


@pytest.fixture
def clean_root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    for h in saved:
        root.removeHandler(h)
    try:
        yield root
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved:
            root.addHandler(h)
        root.setLevel(level)


def test_a_default_root_handler_installed_before_ours_is_removed(
    clean_root: logging.Logger,
) -> None:
    def plain() -> list[logging.Handler]:  # pytest's own capture handlers aside
        return [h for h in clean_root.handlers if type(h) is logging.StreamHandler]

    default = logging.StreamHandler()  # what logging.basicConfig() installs (a library's
    default.setFormatter(logging.Formatter(logging.BASIC_FORMAT))  # first logging.warning)
    clean_root.addHandler(default)
    assert len(plain()) == 1
    ours = configure_logging(0)
    assert plain() == [ours]
    assert configure_logging(0) is ours
    assert plain() == [ours]
