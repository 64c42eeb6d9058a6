"""The testnet's checks and figures, computed from a :class:`RunData` only.

A check is ``{"name", "passed", "expected_failure", "details"}``. ``expected_failure`` names
the open issue that owns a known failure; such a check failing does not fail the run, and
passing is reported too. None is expected today: NAT-to-NAT delivery (issue 14) goes
through relays or a hole-punched connection and is checked like every other pair.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.testnet.runner import RunData

__all__ = ["check_all", "figures", "percentiles"]

SETTLE_TARGET_S = 60.0


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    s = sorted(values)

    def at(q: float) -> float:
        return round(s[min(len(s) - 1, int(q * len(s)))], 3)

    return {"n": len(s), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(s[-1], 3)}


def _check(name: str, passed: bool, details: Any, expected: str | None = None) -> dict[str, Any]:
    return {"name": name, "passed": passed, "expected_failure": expected, "details": details}


def check_all(data: RunData) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    final = data.final
    pairs = {(p["a"], p["b"]): p for p in data.pairs}

    def pair_of(a: str, b: str) -> dict[str, Any]:
        return pairs.get((a, b)) or pairs[(b, a)]

    # DMs: every acknowledged one stored exactly once at its recipient.
    for a, b in pairs:
        for x, y in ((a, b), (b, a)):
            key = f"{x}>{y}"
            states = final.get("dm_state", {}).get(key, {})
            inbox = Counter(final.get("dm_inbox", {}).get(key, []))
            sent = [d for d in data.dms if d["from"] == x and d["to"] == y and "message_id" in d]
            acked = [d for d in sent if states.get(d["message_id"]) == "delivered"]
            missing = [d["text"] for d in acked if inbox[d["text"]] == 0]
            doubled = [d["text"] for d in acked if inbox[d["text"]] > 1]
            any_doubled = [t for t, n in inbox.items() if n > 1]
            checks.append(
                _check(
                    f"dm {key}: every acked DM stored exactly once at {y}",
                    bool(acked) and not missing and not doubled and not any_doubled,
                    {
                        "sent": len(sent),
                        "acked": len(acked),
                        "unacked": len(sent) - len(acked),
                        "missing": missing[:5],
                        "duplicated": (doubled or any_doubled)[:5],
                        "note": "" if acked else "no DM was acknowledged",
                    },
                )
            )
    for pair in data.pairs:
        hello = f"dm {pair['a']}>{pair['b']} #0"
        first = next((d for d in data.dms if d["text"] == hello), None)
        arrived = _arrival(data, pair["b"], hello)
        ok = first is not None and "t_sent" in first and arrived is not None
        checks.append(
            _check(
                f"first contact {pair['a']}>{pair['b']} through the DHT",
                ok,
                {"latency_s": round(arrived - first["t_sent"], 3) if ok and first else None},
            )
        )

    # Groups: every post at every current member, same order, equal hashes.
    for name, info in data.groups.items():
        result = final.get("groups", {}).get(name, {})
        members = result.get("members", [])
        at = result.get("at", {})
        accepted = [p for p in data.posts if p["group"] == name and "event_id" in p]
        hashes = {m: at.get(m, {}).get("history_hash") for m in members}
        lost_at: dict[str, int] = {}
        orders = set()
        for m in members:
            ids = [e["event_id"] for e in at.get(m, {}).get("history", [])]
            have = set(ids)
            lost = [p for p in accepted if p["event_id"] not in have]
            if lost:
                lost_at[m] = len(lost)
            orders.add(tuple(i for i in ids if i in {p["event_id"] for p in accepted}))
        checks.append(
            _check(
                f"group {name}: every accepted post at every current member",
                bool(accepted) and not lost_at,
                {"posts": len(accepted), "members": len(members), "missing_per_member": lost_at},
            )
        )
        checks.append(
            _check(
                f"group {name}: same order and equal history hashes at every member",
                len(orders) == 1 and len(set(hashes.values())) == 1 and None not in hashes.values(),
                {"distinct_hashes": len(set(hashes.values())), "distinct_orders": len(orders)},
            )
        )
        if info["join_failed"]:
            checks.append(_check(f"group {name}: every join succeeded", False, info["join_failed"]))
        for removed in info["removed"]:
            later = {p["event_id"] for p in accepted if p.get("t_sent", 0) > removed["at"] + 1.0}
            seen = [
                e for e in at.get(removed["node"], {}).get("history", []) if e["event_id"] in later
            ]
            checks.append(
                _check(
                    f"group {name}: removed {removed['node']} reads nothing posted after",
                    not seen,
                    {"later_posts": len(later), "seen": len(seen)},
                )
            )
    checks.append(
        _check(
            f"converged within {SETTLE_TARGET_S:.0f} s of the last heal",
            data.t_settled is not None and data.t_settled - data.t_healed <= SETTLE_TARGET_S,
            {
                "after_heal_s": None
                if data.t_settled is None
                else round(data.t_settled - data.t_healed, 1)
            },
        )
    )
    disk = data.scenario.disk_full
    marks = [e for e in data.timeline if e["kind"] in ("disk-fill", "disk-free")]
    if disk is not None and marks:
        fill = next((e for e in marks if e["kind"] == "disk-fill"), None)
        free = next((e for e in marks if e["kind"] == "disk-free"), None)
        window = (fill["t"], free["t"] + 5) if fill is not None and free is not None else (0, -1)
        refused = [
            d
            for d in data.dms
            if d["from"] == disk.node
            and "error" in d
            and window[0] <= d["t_sent"] - data.t0 <= window[1]
        ]
        checks.append(
            _check(
                f"disk-full {disk.node}: stays up with a full disk, refuses sends with a "
                "typed error, delivers again once freed",
                fill is not None
                and free is not None
                and fill.get("avail_kib") == 0
                and fill["alive"]
                and free["alive"]
                and final.get("exit_codes", {}).get(disk.node) == 0,
                {
                    "fill": fill,
                    "free": free,
                    "sends_refused_while_full": len(refused),
                    "errors": sorted({d["error"][:80] for d in refused}),
                },
            )
        )
    codes = final.get("exit_codes", {})
    checks.append(
        _check(
            "every node exits cleanly on SIGTERM",
            all(c == 0 for c in codes.values()),
            {n: c for n, c in codes.items() if c != 0},
        )
    )
    return checks


def _arrival(data: RunData, node: str, text: str) -> float | None:
    for a in data.arrivals:
        if a.node == node and a.text == text:
            return a.at
    return None


def figures(data: RunData) -> dict[str, Any]:
    """Latency distributions, per-node CPU per delivered message, RSS/fd/connection figures."""
    first_at: dict[tuple[str, str], float] = {}
    for a in data.arrivals:
        first_at.setdefault((a.node, a.text), a.at)
    dm_lat = [
        first_at[(d["to"], d["text"])] - d["t_sent"]
        for d in data.dms
        if "t_sent" in d and not d["first"] and (d["to"], d["text"]) in first_at
    ]
    first_lat = [
        first_at[(d["to"], d["text"])] - d["t_sent"]
        for d in data.dms
        if "t_sent" in d and d["first"] and (d["to"], d["text"]) in first_at
    ]
    group_lat: list[float] = []
    members = {g: set(v.get("members", [])) for g, v in data.final.get("groups", {}).items()}
    for p in data.posts:
        if "event_id" not in p:
            continue
        for m in members.get(p["group"], set()) - {p["author"]}:
            got = first_at.get((m, p["text"]))
            if got is not None:
                group_lat.append(got - p["t_sent"])
    delivered = Counter(a.node for a in data.arrivals)
    cpu = data.final.get("cpu_s", {})
    per_node: dict[str, Any] = {}
    for name in data.nodes:
        rows = [s for s in data.samples if s["node"] == name]
        sent = sum(1 for d in data.dms if d["from"] == name and "message_id" in d)
        sent += sum(1 for p in data.posts if p["author"] == name and "event_id" in p)
        handled = delivered[name] + sent
        per_node[name] = {
            "cpu_s": round(cpu.get(name, 0.0), 2),
            "messages_in": delivered[name],
            "messages_out": sent,
            "cpu_ms_per_message": round(1000 * cpu.get(name, 0.0) / handled, 1)
            if handled
            else None,
            "rss_mib_max": round(max((s["rss_mib"] for s in rows), default=0.0), 1),
            "rss_mib_last": round(rows[-1]["rss_mib"], 1) if rows else None,
            "fds_max": int(max((s["fds"] for s in rows), default=0)),
            "connected_max": max((s.get("connected", 0) for s in rows), default=0),
            "tcp_established_max": max((s.get("CurrEstab", 0) for s in rows), default=0),
            "listen_drops": max((s.get("ListenDrops", 0) for s in rows), default=0),
            "listen_overflows": max((s.get("ListenOverflows", 0) for s in rows), default=0),
            "unreachable_max": max((s.get("unreachable", 0) for s in rows), default=0),
            "restarts": sum(
                1 for e in data.timeline if e["kind"] == "restart" and e.get("node") == name
            ),
        }
    return {
        "latency_s": {
            "dm": percentiles(dm_lat),
            "group": percentiles(group_lat),
            "first_contact": percentiles(first_lat),
        },
        "raw_latency_s": {"dm": dm_lat, "group": group_lat, "first_contact": first_lat},
        "nodes": per_node,
        "dms": {
            "sent": sum(1 for d in data.dms if "t_sent" in d),
            "accepted_by_sender": sum(1 for d in data.dms if "message_id" in d),
            "send_errors": sum(1 for d in data.dms if "error" in d),
        },
        "posts": {
            "sent": len(data.posts),
            "accepted": sum(1 for p in data.posts if "event_id" in p),
            "errors": sum(1 for p in data.posts if "error" in p),
        },
    }
