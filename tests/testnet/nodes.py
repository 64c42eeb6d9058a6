"""A real ``p2pchat node run`` process on a machine, and an RPC client to it.

Shared by the testnet and ``tests/integration/test_cross_host.py``. A node is started with
the command users run, on the defaults (``0.0.0.0:4242``), its own home and passphrase; the
test talks to it only through the public RPC (:class:`p2pchat.client.SyncClient` over the
home's ``rpc.sock``, reachable from outside the node's network namespace because the
filesystem is shared).

A machine is anything with ``name`` and ``run(argv, **popen_kw) -> Popen`` that puts the
process in its own process group and stops it at the end: a :class:`tests.netns.Host`, or a
:class:`LoopbackMachine` where namespaces are not available.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from p2pchat.client import SyncClient
from p2pchat.errors import P2PChatError

__all__ = [
    "START_LIMIT",
    "LIMIT",
    "Machine",
    "LoopbackMachine",
    "NodeProcess",
    "group_texts",
    "history",
    "node",
    "wait_until",
]

START_LIMIT = 60.0  # a first start derives the keystore key (Argon2id) and loads libp2p
LIMIT = 45.0  # any one exchange between started nodes
T = TypeVar("T")


class Machine(Protocol):
    @property
    def name(self) -> str: ...

    def run(self, argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]: ...


def wait_until(what: str, probe: Callable[[], T | None], *, limit: float = LIMIT) -> T:
    """Poll ``probe`` until it returns something truthy (the nodes offer no event for it)."""
    deadline = time.monotonic() + limit
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class LoopbackMachine:
    """A "machine" that is this host (no namespace): for machines without namespace rights.
    Each node then needs its own port on 127.0.0.1; nothing is emulated (no NAT, loss or
    partitions). Processes get their own process group; :meth:`close` stops them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ip = "127.0.0.1"
        self._procs: list[subprocess.Popen[Any]] = []

    def run(self, argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        proc: subprocess.Popen[Any] = subprocess.Popen(argv, start_new_session=True, **popen_kw)
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        running = [p for p in self._procs if p.poll() is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class NodeProcess:
    """A node on a machine, and an RPC client to it.

    ``start()`` runs ``p2pchat node run --create-identity`` (again after a kill: the home
    keeps the identity and store); the client talks to the home's ``rpc.sock``.
    """

    def __init__(
        self,
        machine: Machine,
        home: Path,
        bootstrap: Sequence[str] = (),
        *,
        extra_args: Sequence[str] = (),
        log_dir: Path | None = None,
    ) -> None:
        self.machine = machine
        self.home = home
        self.bootstrap = list(bootstrap)
        self.extra_args = list(extra_args)
        self.log_dir = log_dir or home.parent
        self.process: subprocess.Popen[Any] | None = None
        self.client: SyncClient | None = None
        self.starts = 0
        self._log: IO[str] | None = None

    @property
    def name(self) -> str:
        return self.machine.name

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *, wait: bool = True) -> None:
        if self.alive():
            raise RuntimeError(f"{self.name}'s node is already running")
        self.close_client()
        env = {
            **os.environ,
            "P2PCHAT_HOME": str(self.home),
            "P2PCHAT_PASSPHRASE": f"{self.name} pass",
        }
        args = [*self.wrapper(), sys.executable, "-m", "p2pchat.cli", "node", "run"]
        args += ["--create-identity", *self.extra_args]
        args += [option for addr in self.bootstrap for option in ("--bootstrap", addr)]
        self.home.parent.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self._log is not None:
            self._log.close()
        self.starts += 1
        self._log = (self.log_dir / f"{self.name}.log").open("a")
        self._log.write(f"--- start {self.starts} at {time.time():.3f}\n")
        self._log.flush()
        self.process = self.machine.run(args, env=env, stdout=self._log, stderr=self._log)
        if wait:
            self.connect()

    def wrapper(self) -> list[str]:
        """What the node command is run under (nothing: the command users run, as is)."""
        return []

    def connect(self, limit: float = START_LIMIT) -> None:
        def ready() -> SyncClient | None:
            assert self.process is not None
            assert self.process.poll() is None, f"{self.name}'s node exited"
            try:
                client = self.open_client()
                if client is None:
                    return None
                client.call("rpc.ping", timeout=5.0)
            except (P2PChatError, OSError, TimeoutError):
                return None  # bound a moment before the token check passes
            return client

        self.client = wait_until(f"{self.name}'s RPC", ready, limit=limit)

    def open_client(self) -> SyncClient | None:
        """A client over the home's unix socket (None while the node has not bound it)."""
        if not (self.home / "rpc.sock").exists():
            return None
        return SyncClient.connect(home=self.home, reconnect_timeout=1.0)

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        client = self.client
        if client is None:
            raise RuntimeError(f"{self.name} has no RPC client (not running)")
        return client.call(method, params, timeout=timeout)

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the node's process group (SIGKILL: no goodbye at all)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def stop(self, signum: int = signal.SIGTERM, *, timeout: float = 20.0) -> int | None:
        """Signal the node and wait for it to exit; its return code."""
        self.close_client()
        self.send_signal(signum)
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            return self.process.wait(timeout=timeout)

    def close_client(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def close(self) -> None:
        """Close the client and the log (the machine's owner stops the process)."""
        self.close_client()
        if self._log is not None:
            self._log.close()
            self._log = None


@contextmanager
def node(machine: Machine, home: Path, *bootstrap: str) -> Iterator[NodeProcess]:
    """A started node on ``machine`` with its client; the client is closed at the end."""
    who = NodeProcess(machine, home, bootstrap)
    try:
        who.start()
        yield who
    finally:
        who.close()


def history(who: NodeProcess, conversation: str) -> list[str]:
    return [m["text"] for m in who.call("dm.history", {"conversation": conversation})]


def group_texts(who: NodeProcess, group: str) -> list[str]:
    return [m["text"] for m in who.call("groups.history", {"group": group})]
