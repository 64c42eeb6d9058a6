"""A node whose disk fills: its home is a small tmpfs that only it (and this harness) see.

The node runs under ``unshare -m --propagation private``: a mount namespace of its own in
which a tmpfs of ``size_mb`` is mounted on its home; nothing propagates to the host, and
the tmpfs goes away with the process. Seen from outside, the home is an empty directory,
so the harness cannot use the unix socket: the node also serves its RPC on TCP
``127.0.0.1:RPC_PORT`` *inside its network namespace*, and the harness connects from a
thread that entered that network namespace (``setns`` is per thread; the client's own
thread, started from there, inherits it). The admin token is read with ``nsenter -m``.
Filling and freeing the disk also go through ``nsenter -m`` (``dd`` until ENOSPC, ``rm``).

Needs root and a :class:`tests.netns.Host` (its namespace is ``machine.ns``); a node killed
here loses its home, so the scenario never churns it.
"""

from __future__ import annotations

import ctypes
import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any

from p2pchat.client import SyncClient
from tests.netns import Host
from tests.testnet.nodes import NodeProcess

__all__ = ["DiskNode"]

RPC_PORT = 4343
_CLONE_NEWNET = 0x40000000


def _setns_net(fd: int) -> None:
    """``setns(fd, CLONE_NEWNET)`` for the calling thread (os.setns is Python 3.12+)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


class DiskNode(NodeProcess):
    def __init__(self, machine: Host, home: Path, size_mb: int, **kw: Any) -> None:
        super().__init__(machine, home, **kw)
        self.host = machine
        self.size_mb = size_mb
        self.extra_args = [*self.extra_args, "--rpc-tcp-port", str(RPC_PORT)]

    def wrapper(self) -> list[str]:
        self.home.mkdir(parents=True, exist_ok=True)  # the mount point, empty from outside
        mount = f'mount -t tmpfs -o size={self.size_mb}m,mode=0700 p2ptn-disk "$0" && exec "$@"'
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", mount, str(self.home)]

    def _inside(self, argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        assert self.pid is not None
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def open_client(self) -> SyncClient | None:
        found = self._inside(["cat", str(self.home / "rpc.token")], timeout=10.0)
        if found.returncode != 0 or not found.stdout.strip():
            return None
        token = found.stdout.strip()
        result: queue.Queue[SyncClient | BaseException] = queue.Queue(maxsize=1)

        def in_namespace() -> None:
            try:
                fd = os.open(f"/run/netns/{self.host.ns}", os.O_RDONLY)
                try:
                    _setns_net(fd)  # this thread only
                finally:
                    os.close(fd)
                result.put(
                    SyncClient.connect(
                        tcp=("127.0.0.1", RPC_PORT), token=token, reconnect_timeout=1.0
                    )
                )
            except BaseException as exc:
                result.put(exc)

        thread = threading.Thread(target=in_namespace, name=f"netns-{self.name}")
        thread.start()
        thread.join()
        got = result.get()
        if isinstance(got, BaseException):
            if isinstance(got, OSError | TimeoutError):
                return None
            raise got
        return got

    def fill(self) -> dict[str, Any]:
        """Fill the home's filesystem to the last byte; what ``df`` says then."""
        self._inside(["dd", "if=/dev/zero", f"of={self.home}/filler", "bs=1M"], timeout=120.0)
        return self.usage()

    def free(self) -> dict[str, Any]:
        self._inside(["rm", "-f", f"{self.home}/filler"])
        return self.usage()

    def usage(self) -> dict[str, Any]:
        out = self._inside(["df", "-k", "--output=size,used,avail", str(self.home)]).stdout
        rows = out.split("\n")[1:2]
        if not rows or len(rows[0].split()) != 3:
            return {"df": out.strip()}
        size, used, avail = (int(x) for x in rows[0].split())
        return {"size_kib": size, "used_kib": used, "avail_kib": avail}
