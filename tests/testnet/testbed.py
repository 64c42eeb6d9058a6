"""Where the testnet's nodes run: namespaces (the real thing) or loopback (labelled fallback).

:class:`NetnsTestbed` builds a :class:`tests.netns.NetnsWorld`: public hosts, NAT routers with
hosts behind them, random loss on every link, partitions that heal; every node on the
defaults users get (``0.0.0.0:4242``). :class:`LoopbackTestbed` runs every node on this
host's 127.0.0.1 with a port each, for machines without namespace rights: it emulates
nothing (no NAT, no loss, no partition), and the report says so on its first line.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any

from tests.netns import Host, Nat, NetnsWorld
from tests.testnet.nodes import LoopbackMachine, Machine, NodeProcess
from tests.testnet.scenario import Scenario

__all__ = ["LoopbackTestbed", "NetnsTestbed", "Testbed"]


class Testbed:
    mode = ""
    emulated: tuple[str, ...] = ()

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError

    def machine(self, name: str) -> Machine:
        raise NotImplementedError

    def node_args(self, name: str) -> list[str]:
        return []

    def ip(self, name: str) -> str:
        raise NotImplementedError

    def behind_nat(self, name: str) -> bool:
        return False

    def partition(self, side: list[str], rest: list[str]) -> None:
        """Cut ``side`` off from ``rest`` (no-op where not emulated)."""

    def heal(self) -> None:
        """Remove every partition."""

    def proc_net(self, node: NodeProcess) -> dict[str, int]:
        """Kernel TCP counters of the node's network namespace (empty where shared)."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "emulated": list(self.emulated)}


class NetnsTestbed(Testbed):
    mode = "netns"
    emulated = ("namespaces", "nat", "loss", "partitions")

    def __init__(self, scenario: Scenario) -> None:
        self.world = NetnsWorld()
        self.world.__enter__()
        self.hosts: dict[str, Host] = {}
        self.nats: dict[str, Nat] = {}
        try:
            for name in scenario.nodes:
                if scenario.nat_of(name) is None:
                    self.hosts[name] = self.world.add_host(name)
            for nat in scenario.nats:
                router = self.world.add_nat(nat.name)
                self.nats[nat.name] = router
                for i in range(1, nat.hosts + 1):
                    host = f"{nat.name}{i}"
                    self.hosts[host] = self.world.add_host(host, behind=router)
            if scenario.loss > 0:
                for machine in [*self.hosts.values(), *self.nats.values()]:
                    self.world.set_loss(machine, scenario.loss)
        except BaseException:
            self.world.close()
            raise

    def close(self) -> None:
        self.world.close()

    def machine(self, name: str) -> Machine:
        return self.hosts[name]

    def ip(self, name: str) -> str:
        return self.hosts[name].ip

    def behind_nat(self, name: str) -> bool:
        return self.hosts[name].behind is not None

    def partition(self, side: list[str], rest: list[str]) -> None:
        self.world.partition([self.hosts[n] for n in side], [self.hosts[n] for n in rest])

    def heal(self) -> None:
        self.world.heal()

    def proc_net(self, node: NodeProcess) -> dict[str, int]:
        pid = node.pid
        if pid is None:
            return {}
        out: dict[str, int] = {}
        with contextlib.suppress(OSError):
            out.update(_proc_table(Path(f"/proc/{pid}/net/snmp"), "Tcp", ("CurrEstab",)))
            out.update(
                _proc_table(
                    Path(f"/proc/{pid}/net/netstat"),
                    "TcpExt",
                    ("ListenOverflows", "ListenDrops", "TCPAbortOnData"),
                )
            )
        return out

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "namespace_prefix": f"{self.world.prefix}{self.world.run_id}-",
            "hosts": {
                n: {"ip": h.ip, "behind": h.behind.name if h.behind else None}
                for n, h in self.hosts.items()
            },
            "nats": {n: {"ip": r.ip, "subnet": r.private_subnet} for n, r in self.nats.items()},
        }


class LoopbackTestbed(Testbed):
    mode = "loopback"
    emulated = ()

    def __init__(self, scenario: Scenario) -> None:
        self.machines = {name: LoopbackMachine(name) for name in scenario.nodes}
        self.ports = {name: _free_port() for name in scenario.nodes}

    def close(self) -> None:
        for machine in self.machines.values():
            machine.close()

    def machine(self, name: str) -> Machine:
        return self.machines[name]

    def node_args(self, name: str) -> list[str]:
        return ["--listen", "127.0.0.1", "--port", str(self.ports[name]), "--no-nearby"]

    def ip(self, name: str) -> str:
        return "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _proc_table(path: Path, prefix: str, keys: tuple[str, ...]) -> dict[str, int]:
    """Pick ``keys`` from a /proc/net/{snmp,netstat} table (header line, value line)."""
    lines = [
        line.split() for line in path.read_text().splitlines() if line.startswith(prefix + ":")
    ]
    out: dict[str, int] = {}
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        for key, value in zip(header[1:], values[1:], strict=False):
            if key in keys:
                out[key] = int(value)
    return out
