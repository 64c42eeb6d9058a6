"""Listeners for the RPC server: ``<home>/rpc.sock`` and, optionally, loopback TCP.

The unix socket is the default and the safer transport: the home directory is made
0700 and the socket 0600, so only the node's owner can connect at all (the token is a
second lock). The socket is bound inside the 0700 directory before its chmod, so the
moment between bind and chmod is not reachable by other users.

A socket file left by a crashed node is removed only after a connection attempt is
refused: if something answers, another node is running on this home and we refuse to
start rather than steal its socket.

TCP is for clients that cannot speak unix sockets; it binds loopback addresses only
(``127.0.0.0/8`` or ``::1``) given as literals: names like ``localhost`` can resolve to
anything and ``0.0.0.0`` would expose the node to the network.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket as _stdlib_socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import trio

from p2pchat.errors import ConfigError
from p2pchat.rpc.config import ServerConfig

__all__ = ["SOCKET_FILE", "check_loopback", "open_listeners", "unix_path_ok"]

SOCKET_FILE: Final = "rpc.sock"
_SUN_PATH_MAX: Final = 107  # Linux sockaddr_un.sun_path is 108 bytes with the NUL
_BACKLOG: Final = 64


def unix_path_ok(path: Path) -> bool:
    return len(os.fsencode(path)) <= _SUN_PATH_MAX


def check_loopback(host: str) -> None:
    """Raise :class:`ConfigError` unless ``host`` is a loopback IP literal."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"RPC TCP host must be a loopback IP literal, not {host!r}") from None
    if not address.is_loopback:
        raise ConfigError(f"RPC TCP refuses to bind non-loopback address {host}")


def _existing_socket(path: Path) -> bool:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{path} exists and is not a socket; refusing to replace it")
    return True


def _prepare_home(home: Path) -> Path:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    path = home / SOCKET_FILE
    if not unix_path_ok(path):
        raise ConfigError(f"socket path too long for AF_UNIX ({len(str(path))} bytes): {path}")
    return path


async def _remove_stale(path: Path) -> None:
    if not _existing_socket(path):
        return
    try:
        stream = await trio.open_unix_socket(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ConfigError(f"cannot probe {path}: {exc.strerror}") from None
        os.unlink(path)
        return
    await stream.aclose()
    raise ConfigError(f"another node is already serving RPC on {path}")


async def _bind_unix(home: Path) -> tuple[trio.SocketListener, Path, int]:
    path = _prepare_home(home)
    await _remove_stale(path)
    sock = trio.socket.socket(_stdlib_socket.AF_UNIX, _stdlib_socket.SOCK_STREAM)
    try:
        await sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock), path, os.stat(path).st_ino


async def _bind_tcp(host: str, port: int) -> tuple[trio.SocketListener, tuple[str, int]]:
    check_loopback(host)
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=_BACKLOG)
    if len(listeners) != 1:  # pragma: no cover - one literal address gives one listener
        for extra in listeners:
            await extra.aclose()
        raise ConfigError(f"expected one listener for {host}")
    listener = listeners[0]
    sockname = listener.socket.getsockname()
    return listener, (str(sockname[0]), int(sockname[1]))


@asynccontextmanager
async def open_listeners(
    home: Path, config: ServerConfig
) -> AsyncIterator[tuple[list[trio.SocketListener], Path, tuple[str, int] | None]]:
    """Bind everything the config asks for; close and remove our socket file on exit."""
    if config.tcp_port is not None:
        check_loopback(config.tcp_host)  # refuse before touching the filesystem
    listener, path, inode = await _bind_unix(home)
    listeners = [listener]
    tcp: tuple[str, int] | None = None
    try:
        if config.tcp_port is not None:
            tcp_listener, tcp = await _bind_tcp(config.tcp_host, config.tcp_port)
            listeners.append(tcp_listener)
        yield listeners, path, tcp
    finally:
        with trio.CancelScope(shield=True):
            for each in listeners:
                await each.aclose()
        _unlink_if_ours(path, inode)


def _unlink_if_ours(path: Path, inode: int) -> None:
    try:
        if os.stat(path).st_ino == inode:  # still ours, not a successor's
            os.unlink(path)
    except FileNotFoundError:
        pass
