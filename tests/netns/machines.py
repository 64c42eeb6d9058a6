"""The machines of a `NetnsWorld`: public hosts, hosts behind NAT, and NAT routers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.netns._system import NetnsError, sh

if TYPE_CHECKING:
    from tests.netns.world import NetnsWorld


@dataclass(eq=False)
class Machine:
    """A namespace of the world: ``name``, namespace ``ns``, and ``ip`` as the internet sees it
    (a private host's own address; its router's is ``behind.ip``)."""

    world: NetnsWorld = field(repr=False)
    name: str
    ns: str
    ip: str
    _far_ns: str = field(repr=False)
    _far_if: str = field(repr=False)

    def exec(
        self, argv: Sequence[str], *, timeout: float = 10.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command in this namespace and return its captured (text) output."""
        return sh(["ip", "netns", "exec", self.ns, *argv], timeout=timeout, check=check)

    def run(self, argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start a process in this namespace (own process group; the world kills it at the end)."""
        return self.world._spawn(self, argv, popen_kw)

    def is_listening(self, port: int) -> bool:
        """True if some socket listens on TCP `port` (any address) inside this namespace."""
        out = self.exec(["ss", "-Hltn", f"sport = :{port}"]).stdout
        return bool(out.strip())

    def wait_port(
        self, port: int, *, timeout: float = 10.0, proc: subprocess.Popen[Any] | None = None
    ) -> None:
        """Wait until TCP `port` listens here; fail early if `proc` exits, raise at `timeout`."""
        deadline = time.monotonic() + timeout
        while not self.is_listening(port):
            if proc is not None and proc.poll() is not None:
                raise NetnsError(
                    f"{self.name}: process exited ({proc.returncode}) before port {port} listened"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name}: nothing listens on TCP port {port} after {timeout} s"
                )
            time.sleep(0.05)

    async def wait_port_async(
        self, port: int, *, proc: subprocess.Popen[Any] | None = None
    ) -> None:
        """`wait_port` for trio code, without blocking the loop; bound it with
        ``with trio.fail_after(seconds):``."""
        import trio

        cmd = ["ip", "netns", "exec", self.ns, "ss", "-Hltn", f"sport = :{port}"]
        while not (await trio.run_process(cmd, capture_stdout=True)).stdout.strip():
            if proc is not None and proc.poll() is not None:
                raise NetnsError(
                    f"{self.name}: process exited ({proc.returncode}) before port {port} listened"
                )
            await trio.sleep(0.05)


@dataclass(eq=False)
class Nat(Machine):
    """A NAT router: ``ip`` is its public address, ``lan_ip`` its address in ``private_subnet``."""

    private_subnet: str = ""
    lan_ip: str = ""


@dataclass(eq=False)
class Host(Machine):
    """A host: public (``behind is None``) or on the private side of the NAT router ``behind``."""

    behind: Nat | None = None

    @property
    def public_ip(self) -> str:
        """The address peers on the internet see for this host."""
        return self.behind.ip if self.behind is not None else self.ip


def sees_exactly(viewer: Machine, target: Machine) -> bool:
    """Whether `viewer` sees `target`'s packets from `target`'s own address."""
    return not (
        isinstance(target, Host) and target.behind is not None and site(viewer) is not target.behind
    )


def site(machine: Machine) -> Nat | None:
    if isinstance(machine, Nat):
        return machine
    return machine.behind if isinstance(machine, Host) else None


def seen_as(viewer: Machine, target: Machine) -> list[str]:
    """The addresses `target`'s traffic has when it reaches `viewer`."""
    if isinstance(target, Nat):
        return [target.ip, target.lan_ip] if site(viewer) is target else [target.ip]
    if isinstance(target, Host) and target.behind is not None and site(viewer) is not target.behind:
        return [target.behind.ip]
    return [target.ip]
