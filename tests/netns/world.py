"""`NetnsWorld`: real hosts in Linux network namespaces, an "internet", NAT, loss, partitions.

Topology: a *switch* namespace holds the bridge ``br0`` of the internet segment; every public
machine (public host or NAT router) has a veth ``eth0`` whose other end is a port of that
bridge. Public addresses come from 198.51.100.0/24 (hosts) and 203.0.113.0/24 (routers), both
on-link on the one segment. A NAT router also has a bridge ``lan0`` for its private subnet
(inside 10.77.0.0/16); hosts behind it get a default route via the router, which masquerades
their traffic and drops new connections from outside. Nothing is ever created in the root
namespace and no namespace has a route out of the world: see docs/testing-netns.md.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from types import FrameType, TracebackType
from typing import Any

from tests.netns._system import (
    PREFIX,
    RUN_ID_LEN,
    LeftoversError,
    NetnsError,
    available,
    iptables_available,
    kill_namespace_processes,
    leftovers,
    namespaces,
    release_run_lock,
    root_links,
    sh,
    take_run_lock,
)
from tests.netns.machines import Host, Machine, Nat, seen_as, sees_exactly

HOSTS_NET = ipaddress.IPv4Network("198.51.100.0/24")
ROUTERS_NET = ipaddress.IPv4Network("203.0.113.0/24")
PUBLIC_NETS = (HOSTS_NET, ROUTERS_NET)
PRIVATE_NET = ipaddress.IPv4Network("10.77.0.0/16")
LOSS_CHAIN = "p2pt-loss"
PARTITION_CHAIN = "p2pt-part"
_NAME = re.compile(r"[a-z][a-z0-9]{0,11}")
_TERM_GRACE_S = 3.0


class NetnsWorld:
    """A private network of namespaces, torn down on exit, on error, at exit and on SIGTERM.

    ``with NetnsWorld() as world:`` refuses to start while leftovers of a dead run exist
    (``python -m tests.netns --cleanup`` removes them).
    """

    def __init__(self, *, prefix: str = PREFIX) -> None:
        self.prefix = prefix
        self.run_id = ""
        self.hosts: dict[str, Host] = {}
        self.nats: dict[str, Nat] = {}
        self._switch = ""
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._lock_fd: int | None = None
        self._ports = 0
        self._filtered: set[str] = set()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> NetnsWorld:
        if self._lock_fd is not None or self._closed:
            raise NetnsError("a NetnsWorld is entered once")
        ok, reason = available()
        if not ok:
            raise NetnsError(f"network namespaces unavailable: {reason}")
        stale = leftovers(self.prefix)
        if stale:
            raise LeftoversError(
                f"leftovers of a previous run exist: {', '.join(stale)}; remove them with "
                f"`python -m tests.netns --cleanup`"
                + (f" --prefix {self.prefix}" if self.prefix != PREFIX else "")
            )
        taken = namespaces() + root_links()
        while True:
            self.run_id = secrets.token_hex(RUN_ID_LEN // 2)
            if not any(n.startswith(f"{self.prefix}{self.run_id}") for n in taken):
                break
        self._lock_fd = take_run_lock(self.prefix, self.run_id)
        _register(self)
        try:
            self._switch = self._new_namespace("sw")
            self._ip(self._switch, "link", "add", "br0", "type", "bridge")
            self._ip(self._switch, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Kill every process started here, delete every namespace (so every link). Idempotent."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        try:
            try:
                self._stop_processes()
            finally:  # the namespaces go even if stopping a process failed
                for ns in reversed(self._namespaces):
                    try:
                        kill_namespace_processes(ns)
                        sh(["ip", "netns", "del", ns])
                    except NetnsError as exc:
                        errors.append(str(exc))
        finally:
            if self._lock_fd is not None:
                release_run_lock(self.prefix, self.run_id, self._lock_fd)
            _unregister(self)
        if errors:
            raise NetnsError("teardown incomplete: " + "; ".join(errors))

    @property
    def namespaces(self) -> list[str]:
        """The namespaces of this world, in creation order (the switch first)."""
        return list(self._namespaces)

    # -- building ----------------------------------------------------------------------------

    def add_host(self, name: str, ip: str | None = None, *, behind: Nat | None = None) -> Host:
        """A host on the internet (198.51.100.0/24 by default) or behind the NAT router `behind`."""
        self._check_new_name(name)
        if behind is None:
            addr = self._public_ip(ip, HOSTS_NET)
            ns = self._new_namespace(name)
            port = self._plug_public(ns, addr)
            host = Host(self, name, ns, addr, self._switch, port)
        else:
            if behind.world is not self or behind.name not in self.nats:
                raise ValueError(f"{behind.name!r} is not a NAT router of this world")
            subnet = ipaddress.ip_network(behind.private_subnet)
            used = {h.ip for h in self.hosts.values() if h.behind is behind} | {behind.lan_ip}
            addr = self._pick(ip, subnet, used, start=10)
            ns = self._new_namespace(name)
            self._ports += 1
            port = f"l{self._ports}"
            self._veth(behind.ns, port, ns, "lan0")
            self._ip(ns, "addr", "add", f"{addr}/{subnet.prefixlen}", "dev", "eth0")
            self._ip(ns, "link", "set", "eth0", "up")
            self._ip(ns, "route", "add", "default", "via", behind.lan_ip)
            host = Host(self, name, ns, addr, behind.ns, port, behind=behind)
        self.hosts[name] = host
        return host

    def add_nat(
        self, name: str, public_ip: str | None = None, private_subnet: str | None = None
    ) -> Nat:
        """A MASQUERADE router: public side on the internet (203.0.113.0/24 by default), private
        side `private_subnet` inside 10.77.0.0/16 (a fresh /24 by default), router at its .1."""
        self._require_iptables()
        self._check_new_name(name)
        addr = self._public_ip(public_ip, ROUTERS_NET)
        subnet = self._private_subnet(private_subnet)
        lan_ip = str(next(subnet.hosts()))
        ns = self._new_namespace(name)
        port = self._plug_public(ns, addr)
        self._ip(ns, "link", "add", "lan0", "type", "bridge")
        self._ip(ns, "addr", "add", f"{lan_ip}/{subnet.prefixlen}", "dev", "lan0")
        self._ip(ns, "link", "set", "lan0", "up")
        run = ["ip", "netns", "exec", ns]
        sh([*run, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        ipt = [*run, "iptables", "-w"]
        sh(
            [
                *ipt,
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-s",
                str(subnet),
                "-o",
                "eth0",
                "-j",
                "MASQUERADE",
            ]
        )
        sh([*ipt, "-A", "FORWARD", "-i", "eth0", "-o", "lan0", "-m", "conntrack",
            "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"])  # fmt: skip
        sh([*ipt, "-A", "FORWARD", "-i", "eth0", "-o", "lan0", "-j", "DROP"])
        router = Nat(self, name, ns, addr, self._switch, port, str(subnet), lan_ip)
        self.nats[name] = router
        return router

    # -- faults ------------------------------------------------------------------------------

    def set_loss(self, machine: Machine, probability: float) -> None:
        """Drop each packet on `machine`'s uplink with `probability`, each direction on its own."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"loss probability {probability} is outside [0, 1]")
        self._own(machine)
        self._ensure_chains(machine.ns)
        self._iptables(machine.ns, "-F", LOSS_CHAIN)
        if probability == 0.0:
            return
        chance = (
            []
            if probability == 1.0
            else ["-m", "statistic", "--mode", "random", "--probability", f"{probability}"]
        )
        for direction in ("-i", "-o"):
            self._iptables(machine.ns, "-A", LOSS_CHAIN, direction, "eth0", *chance, "-j", "DROP")

    def partition(self, group_a: Iterable[Machine], group_b: Iterable[Machine]) -> None:
        """Drop all traffic between every member of `group_a` and every member of `group_b`.

        Rules sit where a peer is seen by its own address. Between two hosts behind different
        NATs each sees the other as its router, so that pair's rule covers the whole NAT site
        as seen from that host. Cumulative until `heal()`.
        """
        side_a, side_b = list(group_a), list(group_b)
        if {id(m) for m in side_a} & {id(m) for m in side_b}:
            raise ValueError("a machine cannot be on both sides of a partition")
        for a in side_a:
            for b in side_b:
                self._own(a)
                self._own(b)
                sides = [(v, t) for v, t in ((a, b), (b, a)) if sees_exactly(v, t)] or [
                    (a, b),
                    (b, a),
                ]
                for viewer, target in sides:
                    self._ensure_chains(viewer.ns)
                    for addr in seen_as(viewer, target):
                        self._iptables(viewer.ns, "-A", PARTITION_CHAIN, "-s", addr, "-j", "DROP")
                        self._iptables(viewer.ns, "-A", PARTITION_CHAIN, "-d", addr, "-j", "DROP")

    def heal(self) -> None:
        """Remove every partition."""
        for ns in sorted(self._filtered):
            self._iptables(ns, "-F", PARTITION_CHAIN)

    def link_down(self, machine: Machine) -> None:
        """Pull `machine`'s cable: its uplink loses carrier (addresses and routes stay)."""
        self._own(machine)
        self._ip(machine._far_ns, "link", "set", machine._far_if, "down")

    def link_up(self, machine: Machine) -> None:
        """Plug `machine`'s cable back in."""
        self._own(machine)
        self._ip(machine._far_ns, "link", "set", machine._far_if, "up")

    # -- internals ---------------------------------------------------------------------------

    def _spawn(
        self, machine: Machine, argv: Sequence[str], popen_kw: dict[str, Any]
    ) -> subprocess.Popen[Any]:
        self._own(machine)
        if "start_new_session" in popen_kw or "process_group" in popen_kw:
            raise ValueError("the world puts each process in its own process group itself")
        proc: subprocess.Popen[Any] = subprocess.Popen(
            ["ip", "netns", "exec", machine.ns, *argv], start_new_session=True, **popen_kw
        )
        self._procs.append(proc)
        return proc

    def _stop_processes(self) -> None:
        running = [p for p in self._procs if p.poll() is None]
        for proc in running:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + _TERM_GRACE_S
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        for proc in self._procs:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

    def _check_live(self) -> None:
        if self._lock_fd is None or self._closed:
            raise NetnsError("use the world inside `with NetnsWorld() as world:`")

    def _own(self, machine: Machine) -> None:
        self._check_live()
        if machine.world is not self:
            raise ValueError(f"{machine.name!r} belongs to another world")

    def _check_new_name(self, name: str) -> None:
        self._check_live()
        if not _NAME.fullmatch(name) or name == "sw":
            raise ValueError(
                f"machine name {name!r}: 1-12 of [a-z0-9], starting with a letter, not 'sw'"
            )
        if name in self.hosts or name in self.nats:
            raise ValueError(f"machine name {name!r} is taken")

    def _new_namespace(self, suffix: str) -> str:
        ns = f"{self.prefix}{self.run_id}-{suffix}"
        sh(["ip", "netns", "add", ns])
        self._namespaces.append(ns)
        self._ip(ns, "link", "set", "lo", "up")
        return ns

    def _ip(self, ns: str, *args: str) -> None:
        sh(["ip", "-n", ns, *args])

    def _veth(self, far_ns: str, far_if: str, ns: str, bridge: str) -> None:
        """A cable from `far_ns` (port `far_if` on `bridge`) to `ns` (as ``eth0``)."""
        self._ip(far_ns, "link", "add", far_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self._ip(far_ns, "link", "set", far_if, "master", bridge, "up")

    def _plug_public(self, ns: str, addr: str) -> str:
        self._ports += 1
        port = f"p{self._ports}"
        self._veth(self._switch, port, ns, "br0")
        own = next(net for net in PUBLIC_NETS if ipaddress.ip_address(addr) in net)
        self._ip(ns, "addr", "add", f"{addr}/{own.prefixlen}", "dev", "eth0")
        self._ip(ns, "link", "set", "eth0", "up")
        for net in PUBLIC_NETS:
            if net != own:
                self._ip(ns, "route", "add", str(net), "dev", "eth0")
        return port

    def _public_ips(self) -> set[str]:
        return {m.ip for m in self.nats.values()} | {
            h.ip for h in self.hosts.values() if h.behind is None
        }

    def _public_ip(
        self, ip: str | None, default_net: ipaddress.IPv4Network | ipaddress.IPv6Network
    ) -> str:
        if ip is not None and not any(ipaddress.ip_address(ip) in net for net in PUBLIC_NETS):
            raise ValueError(f"public address {ip} is outside 198.51.100.0/24 and 203.0.113.0/24")
        return self._pick(ip, default_net, self._public_ips(), start=10)

    @staticmethod
    def _pick(
        ip: str | None,
        net: ipaddress.IPv4Network | ipaddress.IPv6Network,
        used: set[str],
        *,
        start: int,
    ) -> str:
        if ip is not None:
            addr = ipaddress.ip_address(ip)
            if addr not in net or addr in (net.network_address, net.broadcast_address):
                raise ValueError(f"address {ip} is not a host address of {net}")
            if ip in used:
                raise ValueError(f"address {ip} is taken")
            return ip
        for candidate in net.hosts():
            if int(candidate) - int(net.network_address) >= start and str(candidate) not in used:
                return str(candidate)
        raise ValueError(f"no free address left in {net}")

    def _private_subnet(self, subnet: str | None) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        taken = [ipaddress.ip_network(n.private_subnet) for n in self.nats.values()]
        if subnet is None:
            for candidate in PRIVATE_NET.subnets(new_prefix=24):
                if not any(candidate.overlaps(t) for t in taken):
                    return candidate
            raise ValueError("no free /24 left in 10.77.0.0/16")
        net = ipaddress.ip_network(subnet)
        if not (
            isinstance(net, ipaddress.IPv4Network)
            and net.subnet_of(PRIVATE_NET)
            and net.prefixlen <= 28
        ):
            raise ValueError(f"private subnet {subnet} must be a /16../28 inside 10.77.0.0/16")
        if any(net.overlaps(t) for t in taken):
            raise ValueError(f"private subnet {subnet} overlaps another NAT's")
        return net

    def _require_iptables(self) -> None:
        ok, reason = iptables_available()
        if not ok:
            raise NetnsError(reason)

    def _iptables(self, ns: str, *args: str) -> None:
        sh(["ip", "netns", "exec", ns, "iptables", "-w", *args])

    def _ensure_chains(self, ns: str) -> None:
        if ns in self._filtered:
            return
        self._require_iptables()
        for chain in (PARTITION_CHAIN, LOSS_CHAIN):
            self._iptables(ns, "-N", chain)
            for hook in ("INPUT", "OUTPUT", "FORWARD"):
                self._iptables(ns, "-I", hook, "1", "-j", chain)
        self._filtered.add(ns)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


# -- safety net: close live worlds at interpreter exit and on SIGTERM / SIGHUP ------------------

_LIVE: list[NetnsWorld] = []
_PREVIOUS: dict[int, Any] = {}
_ATEXIT = False
_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def close_all() -> None:
    """Close every live world of this process (errors are reported, not raised)."""
    for world in list(_LIVE):
        try:
            world.close()
        except Exception as exc:
            print(f"netns teardown of {world.prefix}{world.run_id} failed: {exc}", file=sys.stderr)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    close_all()
    previous = _PREVIOUS.pop(signum, None)
    signal.signal(signum, signal.SIG_DFL if previous is None else previous)
    os.kill(os.getpid(), signum)


def _register(world: NetnsWorld) -> None:
    global _ATEXIT
    if not _ATEXIT:
        atexit.register(close_all)
        _ATEXIT = True
    if not _LIVE and threading.current_thread() is threading.main_thread():
        for signum in _SIGNALS:
            if signal.getsignal(signum) is not _on_signal:
                _PREVIOUS[signum] = signal.signal(signum, _on_signal)
    _LIVE.append(world)


def _unregister(world: NetnsWorld) -> None:
    if world in _LIVE:
        _LIVE.remove(world)
    if not _LIVE and threading.current_thread() is threading.main_thread():
        for signum in list(_PREVIOUS):
            previous = _PREVIOUS.pop(signum)
            if signal.getsignal(signum) is _on_signal:
                signal.signal(signum, signal.SIG_DFL if previous is None else previous)
