"""Listener rules that need no running server: loopback literals, path length, config checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from p2pchat.errors import ConfigError, LocalProtocolError
from p2pchat.rpc.config import ServerConfig
from p2pchat.rpc.registry import Registry
from p2pchat.rpc.server import RpcServer
from p2pchat.rpc.transport import check_loopback, open_listeners, unix_path_ok
from tests.conftest import DeterministicRng


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.6.7", "::1"])
def test_loopback_literals_are_accepted(host: str) -> None:
    check_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.1", "localhost", "", "127.0.0.1 "])
def test_everything_else_is_refused(host: str) -> None:
    with pytest.raises(ConfigError):
        check_loopback(host)


async def test_overlong_socket_path_is_a_config_error(tmp_path: Path) -> None:
    home = tmp_path / ("x" * 120)
    assert not unix_path_ok(home / "rpc.sock")
    with trio.fail_after(5), pytest.raises(ConfigError, match="too long"):
        async with open_listeners(home, ServerConfig()):
            pass  # pragma: no cover


@pytest.mark.parametrize(
    "bad",
    [{"max_frame": 0}, {"event_queue": -1}, {"rate": 0.0}, {"tcp_port": 70000}],
)
def test_config_is_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ServerConfig(**bad)  # type: ignore[arg-type]


def test_unencodable_node_info_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(LocalProtocolError):
        RpcServer(
            home=tmp_path, registry=Registry(), node_info={"x": object()}, rng=DeterministicRng()
        )
