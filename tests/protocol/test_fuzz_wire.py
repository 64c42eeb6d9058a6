"""Fuzzing the wire codec in the normal suite: generated and mutated frames.

Two sources of frames:

* hypothesis strategies derived from the message classes' field schemas (round trip,
  CDDL agreement, and arbitrary CBOR maps thrown at every class);
* a cheap, seeded byte-level mutation loop over the committed valid vectors and over
  frames generated from the same schemas (bit flips, truncation, insertion, deletion,
  splicing, CBOR length-field edits, magic bytes). ``P2PCHAT_FUZZ_EXAMPLES`` frames per
  run (default 100,000; ``make fuzz`` runs 2,000,000).

The invariants: every input either decodes or raises ``WireError`` (no other exception,
no crash); everything accepted is canonical CBOR by an independent encoder; nothing but
an original frame both decodes and passes its signature checks. Decode-time statistics
are printed (``pytest -s``), never asserted: timing belongs in ``bench/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import random
import statistics
import time
from array import array
from collections.abc import Callable
from functools import cache
from typing import Any

import cbor2
import pycddl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from p2pchat.errors import WireError
from p2pchat.protocol import codec as c
from p2pchat.protocol.content import KNOWN_TYPES, Content
from p2pchat.protocol.dm_messages import DM_KINDS, DmPlaintext
from p2pchat.protocol.envelope import decode_envelope
from p2pchat.protocol.group_events import EVENT_KINDS, InnerEvent, decode_event
from p2pchat.protocol.mailbox import (
    MAILBOX_KINDS,
    MailboxDelete,
    MailboxFetch,
    decode_mailbox_frame,
    open_for_tag,
)
from p2pchat.protocol.records import RECORD_BODIES, decode_record
from p2pchat.protocol.schema import full_schema, kind_rule
from p2pchat.protocol.sync_messages import SYNC_KINDS, SyncBatch, authenticate_run
from p2pchat_crypto import cbor
from tests.conftest import DeterministicRng
from tests.protocol.test_wire_vectors import GEN, VALID

FUZZ_EXAMPLES = int(os.environ.get("P2PCHAT_FUZZ_EXAMPLES", "100000"))

ENVELOPE_PAYLOADS: list[type[c.Struct]] = [*DM_KINDS, *SYNC_KINDS]
BODIES = list(EVENT_KINDS.values())
OTHER = [Content, DmPlaintext, InnerEvent, *KNOWN_TYPES.values(), *RECORD_BODIES.values()]
ALL_CLASSES = c.struct_closure([*ENVELOPE_PAYLOADS, *BODIES, *MAILBOX_KINDS.values(), *OTHER])


def rule_for(cls: type[c.Struct]) -> str:
    kind = getattr(cls, "KIND", None)
    if kind in EVENT_KINDS and EVENT_KINDS[kind] is cls:
        return f"body-{kind_rule(kind)}"
    if kind is not None:
        return kind_rule(kind)
    return cls.cddl_name()


@cache
def schema(rule: str) -> Any:
    return pycddl.Schema(full_schema(rule))


# --- hypothesis strategies from field specs ----------------------------------------------

_PROFILE_SCALARS = st.one_of(
    st.integers(0, c.MAX_UINT), st.text(max_size=8), st.binary(max_size=8), st.booleans()
)


def _text(low: int, high: int) -> st.SearchStrategy[str]:
    """Text whose UTF-8 length is in [low, high] by construction (no filtering)."""
    ascii_text = st.text(st.characters(max_codepoint=0x7F), min_size=low, max_size=high)
    if high // 4 < low:
        return ascii_text
    return ascii_text | st.text(min_size=low, max_size=high // 4)


def strategy(spec: c.Spec) -> st.SearchStrategy[Any]:
    if isinstance(spec, c.UInt):
        return st.integers(spec.low, spec.high)
    if isinstance(spec, c.Bool):
        return st.booleans()
    if isinstance(spec, c.Bytes):
        if spec.size is not None:
            return st.binary(min_size=spec.size, max_size=spec.size)
        return st.binary(min_size=spec.low, max_size=min(spec.high, spec.low + 40))
    if isinstance(spec, c.Text):
        return _text(spec.low, min(spec.high, spec.low + 20))
    if isinstance(spec, c.Choice):
        return st.sampled_from(spec.values)
    if isinstance(spec, c.ListOf):
        high = min(spec.high, spec.low + 3)
        return st.lists(strategy(spec.item), min_size=spec.low, max_size=high).map(tuple)
    if isinstance(spec, c.Nested):
        return struct_strategy(spec.struct)
    if isinstance(spec, c.AnyMap):
        return st.dictionaries(st.text(max_size=6), _PROFILE_SCALARS, max_size=4)
    raise AssertionError(f"no strategy for {spec!r}")


_OVERRIDES: dict[tuple[type[c.Struct], str], st.SearchStrategy[Any]] = {
    (Content, "type"): st.sampled_from(["p2pchat/text", "com.example/recipe", "x/y"]),
}


_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {}


def struct_strategy(cls: type[c.Struct]) -> st.SearchStrategy[Any]:
    name = f"{cls.__module__}.{cls.__qualname__}"
    if name in _STRATEGIES:
        return _STRATEGIES[name]
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for f in cls.wire_fields():
        base = _OVERRIDES.get((cls, f.name), strategy(f.spec))
        fields[f.name] = st.none() | base if f.optional else base
    built = st.fixed_dictionaries(fields).map(lambda kw: _build(cls, kw))
    _STRATEGIES[name] = built.filter(lambda obj: obj is not None)
    return _STRATEGIES[name]


def _build(cls: type[c.Struct], kwargs: dict[str, Any]) -> c.Struct | None:
    try:
        return cls(**kwargs)
    except ValueError:  # a cross-field rule (e.g. from > to): not a valid message
        return None


@settings(max_examples=15)
@given(data=st.data())
def test_every_message_class_round_trips_and_matches_its_cddl(data: st.DataObject) -> None:
    for cls in ALL_CLASSES:
        obj = data.draw(struct_strategy(cls), label=cls.__name__)
        encoded = obj.to_bytes()
        assert type(obj).from_bytes(encoded, max_size=len(encoded)) == obj
        schema(rule_for(cls)).validate_cbor(encoded)


_ANY_CBOR = st.recursive(
    _PROFILE_SCALARS | st.none(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200)
@given(cls=st.sampled_from(ALL_CLASSES), value=st.dictionaries(st.text(max_size=6), _ANY_CBOR))
def test_arbitrary_maps_are_accepted_or_refused_with_wire_error(
    cls: type[c.Struct], value: dict[str, Any]
) -> None:
    keys = {f.key for f in cls.wire_fields()}
    try:
        obj = cls.from_value(value)
    except WireError:
        return
    # Accepted: every required key was present, and the object re-encodes to the known keys.
    assert {k for k in obj.to_value()} <= keys
    assert {f.key for f in cls.wire_fields() if not f.optional} <= set(value)


@settings(max_examples=100)
@given(cls=st.sampled_from(ALL_CLASSES), data=st.data())
def test_dropping_a_required_field_is_missing_field(
    cls: type[c.Struct], data: st.DataObject
) -> None:
    value = data.draw(struct_strategy(cls)).to_value()
    required = [f.key for f in cls.wire_fields() if not f.optional]
    if not required:
        return
    del value[data.draw(st.sampled_from(required))]
    with pytest.raises(WireError) as info:
        cls.from_value(value)
    assert info.value.reason == "missing-field"


# --- the mutation loop -------------------------------------------------------------------


def _pipeline(check: str, vector: dict[str, Any]) -> Callable[[bytes], object]:
    """Decode-only steps (the cheap part a node runs before rate-limited verification)."""
    if check == "frame":
        return lambda data: GEN.run_check("frame", data, vector)
    if check == "envelope":
        return lambda data: decode_envelope(data).open()
    if check == "event":
        return decode_event
    if check == "inner-event":
        return lambda data: InnerEvent.from_bytes(data, max_size=len(data)).parsed()
    if check == "dm-plaintext":
        return lambda data: DmPlaintext.from_bytes(data, max_size=len(data))
    if check == "record":
        return lambda data: decode_record(data, ns=vector["dht_key"].split("/")[2])
    if check == "mailbox":
        return decode_mailbox_frame
    if check == "mailbox-blob":  # open the seal, then the envelope inside
        return lambda data: GEN.run_check(check, data, vector)
    raise AssertionError(check)


def _struct_pipeline(cls: type[c.Struct]) -> Callable[[bytes], object]:
    return lambda data: cls.from_bytes(data, max_size=len(data) + 1)


def _signature_checks(check: str, data: bytes, vector: dict[str, Any]) -> bool:
    """True if ``data`` passes every signature check of its pipeline."""
    try:
        if check == "envelope":
            env = decode_envelope(data)
            env.verify()
            message = env.open()
            if isinstance(message, SyncBatch):
                for run in message.runs:
                    authenticate_run(run, group=message.group)
            return True
        if check == "event":
            decode_event(data).verify()
            return True
        if check in ("record", "mailbox-blob"):  # a signature / an AEAD tag
            GEN.run_check(check, data, vector)
            return True
        if check == "mailbox":  # only fetch and delete carry a signature
            signed = isinstance(decode_mailbox_frame(data), MailboxFetch | MailboxDelete)
            GEN.run_check(check, data, vector)
            return signed
    except WireError:
        return False
    return False


def _random_value(spec: c.Spec, rnd: random.Random) -> Any:
    """A schema-valid value drawn from a seeded PRNG (cheap corpus generation)."""
    if isinstance(spec, c.UInt):
        return rnd.choice([spec.low, spec.high, rnd.randint(spec.low, spec.high)])
    if isinstance(spec, c.Bool):
        return rnd.random() < 0.5
    if isinstance(spec, c.Bytes):
        n = spec.size if spec.size is not None else rnd.randint(spec.low, min(spec.high, 80))
        return rnd.randbytes(n)
    if isinstance(spec, c.Text):
        return "".join(rnd.choice("abcxyz/é中") for _ in range(spec.low)) if spec.low else "hi"
    if isinstance(spec, c.Choice):
        return rnd.choice(spec.values)
    if isinstance(spec, c.ListOf):
        count = rnd.randint(spec.low, min(spec.high, spec.low + 3))
        return tuple(_random_value(spec.item, rnd) for _ in range(count))
    if isinstance(spec, c.Nested):
        return _random_struct(spec.struct, rnd)
    if isinstance(spec, c.AnyMap):
        return {"k": rnd.randint(0, 9)} if rnd.random() < 0.5 else {}
    raise AssertionError(spec)


def _random_struct(cls: type[c.Struct], rnd: random.Random) -> c.Struct:
    kwargs = {
        f.name: _random_value(f.spec, rnd)
        for f in cls.wire_fields()
        if not (f.optional and rnd.random() < 0.5)
    }
    if cls is Content:
        kwargs["type"] = "p2pchat/text"
    for _ in range(10):
        try:
            return cls(**kwargs)
        except ValueError:
            kwargs = {f.name: _random_value(f.spec, rnd) for f in cls.wire_fields()}
    raise AssertionError(f"cannot build {cls.__name__}")


def corpus() -> list[tuple[str, bytes, dict[str, Any]]]:
    """Valid vectors plus schema-generated payloads of every envelope and event kind."""
    items = [(v["check"], bytes.fromhex(v["hex"]), v) for v in VALID]
    rnd = random.Random(1)
    for cls in [*ENVELOPE_PAYLOADS, *BODIES, *OTHER]:
        encoded = _random_struct(cls, rnd).to_bytes()
        check = f"struct:{cls.__name__}"
        items.append((check, encoded, {"cls": cls}))
    return items


_MAGIC = [0x00, 0xFF, 0x18, 0x19, 0x1B, 0x1F, 0x5F, 0x7F, 0x9F, 0xBF, 0xC1, 0xF9, 0xFB, 0xF7]


def mutate(data: bytes, other: bytes, rnd: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rnd.choice((1, 1, 1, 2, 3))):
        op = rnd.randrange(8)
        pos = rnd.randrange(len(buf)) if buf else 0
        if op == 0 and buf:  # bit flips
            buf[pos] ^= 1 << rnd.randrange(8)
        elif op == 1:  # truncation
            del buf[pos:]
        elif op == 2:  # insertion
            buf[pos:pos] = rnd.randbytes(rnd.randint(1, 4))
        elif op == 3 and buf:  # deletion
            del buf[pos : pos + rnd.randint(1, 8)]
        elif op == 4:  # splice with another frame
            cut = rnd.randrange(len(other) + 1)
            buf = buf[:pos] + bytearray(other[cut:])
        elif op == 5 and buf:  # CBOR length/argument edit on a header byte
            major, info = buf[pos] >> 5, buf[pos] & 0x1F
            if major in (2, 3, 4, 5):
                buf[pos] = (major << 5) | rnd.choice(
                    [max(info - 1, 0), min(info + 1, 27), 24, 26, 27, 31]
                )
            else:
                buf[pos] = (rnd.choice((2, 3, 4, 5)) << 5) | info
        elif op == 6 and buf:  # magic bytes
            buf[pos] = rnd.choice(_MAGIC)
        else:  # duplicate a chunk
            chunk = buf[pos : pos + rnd.randint(1, 16)]
            buf[pos:pos] = chunk
    return bytes(buf)


def _canonical_by_cbor2(data: bytes) -> bool:
    """Independent oracle (cbor2's own canonical mode, not our profile encoder)."""
    try:
        return bool(cbor2.dumps(cbor2.loads(data), canonical=True) == data)
    except (cbor2.CBORError, ValueError, TypeError, RecursionError):
        return False


@dataclasses.dataclass
class FuzzStats:
    frames: int = 0
    accepted: int = 0
    refused: dict[str, int] = dataclasses.field(default_factory=dict)
    crashes: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    non_canonical_accepted: list[str] = dataclasses.field(default_factory=list)
    forged_signed: list[str] = dataclasses.field(default_factory=list)
    #: Per-frame decode times (a compact array: make fuzz records two million of them).
    times_ns: array[int] = dataclasses.field(default_factory=lambda: array("q"))
    #: The slowest frames seen, as (ns, corpus index, frame), to re-time in isolation.
    slowest: list[tuple[int, int, bytes]] = dataclasses.field(default_factory=list)
    pipelines: list[Callable[[bytes], object]] = dataclasses.field(default_factory=list)


def run_fuzz(examples: int, *, seed: int) -> FuzzStats:
    rnd = random.Random(seed)
    items = corpus()
    originals = {data for _, data, _ in items}
    pipelines: list[Callable[[bytes], object]] = []
    for check, _, extra in items:
        if check.startswith("struct:"):
            pipelines.append(_struct_pipeline(extra["cls"]))
        else:
            pipelines.append(_pipeline(check, extra))
    stats = FuzzStats()
    clock = time.perf_counter_ns
    for _ in range(examples):
        index = rnd.randrange(len(items))
        check, data, vector = items[index]
        frame = mutate(data, items[rnd.randrange(len(items))][1], rnd)
        stats.frames += 1
        start = clock()
        try:
            pipelines[index](frame)
        except WireError as exc:
            elapsed = clock() - start
            stats.times_ns.append(elapsed)
            _keep_slowest(stats, elapsed, index, frame)
            stats.refused[exc.reason] = stats.refused.get(exc.reason, 0) + 1
            continue
        except Exception as exc:  # the property under test: nothing else escapes
            stats.crashes.append((check, frame.hex(), repr(exc)))
            continue
        elapsed = clock() - start
        stats.times_ns.append(elapsed)
        stats.accepted += 1
        _keep_slowest(stats, elapsed, index, frame)
        if check == "mailbox-blob":  # the sealed bytes are not CBOR; what they hold is
            tag_key = SigningKey(bytes.fromhex(vector["tag_seed"]))
            if not _canonical_by_cbor2(open_for_tag(frame, tag_key=tag_key)):
                stats.non_canonical_accepted.append(frame.hex())
        elif check != "frame" and not _canonical_by_cbor2(frame):
            stats.non_canonical_accepted.append(frame.hex())
        if frame not in originals and _signature_checks(check, frame, vector):
            stats.forged_signed.append(frame.hex())
    stats.pipelines = pipelines
    return stats


def _keep_slowest(stats: FuzzStats, elapsed: int, index: int, frame: bytes) -> None:
    if len(stats.slowest) < 5 or elapsed > stats.slowest[-1][0]:
        stats.slowest.append((elapsed, index, frame))
        stats.slowest.sort(key=lambda entry: -entry[0])
        del stats.slowest[5:]


def _retime_slowest(stats: FuzzStats) -> int:
    """Re-decode the slowest frames with the GC off: tells a slow input from a noisy host."""
    worst = 0
    gc.disable()
    try:
        for _, index, frame in stats.slowest:
            start = time.perf_counter_ns()
            with contextlib.suppress(WireError):
                stats.pipelines[index](frame)
            worst = max(worst, time.perf_counter_ns() - start)
    finally:
        gc.enable()
    return worst


def _report(stats: FuzzStats, elapsed: float) -> str:
    times = sorted(stats.times_ns)
    median = statistics.median(times)
    p99 = times[int(len(times) * 0.99)]
    top = sorted(stats.refused.items(), key=lambda kv: -kv[1])[:8]
    return (
        f"\nwire fuzz: {stats.frames} frames in {elapsed:.1f} s "
        f"({stats.frames / elapsed:,.0f} frames/s), accepted {stats.accepted}\n"
        f"decode time per frame: median {median / 1000:.1f} us, p99 {p99 / 1000:.1f} us, "
        f"max {times[-1] / 1000:.1f} us, max/median {times[-1] / median:.0f}\n"
        f"5 slowest frames re-timed alone (GC off): max {_retime_slowest(stats) / 1000:.1f} us\n"
        f"top refusal reasons: {top}"
    )


def test_fuzz_mutated_frames_only_raise_wire_error() -> None:
    start = time.perf_counter()
    stats = run_fuzz(FUZZ_EXAMPLES, seed=int.from_bytes(DeterministicRng("wire-fuzz")(4), "big"))
    print(_report(stats, time.perf_counter() - start))
    assert stats.frames == FUZZ_EXAMPLES
    assert not stats.crashes, stats.crashes[:3]
    assert not stats.non_canonical_accepted, stats.non_canonical_accepted[:3]
    assert not stats.forged_signed, stats.forged_signed[:3]
    # The loop exercised both outcomes and many distinct refusal paths.
    assert stats.accepted > 0
    assert len(stats.refused) >= 10


def test_fuzz_harness_catches_a_crashing_decoder(monkeypatch: Any) -> None:
    """The harness can fail: a decoder that leaks a foreign exception is reported."""

    def leaky(data: bytes) -> object:
        raise KeyError("boom")

    monkeypatch.setattr(f"{__name__}.decode_event", leaky)
    stats = run_fuzz(300, seed=7)
    assert stats.crashes
    assert all("KeyError" in crash[2] for crash in stats.crashes)


def test_decode_refuses_what_cbor2_alone_would_accept() -> None:
    """The measured weakness we design against: cbor2.loads accepts non-canonical input."""
    canonical = cbor.encode({"ids": [b"\x00" * 16]})
    relaxed = b"\xa1\x63ids\x81\x58\x10" + b"\x00" * 16  # same value, long-form length
    assert cbor2.loads(relaxed) == cbor2.loads(canonical)
    with pytest.raises(WireError) as info:
        DM_KINDS[2].from_bytes(relaxed, max_size=100)
    assert info.value.reason == "non-canonical"
