"""The namespace world: reachability, NAT, partitions, loss, link cuts, teardown, leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from tests.netns import (
    Host,
    LeftoversError,
    NetnsError,
    NetnsWorld,
    cleanup,
    leftovers,
    require_netns,
)
from tests.netns._system import lock_path, namespaces, root_links, sh
from tests.netns.echo import ECHO

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
PORT = 7000
#: A prefix only these tests use, so their fake leftovers never stop another run on the machine.
TEST_PREFIX = "p2ps"


def serve(host: Host) -> None:
    proc = host.run([*ECHO, "serve", str(PORT)])
    host.wait_port(PORT, proc=proc)


def ask(
    client: Host, server: Host | str, message: str = "hello", timeout: float = 0.5
) -> str | None:
    """The server's answer, or None when the connection failed (refused, unreachable, timed out)."""
    ip = server if isinstance(server, str) else server.ip
    done = client.exec([*ECHO, "ask", ip, str(PORT), message, str(timeout)], check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def names_of(world: NetnsWorld) -> list[str]:
    mark = f"{world.prefix}{world.run_id}"
    return [name for name in namespaces() + root_links() if name.startswith(mark)]


def test_two_public_hosts_talk_over_tcp(netns_world: NetnsWorld) -> None:
    a, b = netns_world.add_host("a"), netns_world.add_host("b", ip="198.51.100.77")
    router = netns_world.add_nat("r")  # 203.0.113.0/24 is on the same segment
    serve(a)
    serve(b)
    assert ask(a, b, "ping") == f"{a.ip} ping"
    assert ask(b, a, "pong") == f"{b.ip} pong"
    assert router.exec([*ECHO, "ask", a.ip, str(PORT), "r", "1"]).stdout.strip() == f"{router.ip} r"
    assert b.ip == "198.51.100.77"
    assert router.ip.startswith("203.0.113.")


def test_nothing_routes_out_of_the_world(netns_world: NetnsWorld) -> None:
    a = netns_world.add_host("a")
    nat = netns_world.add_nat("r")
    inside = netns_world.add_host("in", behind=nat)
    for machine in (a, nat):
        assert machine.exec(["ip", "route", "show", "default"]).stdout.strip() == ""
    assert inside.exec(["ip", "route", "show", "default"]).stdout.split()[:3] == [
        "default",
        "via",
        nat.lan_ip,
    ]
    assert a.exec(["ip", "-o", "link", "show", "lo"]).stdout.count("UP") >= 1
    # No link of the world lives in the root namespace, and an outside address is unreachable.
    assert not [name for name in root_links() if name.startswith(netns_world.prefix)]
    assert ask(a, "192.0.2.1") is None
    assert ask(inside, "192.0.2.1") is None


def test_nat_masquerades_outbound_and_refuses_inbound(netns_world: NetnsWorld) -> None:
    public = netns_world.add_host("pub")
    nat = netns_world.add_nat("home", public_ip="203.0.113.5", private_subnet="10.77.3.0/24")
    inside = netns_world.add_host("in", behind=nat)
    assert inside.ip.startswith("10.77.3.")
    assert inside.public_ip == "203.0.113.5"
    serve(public)
    serve(inside)
    assert ask(inside, public) == f"{nat.ip} hello"  # the public host sees the router
    assert ask(public, inside) is None  # no route to the private side
    # Even with a route to the private subnet via the router, new inbound connections are dropped.
    public.exec(["ip", "route", "add", nat.private_subnet, "via", nat.ip])
    assert ask(public, inside) is None
    assert ask(inside, public) == f"{nat.ip} hello"


def test_partition_blocks_and_heal_restores(netns_world: NetnsWorld) -> None:
    a, b, c = (netns_world.add_host(n) for n in ("a", "b", "c"))
    nat = netns_world.add_nat("r")
    inside = netns_world.add_host("in", behind=nat)
    for host in (a, b, c):
        serve(host)
    assert ask(a, b)
    assert ask(inside, b)
    netns_world.partition([a, inside], [b])
    assert ask(a, b) is None
    assert ask(b, a) is None
    assert ask(inside, b) is None
    assert ask(a, c)
    assert ask(b, c)
    assert ask(inside, c)
    netns_world.heal()
    assert ask(a, b) == f"{a.ip} hello"
    assert ask(b, a) == f"{b.ip} hello"
    assert ask(inside, b) == f"{nat.ip} hello"
    with pytest.raises(ValueError, match="both sides"):
        netns_world.partition([a], [a, b])


def test_loss_all_drops_and_none_passes(netns_world: NetnsWorld) -> None:
    a, b = netns_world.add_host("a"), netns_world.add_host("b")
    serve(b)
    netns_world.set_loss(a, 1.0)
    assert ask(a, b) is None
    netns_world.set_loss(a, 0.0)
    assert ask(a, b) == f"{a.ip} hello"
    netns_world.set_loss(a, 0.02)  # the random rule is accepted by this kernel's iptables
    assert "--probability 0.02" in a.exec(["iptables", "-S", "p2pt-loss"]).stdout
    with pytest.raises(ValueError, match="outside"):
        netns_world.set_loss(a, 1.5)


def test_link_down_cuts_and_link_up_restores(netns_world: NetnsWorld) -> None:
    a, b = netns_world.add_host("a"), netns_world.add_host("b")
    nat = netns_world.add_nat("r")
    inside = netns_world.add_host("in", behind=nat)
    serve(b)
    for machine in (a, inside):
        netns_world.link_down(machine)
        assert ask(machine, b) is None
        netns_world.link_up(machine)
        assert ask(machine, b, timeout=5.0) is not None


def test_wait_port_fails_early_when_the_process_dies(netns_world: NetnsWorld) -> None:
    a = netns_world.add_host("a")
    dead = a.run([sys.executable, "-S", "-c", "raise SystemExit(3)"])
    with pytest.raises(NetnsError, match=r"exited \(3\)"):
        a.wait_port(PORT, proc=dead, timeout=10.0)
    with pytest.raises(TimeoutError, match="nothing listens"):
        a.wait_port(PORT, timeout=0.2)


async def test_wait_port_async_sees_a_server_start(netns_world: NetnsWorld) -> None:
    a, b = netns_world.add_host("a"), netns_world.add_host("b")
    server = b.run([*ECHO, "serve", str(PORT)])
    with trio.fail_after(10):
        await b.wait_port_async(PORT, proc=server)
    assert not a.is_listening(PORT)
    assert ask(a, b) == f"{a.ip} hello"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_teardown_removes_everything_even_when_the_body_raises(error: type[BaseException]) -> None:
    require_netns()
    world = NetnsWorld()
    started: list[subprocess.Popen[bytes]] = []

    def body() -> None:
        with world:
            host = world.add_host("a")
            world.add_host("b", behind=world.add_nat("r"))
            started.append(host.run([*ECHO, "serve", str(PORT)]))
            host.wait_port(PORT, proc=started[0])
            assert len(names_of(world)) == 4  # switch, a, r, b
            raise error("boom")

    with pytest.raises(error, match="boom"):
        body()
    assert names_of(world) == []
    assert started[0].returncode is not None
    assert not lock_path(world.prefix, world.run_id).exists()
    with pytest.raises(NetnsError, match="inside"):
        world.add_host("c")


def test_sigterm_tears_down_and_still_terminates() -> None:
    require_netns()
    script = (
        "import sys\n"
        "from tests.netns import NetnsWorld\n"
        "from tests.netns.echo import ECHO\n"
        "world = NetnsWorld().__enter__()\n"
        "host = world.add_host('a')\n"
        f"child = host.run([*ECHO, 'serve', '{PORT}'])\n"
        f"host.wait_port({PORT}, proc=child)\n"
        "print(world.run_id, child.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        run_id, child_pid = proc.stdout.readline().split()
        assert any(name.startswith(f"p2pt{run_id}-") for name in namespaces())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
    assert not [name for name in namespaces() if name.startswith(f"p2pt{run_id}-")]
    deadline = time.monotonic() + 5.0
    while _alive(int(child_pid)):
        assert time.monotonic() < deadline, (
            "the server in the namespace survived SIGTERM of its owner"
        )
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_leftovers_refuse_start_until_cleaned_up() -> None:
    require_netns()
    stale = f"{TEST_PREFIX}0badc0-x"
    sh(["ip", "netns", "add", stale])
    try:
        assert leftovers(TEST_PREFIX) == [stale]
        with pytest.raises(LeftoversError, match=stale), NetnsWorld(prefix=TEST_PREFIX):
            pass  # pragma: no cover - never entered
        listed = subprocess.run(
            [sys.executable, "-m", "tests.netns", "--prefix", TEST_PREFIX],
            cwd=ROOT, capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        assert (listed.returncode, listed.stdout.split()) == (1, [stale])
        cleaned = subprocess.run(
            [sys.executable, "-m", "tests.netns", "--cleanup", "--prefix", TEST_PREFIX],
            cwd=ROOT, capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        assert cleaned.returncode == 0
        assert f"removed {stale}" in cleaned.stdout
        assert stale not in namespaces()
        # A live run is never a leftover: two worlds of one prefix run side by side.
        with NetnsWorld(prefix=TEST_PREFIX) as first:
            first.add_host("a")
            assert leftovers(TEST_PREFIX) == []
            with NetnsWorld(prefix=TEST_PREFIX) as second:
                second.add_host("a")
    finally:
        cleanup(TEST_PREFIX)
    assert not [name for name in namespaces() if name.startswith(TEST_PREFIX)]


def test_unavailable_namespaces_skip_only_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.netns as netns

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(netns, "available", lambda: (False, "network namespaces need root"))
    with pytest.raises(pytest.skip.Exception, match="need root"):
        require_netns()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(pytest.fail.Exception, match="running as root but"):
        require_netns()
    monkeypatch.setattr(netns, "available", lambda: (True, "ok"))
    monkeypatch.setattr(netns, "iptables_available", lambda: (False, "run `make netns-deps`"))
    with pytest.raises(pytest.fail.Exception, match="netns-deps"):
        require_netns()
