"""The committed device-linking vectors (protocol-spec/vectors/devices/): regenerated
identically, valid ones accepted (yielding what they say) and schema-valid, invalid ones
refused with exactly their reason."""

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
from p2pchat.protocol.schema import full_schema

VECTORS = Path(__file__).resolve().parents[2] / "protocol-spec" / "vectors"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_gen_devices", VECTORS / "gen_devices.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()
VALID: list[dict[str, Any]] = json.loads((VECTORS / "devices" / "valid.json").read_text())[
    "vectors"
]
INVALID: list[dict[str, Any]] = json.loads((VECTORS / "devices" / "invalid.json").read_text())[
    "vectors"
]


@cache
def _schema(rule: str) -> Any:
    return pycddl.Schema(full_schema(rule))


def test_regenerating_reproduces_the_committed_files() -> None:
    for rel, text in GEN.generate().items():
        assert (VECTORS / rel).read_text() == text, f"stale: {rel} (run make vectors)"


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_valid_vector_is_accepted(vector: dict[str, Any]) -> None:
    assert GEN.run_check(vector) == vector["yields"]
    if vector.get("rule"):
        _schema(vector["rule"]).validate_cbor(bytes.fromhex(vector["hex"]))


@pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_vector_is_refused_with_its_reason(vector: dict[str, Any]) -> None:
    with pytest.raises(WireError) as info:
        GEN.run_check(vector)
    assert info.value.reason == vector["reason"]
