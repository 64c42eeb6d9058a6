"""The testnet's report: ``report.json``, ``report.md`` and pictures (matplotlib, dev extra)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tests.testnet.runner import RunData

__all__ = ["write_report"]


def write_report(
    data: RunData, checks: list[dict[str, Any]], figs: dict[str, Any], out: Path
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    sc = data.scenario
    failed = [c for c in checks if not c["passed"] and not c["expected_failure"]]
    xfailed = [c for c in checks if not c["passed"] and c["expected_failure"]]
    xpassed = [c for c in checks if c["passed"] and c["expected_failure"]]
    summary = {
        "ok": not failed,
        "mode": data.testbed.get("mode"),
        "scenario": {k: v for k, v in asdict(sc).items()},
        "testbed": data.testbed,
        "cpu_cores": os.cpu_count(),
        "startup_s": round(data.startup_s, 1),
        "traffic_s": round(data.t_end - data.t0, 1) if data.t_end else None,
        "settled_after_heal_s": None
        if data.t_settled is None
        else round(data.t_settled - data.t_healed, 1),
        "checks": checks,
        "failed": len(failed),
        "expected_failures": len(xfailed),
        "unexpectedly_passed": len(xpassed),
        "figures": {k: v for k, v in figs.items() if k != "raw_latency_s"},
        "latencies_raw_s": figs["raw_latency_s"],
        "timeline": data.timeline,
        "errors": data.errors,
        "samples": data.samples,
        "dms": data.dms,
        "posts": data.posts,
        "groups": data.groups,
        "pairs": data.pairs,
        "nodes": data.nodes,
        "dm_paths": data.final.get("paths", {}),
    }
    (out / "report.json").write_text(json.dumps(summary, indent=1, default=str))
    pictures = _pictures(data, figs, out)
    (out / "report.md").write_text(_markdown(summary, pictures))
    return summary


def _markdown(s: dict[str, Any], pictures: list[str]) -> str:
    sc = s["scenario"]
    lines = []
    if s["mode"] == "loopback":
        lines.append(
            "> **LOOPBACK MODE**: every node on this host's 127.0.0.1, a port each. "
            "No namespaces, no NAT, no loss, no partitions: those parts of the scenario were "
            "NOT emulated.\n"
        )
    verdict = "PASSED" if s["ok"] else "FAILED"
    lines.append(f"# Testnet report: `{sc['name']}` — {verdict}\n")
    nat_hosts = sum(n["hosts"] for n in sc["nats"])
    lines.append(
        f"- {sc['public'] + nat_hosts} nodes ({nat_hosts} behind {len(sc['nats'])} NAT "
        f"routers), {sc['seeds']} seed(s), loss {sc['loss'] * 100:.0f} % per link and direction, "
        f"mode **{s['mode']}**, {s['cpu_cores']} CPU cores shared with other work"
    )
    lines.append(
        f"- traffic phase {s['traffic_s']} s (scenario {sc['duration_s']:.0f} s); start-up of "
        f"all nodes {s['startup_s']} s; converged {s['settled_after_heal_s']} s after the "
        f"last heal (limit {sc['settle_s']:.0f} s)"
    )
    lines.append(
        f"- {len(sc['kills'])} kills/restarts, {len(sc['partitions'])} partition(s), "
        f"{len(sc['dms'])} DM pairs, {len(sc['groups'])} groups; no latency emulation "
        "(`tc netem` is not available in this kernel)"
    )
    f = s["figures"]
    lines.append(
        f"- DMs sent {f['dms']['sent']}, accepted by the sender's node "
        f"{f['dms']['accepted_by_sender']}; group posts {f['posts']['sent']}, accepted "
        f"{f['posts']['accepted']}"
    )
    lines.append(
        f"- checks: {s['failed']} failed, {s['expected_failures']} expected failures, "
        f"{s['unexpectedly_passed']} expected-to-fail checks passed\n"
    )
    lines.append("## Latency (seconds, sender's call to the recipient's event)\n")
    lines.append("| what | n | p50 | p90 | p99 | max |")
    lines.append("|---|---|---|---|---|---|")
    for key, lat in f["latency_s"].items():
        lines.append(
            f"| {key} | {lat['n']} | {lat['p50']} | {lat['p90']} | {lat['p99']} | {lat['max']} |"
        )
    lines.append("\n## Checks\n")
    lines.append("| check | result | details |")
    lines.append("|---|---|---|")
    for c in s["checks"]:
        if c["passed"]:
            res = "pass" + (" (expected to fail!)" if c["expected_failure"] else "")
        else:
            res = (
                f"expected failure: {c['expected_failure']}"
                if c["expected_failure"]
                else "**FAIL**"
            )
        details = json.dumps(c["details"], default=str)
        lines.append(f"| {c['name']} | {res} | `{details[:160]}` |")
    lines.append("\n## Per node\n")
    lines.append(
        "| node | NAT | restarts | CPU s | msgs in/out | CPU ms/msg | RSS max MiB | fds max | "
        "peers max | TCP estab max | listen drops | unreachable max |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, n in f["nodes"].items():
        nat = s["nodes"].get(name, {}).get("nat") or ""
        lines.append(
            f"| {name} | {nat} | {n['restarts']} | {n['cpu_s']} | {n['messages_in']}/"
            f"{n['messages_out']} | {n['cpu_ms_per_message']} | {n['rss_mib_max']} | "
            f"{n['fds_max']} | {n['connected_max']} | {n['tcp_established_max']} | "
            f"{n['listen_drops']} | {n['unreachable_max']} |"
        )
    if s["dm_paths"]:
        lines.append("\n## DM paths at the end (sender's view)\n")
        for key, path in s["dm_paths"].items():
            lines.append(f"- {key}: {path}")
    lines.append("\n## Timeline\n")
    for e in s["timeline"]:
        if e["kind"] in (
            "kill",
            "restarting",
            "restart",
            "disk-fill",
            "disk-free",
            "partition",
            "heal",
            "join",
            "leave",
            "remove",
            "all-healed",
            "converged",
            "not-converged",
            "restart-failed",
            "first-contact-timeout",
            "traffic-start",
            "traffic-end",
        ):
            rest = {k: v for k, v in e.items() if k not in ("t", "kind")}
            lines.append(f"- {e['t']:.1f} s {e['kind']} {rest if rest else ''}")
    if s["errors"]:
        lines.append(f"\n## Errors ({len(s['errors'])}, first 30)\n")
        lines += [f"- `{e[:200]}`" for e in s["errors"][:30]]
    if pictures:
        lines.append("\n## Pictures\n")
        lines += [f"![{p}]({p})" for p in pictures]
    return "\n".join(lines) + "\n"


def _pictures(data: RunData, figs: dict[str, Any], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    names: list[str] = []

    def marks(ax: Any) -> None:
        starts: dict[str, float] = {}
        for e in data.timeline:
            if e["kind"] == "kill":
                ax.axvline(e["t"], color="red", alpha=0.3, lw=0.8)
            elif e["kind"] == "partition":
                starts["p"] = e["t"]
            elif e["kind"] == "heal" and "p" in starts:
                ax.axvspan(starts.pop("p"), e["t"], color="orange", alpha=0.15)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, values in figs["raw_latency_s"].items():
        if values:
            s = sorted(values)
            ax.plot(s, [(i + 1) / len(s) for i in range(len(s))], label=f"{key} (n={len(s)})")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("latency, s (symlog)")
    ax.set_ylabel("fraction delivered")
    ax.set_title(f"{data.scenario.name}: latency CDFs")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency_cdf.png", dpi=110)
    plt.close(fig)
    names.append("latency_cdf.png")

    for metric, label, file in (
        ("rss_mib", "RSS, MiB", "rss.png"),
        ("fds", "open fds", "fds.png"),
        ("connected", "connected peers", "peers.png"),
    ):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for name in data.nodes:
            rows = [s for s in data.samples if s["node"] == name and metric in s]
            if rows:
                ax.plot([r["t"] for r in rows], [r[metric] for r in rows], lw=0.9, label=name)
        marks(ax)
        ax.set_xlabel("s since traffic start (red: kills, orange: partition)")
        ax.set_ylabel(label)
        ax.set_title(f"{data.scenario.name}: {label} per node")
        ax.grid(alpha=0.3)
        if len(data.nodes) <= 12:
            ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(out / file, dpi=110)
        plt.close(fig)
        names.append(file)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for kind, label in (("dm.received", "DMs received"), ("group.message", "group posts received")):
        ts = [a.at - data.t0 for a in data.arrivals if a.type == kind]
        if ts:
            ax.plot(ts, range(1, len(ts) + 1), label=label)
    sent_dm = sorted(d["t_sent"] - data.t0 for d in data.dms if "message_id" in d)
    if sent_dm:
        ax.plot(sent_dm, range(1, len(sent_dm) + 1), "--", label="DMs sent", alpha=0.7)
    marks(ax)
    ax.set_xlabel("s since traffic start (red: kills, orange: partition)")
    ax.set_ylabel("cumulative count")
    ax.set_title(f"{data.scenario.name}: delivery over time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "delivery.png", dpi=110)
    plt.close(fig)
    names.append("delivery.png")
    return names
