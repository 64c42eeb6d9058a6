"""NAT traversal measurements in network namespaces (root): relayed vs direct, hole punching.

    python -m bench.nat_bench [--rounds 5] [--messages 50]

Per round: a public relay, two hosts behind two different MASQUERADE routers. The target
waits until it holds a reservation (time to "reachable via relay"), the source dials it
knowing only its advertised addresses, measures a 64-byte echo round trip over the relayed
connection and the relay's CPU time per relayed message, then waits up to 10 s for DCUtR
to turn the connection direct and measures again. Prints one JSON object per round and a
summary. docs/networking.md ("Behind NAT") quotes the results.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

PROTO = "/p2pchat-bench/echo/1"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children that were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _node(role: str, shared: Path, messages: int) -> None:
    import trio

    from p2pchat.net.config import NetConfig
    from p2pchat.net.libp2p_host import open_libp2p_network

    if os.environ.get("NAT_BENCH_DEBUG"):  # DCUtR's own account of each hole punch
        import logging

        dcutr = logging.getLogger("libp2p.relay.circuit_v2.dcutr")
        dcutr.setLevel(logging.DEBUG)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"%(asctime)s {role} %(message)s"))
        dcutr.addHandler(handler)
    boot = () if role == "relay" else ((shared / "relay").read_text().strip(),)
    seed = {"relay": b"\x31", "target": b"\x32", "source": b"\x33"}[role] * 32
    started = trio.current_time()
    async with open_libp2p_network(seed, NetConfig(bootstrap=boot), jitter=random.Random(1)) as net:
        assert net.nat is not None

        async def echo(stream: Any) -> None:
            while (frame := await stream.read_frame(1024)) is not None:
                await stream.write_frame(frame)

        net.set_stream_handler(PROTO, echo)
        if role == "relay":
            (shared / "relay").write_text(net.listen_addrs[0])
            await trio.sleep_forever()
        if role == "target":
            await _until(lambda: [a for a in net.listen_addrs if "/p2p-circuit" in a])
            out = {"reachable_via_relay_s": trio.current_time() - started}
            (shared / "target.json").write_text(
                json.dumps({**out, "peer_id": net.peer_id, "addrs": net.listen_addrs})
            )
            await trio.sleep_forever()
        target = json.loads((shared / "target.json").read_text())
        await net.connect(target["peer_id"], target["addrs"])
        result: dict[str, Any] = {"reachable_via_relay_s": target["reachable_via_relay_s"]}

        async def rtts() -> list[float]:
            stream = await net.open_stream(target["peer_id"], PROTO)
            out = []
            for _ in range(messages):
                t0 = trio.current_time()
                await stream.write_frame(b"x" * 64)
                await stream.read_frame(1024)
                out.append(trio.current_time() - t0)
            await stream.close()
            return out

        result["first_path"] = net.connection_paths().get(target["peer_id"])
        (shared / "cpu-start").write_text("")
        await _until((shared / "cpu-ready").exists)
        relayed = await rtts()
        (shared / "cpu-stop").write_text("")
        result["relayed_rtt_ms_p50"] = statistics.median(relayed) * 1000
        with trio.move_on_after(10):
            await _until(lambda: net.connection_paths().get(target["peer_id"]) == "direct")
        result["path_after_10s"] = net.connection_paths().get(target["peer_id"])
        if result["path_after_10s"] == "direct":
            result["direct_rtt_ms_p50"] = statistics.median(await rtts()) * 1000
        stats = net.statistics()
        result["hole_punch_attempted"] = stats.get("hole_punch_attempted_peers")
        result["hole_punch_direct"] = stats.get("hole_punch_direct_peers")
        (shared / "result.json").write_text(json.dumps(result))


async def _until(probe: Any) -> None:
    """Poll: the state lives in another process or in py-libp2p, with no event to wait on."""
    import trio

    while not probe():  # noqa: ASYNC110 - another process, or py-libp2p state
        await trio.sleep(0.02)


def _round(messages: int, *, stealth: bool) -> dict[str, Any]:
    from tests.netns import NetnsWorld

    with NetnsWorld() as world, tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        shared = Path(tmp)
        relay_host = world.add_host("relay")
        nat_a, nat_b = world.add_nat("nata"), world.add_nat("natb")
        if stealth:  # like most home routers: unsolicited inbound is dropped, not refused
            for nat in (nat_a, nat_b):
                nat.exec(["iptables", "-w", "-A", "INPUT", "-i", "eth0", "-m", "conntrack",
                          "--ctstate", "NEW", "-j", "DROP"])  # fmt: skip
        hosts = {
            "target": world.add_host("target", behind=nat_a),
            "source": world.add_host("source", behind=nat_b),
        }
        me = [sys.executable, "-m", "bench.nat_bench", "--role"]
        log = stack.enter_context(
            Path(os.environ.get("NAT_BENCH_DEBUG") or shared / "log").open("a")
        )
        relay = relay_host.run([*me, "relay", str(shared), str(messages)], stdout=log, stderr=log)
        _wait(lambda: (shared / "relay").exists(), 60)
        hosts["target"].run([*me, "target", str(shared), str(messages)], stdout=log, stderr=log)
        _wait(lambda: (shared / "target.json").exists(), 60)
        hosts["source"].run([*me, "source", str(shared), str(messages)], stdout=log, stderr=log)
        _wait(lambda: (shared / "cpu-start").exists(), 60)
        node_pid = relay.pid  # ``ip netns exec`` execs the node in place
        cpu0 = _cpu_seconds(node_pid)
        (shared / "cpu-ready").write_text("")
        _wait(lambda: (shared / "cpu-stop").exists(), 60)
        cpu = _cpu_seconds(node_pid) - cpu0
        _wait(lambda: (shared / "result.json").exists(), 60)
        result: dict[str, Any] = json.loads((shared / "result.json").read_text())
        # Each round trip is two relayed messages (there and back).
        result["relay_cpu_ms_per_message"] = cpu * 1000 / (2 * messages)
        return result


def _wait(probe: Any, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError("a bench node did not get there in time")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument(
        "--stealth",
        action="store_true",
        help="routers drop unsolicited inbound packets (default: Linux answers with RST)",
    )
    parser.add_argument("--role", nargs=3, metavar=("ROLE", "DIR", "MESSAGES"))
    args = parser.parse_args(argv)
    if args.role:
        import trio

        role, shared, messages = args.role
        trio.run(_node, role, Path(shared), int(messages))
        return 0
    results = []
    for _ in range(args.rounds):
        results.append(_round(args.messages, stealth=args.stealth))
        print(json.dumps(results[-1]), flush=True)
    punched = sum(r.get("path_after_10s") == "direct" for r in results)
    summary: dict[str, Any] = {
        "rounds": len(results),
        "routers": "drop unsolicited" if args.stealth else "refuse unsolicited (RST)",
        "hole_punch_success": f"{punched}/{len(results)}",
        "reachable_via_relay_s_p50": statistics.median(r["reachable_via_relay_s"] for r in results),
    }
    # DCUtR may have upgraded the connection before the relayed measurement started.
    relayed = [r for r in results if r["first_path"] == "relayed"]
    if relayed:
        summary["relayed_rtt_ms_p50"] = statistics.median(r["relayed_rtt_ms_p50"] for r in relayed)
        summary["relay_cpu_ms_per_message_p50"] = statistics.median(
            r["relay_cpu_ms_per_message"] for r in relayed
        )
    direct = [r["direct_rtt_ms_p50"] for r in results if "direct_rtt_ms_p50" in r]
    if direct:
        summary["direct_rtt_ms_p50"] = statistics.median(direct)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
