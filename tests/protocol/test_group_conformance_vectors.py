"""The group-engine conformance vectors (protocol-spec/vectors/groups/) replayed against
our engine in every delivery order each scenario lists; the invite -> join pairs and the
tag-folding vectors; and a regeneration that must reproduce the committed files."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from p2pchat.errors import WireError
from p2pchat.protocol.group_engine import GroupEngine
from p2pchat.protocol.group_events import EVENT_KINDS, InnerEvent, decode_event, event_id_of
from p2pchat.protocol.group_invite import InviteToken
from p2pchat.protocol.group_log import GroupError
from p2pchat.protocol.records import dht_key, fold_tag, topic_key
from p2pchat_crypto.kdf import blake2b

VECTORS = Path(__file__).resolve().parents[2] / "protocol-spec" / "vectors"
GROUPS = VECTORS / "groups"
SCENARIOS: list[dict[str, Any]] = json.loads((GROUPS / "scenarios.json").read_text())["scenarios"]
CASES = [(s, i) for s in SCENARIOS for i in range(len(s["orders"]))]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_gen_groups", VECTORS / "gen_groups.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _replay(scenario: dict[str, Any], order: list[str]) -> tuple[GroupEngine, dict[str, str]]:
    events = {e["label"]: bytes.fromhex(e["hex"]) for e in scenario["events"]}
    engine = GroupEngine.from_genesis(
        bytes.fromhex(scenario["genesis"]), group_id=bytes.fromhex(scenario["group"])
    )
    refused: dict[str, str] = {}
    for label in order:
        try:
            engine.receive(events[label], now=scenario["now"])
        except (GroupError, WireError) as exc:
            refused[label] = exc.reason
    for label, inner in scenario["plaintexts"].items():
        data = bytes.fromhex(inner)
        engine.provide_plaintext(
            event_id_of(events[label]), InnerEvent.from_bytes(data, max_size=len(data))
        )
    return engine, refused


def _observed(scenario: dict[str, Any], engine: GroupEngine) -> dict[str, Any]:
    """What the vectors expect, read off the engine (by label and account hex)."""
    labels = {bytes.fromhex(e["id"]): e["label"] for e in scenario["events"]}
    labels[bytes.fromhex(scenario["group"])] = "genesis"
    names = {bytes.fromhex(a["account"]): n for n, a in scenario["actors"].items()}
    state, view = engine.state, engine.view
    ordered = [s.event_id for s in engine.ordered_events()]
    return {
        "order": [labels[i] for i in ordered],
        "effective": [labels[i] for i in ordered if engine.is_effective(i)],
        "members": {names[k]: r for k, r in state.members.items()},
        "banned": {names[k]: u for k, u in state.banned.items()},
        "pending": sorted(names[k] for k in state.pending),
        "epoch": state.epoch,
        "forked": {d.hex(): q for d, q in engine.log.frozen.items()},
        "history_hash": engine.history_hash().hex(),
        "messages": [
            (
                labels[m.ref.event_id],
                m.kind,
                names[m.ref.account],
                m.text,
                m.edited,
                m.deleted,
                m.sealed,
                {e: sorted(names[a] for a in accts) for e, accts in m.reactions.items()},
            )
            for m in view.messages
        ],
        "polls": {labels[k]: list(t.counts) for k, t in view.polls.items()},
        "buys": {labels[k]: (list(b.units), b.reached) for k, b in view.buys.items()},
    }


def _expected(scenario: dict[str, Any]) -> dict[str, Any]:
    x = scenario["expect"]
    return {
        "order": x["order"],
        "effective": x["effective"],
        "members": {m["name"]: m["role"] for m in x["members"]},
        "banned": {b["name"]: b["until"] for b in x["banned"]},
        "pending": sorted(p["name"] for p in x["pending"]),
        "epoch": x["epoch"],
        "forked": {f["device"]: f["seq"] for f in x["forked"]},
        "history_hash": x["history_hash"],
        "messages": [
            (
                m["id"],
                m["kind"],
                m["author"],
                m["text"],
                m["edited"],
                m["deleted"],
                m["sealed"],
                m["reactions"],
            )
            for m in x["messages"]
        ],
        "polls": {k: p["counts"] for k, p in x["polls"].items()},
        "buys": {k: (b["units"], b["reached"]) for k, b in x["buys"].items()},
    }


@pytest.mark.parametrize(
    ("scenario", "order"), CASES, ids=[f"{s['name']}-order{i}" for s, i in CASES]
)
def test_every_delivery_order_reaches_the_expected_state(
    scenario: dict[str, Any], order: int
) -> None:
    engine, refused = _replay(scenario, scenario["orders"][order])
    assert _observed(scenario, engine) == _expected(scenario)
    if order == 0:
        assert refused == scenario["expect"]["refused"]
    else:
        assert set(refused) <= set(scenario["expect"]["refused"])


def test_the_history_hash_is_the_chain_over_effective_ids() -> None:
    """groups.md §3, recomputed from the vector data alone (no engine)."""
    for scenario in SCENARIOS:
        ids = {e["label"]: bytes.fromhex(e["id"]) for e in scenario["events"]}
        ids["genesis"] = bytes.fromhex(scenario["group"])
        digest = bytes(32)
        for label in scenario["expect"]["effective"]:
            digest = blake2b(digest + ids[label], size=32, person=b"p2pchat-hist")
        assert digest.hex() == scenario["expect"]["history_hash"], scenario["name"]


def test_the_scenarios_cover_every_kind_and_every_refusal() -> None:
    kinds = {decode_event(bytes.fromhex(e["hex"])).kind for s in SCENARIOS for e in s["events"]} | {
        InnerEvent.from_bytes(bytes.fromhex(h), max_size=4096).kind
        for s in SCENARIOS
        for h in s["plaintexts"].values()
    }
    assert set(EVENT_KINDS) - {"genesis"} <= kinds
    refusals = {r for s in SCENARIOS for r in s["expect"]["refused"].values()}
    assert {
        "wrong-group",
        "bad-kind",
        "from-future",
        "bad-deps",
        "broken-chain",
        "bad-lamport",
        "ts-regress",
        "missing-cert",
        "bad-cert",
        "account-mismatch",
        "bad-signature",
    } <= refusals
    assert any(s["expect"]["forked"] for s in SCENARIOS)
    assert all(len(s["orders"]) >= 2 for s in SCENARIOS)


def test_invite_join_pairs() -> None:
    pairs = json.loads((GROUPS / "invites.json").read_text())["pairs"]
    assert any(p["join_effective"] for p in pairs)
    for pair in pairs:
        secret = bytes.fromhex(pair["secret"])
        inv = blake2b(secret, size=32, person=b"p2pchat-invite")
        assert inv.hex() == pair["inv"]
        assert InviteToken.from_text(pair["token"]).secret == secret
        invite = decode_event(bytes.fromhex(pair["invite"]["hex"]))
        join = decode_event(bytes.fromhex(pair["join"]["hex"]))
        assert invite.parsed.invite == inv  # type: ignore[union-attr]
        assert join.parsed.secret == secret  # type: ignore[union-attr]


def test_tag_vectors() -> None:
    data = json.loads((GROUPS / "tags.json").read_text())
    assert any(not t["tag"].isascii() for t in data["tags"])
    for vector in data["tags"]:
        assert fold_tag(vector["tag"]) == vector["folded"]
        assert topic_key(vector["tag"]).hex() == vector["topic_key"]
        assert dht_key("topic", topic_key(vector["tag"])) == vector["dht_key"]
    keys = {t["tag"]: t["topic_key"] for t in data["tags"]}
    assert keys["Café"] == keys["Cafe\u0301"]
    assert keys["Straße"] != keys["STRASSE"]


def test_committed_vectors_equal_a_fresh_generation() -> None:
    for relative, text in _generator().generate().items():
        assert (VECTORS / relative).read_text() == text, f"{relative} is stale: make vectors"
