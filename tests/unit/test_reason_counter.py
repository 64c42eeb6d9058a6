"""The reason counter behind the rejection counts of ``node.statistics()`` / ``p2pchat status``."""

from __future__ import annotations

from p2pchat.errors import ProtocolError, RateLimitedError, WireError
from p2pchat.protocol.counters import OTHER, RATE_LIMITED, ReasonCounter, reason_of
from p2pchat.protocol.group_log import GroupError


def test_counts_by_reason_most_frequent_first() -> None:
    counter = ReasonCounter()
    for exc in (WireError("bad-signature"), GroupError("not-member"), WireError("bad-signature")):
        counter.add_error(exc)
    counter.add_error(RateLimitedError("slow down"))
    assert counter.snapshot() == {"bad-signature": 2, "not-member": 1, RATE_LIMITED: 1}
    assert counter.total == 4
    assert counter.get("unknown") == 0


def test_the_number_of_distinct_reasons_is_bounded() -> None:
    counter = ReasonCounter(max_reasons=3)
    for i in range(10):
        counter.add(f"reason-{i}")
    assert counter.snapshot() == {OTHER: 7, "reason-0": 1, "reason-1": 1, "reason-2": 1}
    assert len(counter) == 4


def test_reason_of_falls_back_to_the_class_name() -> None:
    assert reason_of(GroupError("forked-device")) == "forked-device"
    assert reason_of(ProtocolError("x")) == "protocolerror"
    assert reason_of(ValueError("x")) == OTHER
