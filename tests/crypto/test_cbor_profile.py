"""The strict CBOR profile: what it accepts, and one rejection per rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat_crypto import cbor
from p2pchat_crypto.errors import DecodeError

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.integers(-30, 300) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


@given(values)
def test_round_trip_is_exact_and_canonical(value: object) -> None:
    data = cbor.encode(value)  # type: ignore[arg-type]
    assert cbor.decode(data, max_size=1 << 20) == value
    assert cbor.encode(cbor.decode(data, max_size=1 << 20)) == data


def test_map_keys_sorted_bytewise_per_rfc8949() -> None:
    # RFC 8949 4.2.1 sorts by encoded bytes: 0x18 0x18 (24) before 0x60 ("")
    assert cbor.encode({"": 1, 24: 2}).hex() == "a2181802" + "6001"


@pytest.mark.parametrize(
    ("hexdata", "reason"),
    [
        ("1817", "non-canonical"),  # 23 encoded in two bytes
        ("a2616101616102", "duplicate-key"),
        ("a2616201616101", "non-canonical"),  # unsorted keys
        ("c11a514b67b0", "tag"),
        ("d90102a0", "tag"),
        ("0000", "trailing-bytes"),
        ("9f01ff", "indefinite-length"),
        ("fb3ff0000000000000", "type"),  # float
        ("f7", "type"),  # undefined
        ("f0", "type"),  # simple value 16
        ("1b", "truncated"),
        ("62c328", "bad-utf8"),
        ("a1f500", "key-type"),  # true as a map key
        ("c249010000000000000000", "tag"),  # bignum
    ],
)
def test_rejections_have_reasons(hexdata: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        cbor.decode(bytes.fromhex(hexdata), max_size=1024)
    assert info.value.reason == reason


@given(values)
def test_a_decode_without_recheck_gives_the_same_value(value: object) -> None:
    data = cbor.encode(value)  # type: ignore[arg-type]
    assert cbor.decode(data, max_size=1 << 20, recheck=False) == value


@pytest.mark.parametrize(
    ("hexdata", "reason"),
    [
        ("a2616101616102", "duplicate-key"),
        ("c11a514b67b0", "tag"),
        ("9f01ff", "indefinite-length"),
        ("62c328", "bad-utf8"),
        ("1b", "truncated"),
    ],
)
def test_a_decode_without_recheck_still_refuses_what_the_parser_sees(
    hexdata: str, reason: str
) -> None:
    with pytest.raises(DecodeError) as info:
        cbor.decode(bytes.fromhex(hexdata), max_size=1024, recheck=False)
    assert info.value.reason == reason


def test_size_cap_is_checked_before_parsing() -> None:
    with pytest.raises(DecodeError) as info:
        cbor.decode(b"\x40" + b"\xff" * 100, max_size=10)  # would also be malformed
    assert info.value.reason == "too-large"


def test_depth_limit() -> None:
    deep = b"\x81" * 40 + b"\x00"
    with pytest.raises(DecodeError) as info:
        cbor.decode(deep, max_size=1024, max_depth=16)
    assert info.value.reason == "too-deep"
    assert cbor.decode(b"\x81" * 16 + b"\x00", max_size=1024, max_depth=16) is not None


def test_encode_refuses_values_outside_the_profile() -> None:
    for bad in (1.5, 2**64, {(1, 2): 1}, {True: 1}, {1, 2}):
        with pytest.raises(DecodeError):
            cbor.encode(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("wrap", [lambda v: [v], lambda v: {"k": v}])
@pytest.mark.parametrize("leaf", [0, 2**64 - 1, "t", b"b", None, True])
def test_the_depth_limit_counts_leaves_inside_containers(wrap: object, leaf: object) -> None:
    nested: object = leaf
    for _ in range(3):
        nested = wrap(nested)  # type: ignore[operator]
    assert cbor.encode(nested, max_depth=3)  # type: ignore[arg-type]
    with pytest.raises(DecodeError) as info:
        cbor.encode(nested, max_depth=2)  # type: ignore[arg-type]
    assert info.value.reason == "too-deep"


@pytest.mark.parametrize("bad", [[2**64], [-(2**64) - 1], {"k": 2**64}, {"k": [1, 2**70]}])
def test_out_of_range_integers_inside_containers_are_refused(bad: object) -> None:
    with pytest.raises(DecodeError) as info:
        cbor.encode(bad)  # type: ignore[arg-type]
    assert info.value.reason == "int-range"


def test_subclasses_of_profile_types_encode_as_their_base() -> None:
    import enum

    class Kind(enum.IntEnum):
        POST = 7

    assert cbor.encode({"k": Kind.POST, "l": [Kind.POST]}) == cbor.encode({"k": 7, "l": [7]})


def test_hostile_map_keys_do_not_grow_the_key_cache() -> None:
    for i in range(3000):
        cbor.decode(cbor.encode({f"k{i}": i, i + 10_000: 0}), max_size=1024)
    assert len(cbor._KEYS) <= cbor._KEYS_MAX
