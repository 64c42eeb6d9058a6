"""``p2pchat status`` and ``p2pchat peers``: what the running node is doing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from ._client import call
from ._output import address_row, emit_json, show_lines, show_panel, show_table
from ._state import CliState, json_option, pass_state, wide_option

__all__ = ["status", "peers"]


def _duration(ms: int) -> str:
    seconds = ms // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"


def _reasons(counts: dict[str, int]) -> str:
    """``bad-signature 3, not-member 1`` (group messages refused, most frequent first)."""
    if not counts:
        return "none"
    return ", ".join(f"{reason} {count}" for reason, count in counts.items())


@click.command()
@json_option
@pass_state
def status(state: CliState) -> None:
    """Show the running node: who it is, where it listens, peers and unread messages.

    \b
    JSON: {"version", "account", "fingerprint", "device", "peer_id",
           "listen_addrs", "uptime_ms", "connected_peers", "nearby_peers",
           "conversations", "unread", "contact_requests", "records_published_at",
           "rejected": {reason: count},  (group messages refused, by reason)
           "unreachable": [{"peer_id", "reason"}, ...],  (peers whose last dial failed)
           "reachability": "public" | "private" | "unknown",  (AutoNAT)
           "relays": [peer_id, ...],  (relays we hold reservations with, behind NAT)
           "penalties": {reason: count},  (invalid gossip or stream frames, by reason)
           "graylisted": int}  (repeat offenders disconnected and not dialled for now)
    """
    info = call(state, "node.status")
    if state.json:
        emit_json(info)
        return
    published = info["records_published_at"]
    listening, below = address_row(info["listen_addrs"])
    conversations = info["conversations"]
    rows = [
        ("Fingerprint", info["fingerprint"]),
        ("Account key", info["account"]),
        ("Peer ID", info["peer_id"]),
        ("Listening", listening),
        ("Up for", _duration(info["uptime_ms"])),
        ("Peers", f"{info['connected_peers']} connected, {info['nearby_peers']} nearby"),
        ("Reachable", _reachable(info)),
        (
            "Messages",
            f"{info['unread']} unread in {conversations} "
            + ("conversation" if conversations == 1 else "conversations"),
        ),
        ("Requests", str(info["contact_requests"])),
        (
            "Published",
            datetime.fromtimestamp(published / 1000, tz=UTC).strftime("%H:%M:%S UTC")
            if published
            else "not yet",
        ),
        ("Rejected", _reasons(info.get("rejected") or {})),
        (
            "Penalised",
            _reasons(info.get("penalties") or {})
            + (f"; {info['graylisted']} peers graylisted" if info.get("graylisted") else ""),
        ),
        ("Version", info["version"]),
    ]
    unreachable = info.get("unreachable") or []
    if unreachable:
        lines = [f"{u['peer_id'][-8:]}: {u['reason']}" for u in unreachable[:5]]
        more = len(unreachable) - len(lines)
        rows.append(("Unreachable", "\n".join(lines) + (f"\n… and {more} more" if more else "")))
    show_panel("p2pchat node", rows)
    show_lines(below)


def _reachable(info: dict[str, Any]) -> str:
    """AutoNAT's verdict, and the relays a node behind NAT is reached through."""
    status = info.get("reachability") or "unknown"
    relays = info.get("relays") or []
    if status == "private":
        via = ", ".join(r[-8:] for r in relays) if relays else "no relay yet"
        return f"behind NAT, through relays: {via}"
    return {"public": "yes, directly", "unknown": "not known yet"}.get(status, status)


@click.command()
@wide_option
@json_option
@pass_state
def peers(state: CliState) -> None:
    """List connected peers and peers seen on the local network (--nearby).

    \b
    JSON: {"connected": [{"peer_id", "path": "direct" | "relayed"}, ...],
           "nearby": [{"peer_id", "addrs"}, ...]}
    """
    found = call(state, "peers.list")
    if state.json:
        emit_json(found)
        return
    connected = [
        (p["peer_id"], "connected" + (" (relayed)" if p.get("path") == "relayed" else ""), "")
        for p in found["connected"]
    ]
    nearby = [(p["peer_id"], "nearby", "\n".join(p["addrs"])) for p in found["nearby"]]
    show_table(
        None,
        ("Peer ID", "Seen", "Addresses"),
        connected + nearby,
        empty="No peers connected or nearby.",
        no_wrap=("Peer ID",),
    )
