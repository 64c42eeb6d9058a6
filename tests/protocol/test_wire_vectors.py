"""The committed wire vectors and CDDL: regenerated identically, valid ones accepted and
schema-valid, invalid ones refused with exactly their reason."""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pycddl
import pytest

from p2pchat.errors import WireError
from p2pchat.protocol.schema import full_schema, schema_files

SPEC = Path(__file__).resolve().parents[2] / "protocol-spec"
VECTORS = SPEC / "vectors"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_gen_wire", VECTORS / "gen_wire.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()
VALID: list[dict[str, Any]] = json.loads((VECTORS / "wire" / "valid.json").read_text())["vectors"]
INVALID: list[dict[str, Any]] = json.loads((VECTORS / "wire" / "invalid.json").read_text())[
    "vectors"
]


@cache
def _schema(rule: str) -> Any:
    return pycddl.Schema(full_schema(rule))


def test_regenerating_vectors_reproduces_the_committed_files() -> None:
    for rel, text in GEN.generate().items():
        assert (VECTORS / rel).read_text() == text, f"stale: {rel} (run make vectors)"


def test_committed_cddl_equals_the_generated_schema() -> None:
    files = schema_files()
    assert sorted(p.name for p in (SPEC / "schemas").glob("*.cddl")) == sorted(files)
    for name, text in files.items():
        assert (SPEC / "schemas" / name).read_text() == text, f"stale schema {name}"


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_valid_vector_is_accepted_by_the_codec(vector: dict[str, Any]) -> None:
    GEN.run_check(vector["check"], bytes.fromhex(vector["hex"]), vector)


@pytest.mark.parametrize("vector", [v for v in VALID if v["rule"]], ids=lambda v: v["name"])
def test_valid_vector_matches_the_cddl(vector: dict[str, Any]) -> None:
    _schema(vector["rule"]).validate_cbor(bytes.fromhex(vector["hex"]))


@pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_vector_is_refused_with_its_reason(vector: dict[str, Any]) -> None:
    with pytest.raises(WireError) as info:
        GEN.run_check(vector["check"], bytes.fromhex(vector["hex"]), vector)
    assert info.value.reason == vector["reason"]


def test_every_kind_has_a_valid_vector() -> None:
    from p2pchat.protocol.envelope import ENVELOPE_KINDS
    from p2pchat.protocol.group_events import EVENT_KINDS
    from p2pchat.protocol.mailbox import MAILBOX_KINDS
    from p2pchat.protocol.records import NAMESPACES

    kinds = {v.get("kind") for v in VALID}
    assert set(ENVELOPE_KINDS) | set(EVENT_KINDS) | set(MAILBOX_KINDS) <= kinds
    assert {f"record {ns}" for ns in NAMESPACES} <= {v["name"] for v in VALID}


def test_invalid_vectors_cover_the_required_failures() -> None:
    reasons = {v["reason"] for v in INVALID}
    required = {
        "non-canonical",
        "duplicate-key",
        "tag",
        "trailing-bytes",
        "frame-too-large",
        "wrong-type",
        "missing-field",
        "bad-signature",
    }
    assert required <= reasons


@pytest.mark.parametrize(
    ("rule", "value"),
    [
        ("dm-ack", {"ids": []}),
        ("dm-ack", {"ids": [b"short"]}),
        ("dm-ack", {}),
        ("contact-request", {"rid": b"r" * 16, "acct": b"a" * 32, "name": ""}),
        ("body-vote", {"poll": b"p" * 32, "choice": [16]}),
    ],
)
def test_the_cddl_refuses_what_the_codec_refuses(rule: str, value: dict[str, Any]) -> None:
    """The schema is not vacuous: it rejects shapes the codec rejects."""
    from p2pchat_crypto import cbor

    with pytest.raises(pycddl.ValidationError):
        _schema(rule).validate_cbor(cbor.encode(value))
