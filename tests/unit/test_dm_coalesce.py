"""The DM send queue's coalescing (p2pchat/dm/coalesce.py): batches, order, errors and
cancellation (a submission taken into a batch is never lost to its caller's cancel)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from p2pchat.dm.coalesce import Coalescer


class Recorder:
    def __init__(self, *, delay: float = 1.0, fail: bool = False) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.delay = delay
        self.fail = fail

    async def __call__(self, key: str, items: list[int]) -> list[int]:
        self.batches.append((key, list(items)))
        await trio.sleep(self.delay)  # a commit that takes time: others queue meanwhile
        if self.fail:
            raise ValueError("the batch failed")
        return [item * 10 for item in items]


async def test_submissions_during_a_batch_form_the_next_one_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    process = Recorder()
    queue: Coalescer[str, int, int] = Coalescer(process, max_batch=100)
    results: dict[int, list[int]] = {}

    async def submit(items: list[int]) -> None:
        results[items[0]] = await queue.submit("a", items)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit, [1])
        await trio.testing.wait_all_tasks_blocked()
        for first in (2, 4, 6):
            nursery.start_soon(submit, [first, first + 1])
            await trio.testing.wait_all_tasks_blocked()
    assert process.batches == [("a", [1]), ("a", [2, 3, 4, 5, 6, 7])]
    assert results == {1: [10], 2: [20, 30], 4: [40, 50], 6: [60, 70]}
    assert (queue.batches, queue.items) == (2, 7)


async def test_keys_do_not_wait_for_each_other_and_submissions_are_never_split(
    autojump_clock: trio.testing.MockClock,
) -> None:
    process = Recorder()
    queue: Coalescer[str, int, int] = Coalescer(process, max_batch=3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.submit, "a", [1])
        nursery.start_soon(queue.submit, "b", [9])
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(queue.submit, "a", [2, 3])
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(queue.submit, "a", [4, 5])
        await trio.testing.wait_all_tasks_blocked()
    assert sorted(process.batches) == [("a", [1]), ("a", [2, 3]), ("a", [4, 5]), ("b", [9])]


async def test_a_failed_batch_fails_every_submission_in_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue: Coalescer[str, int, int] = Coalescer(Recorder(fail=True), max_batch=10)
    failures: list[str] = []

    async def submit(item: int) -> None:
        try:
            await queue.submit("a", [item])
        except ValueError as exc:
            failures.append(str(exc))

    async with trio.open_nursery() as nursery:
        for item in range(3):
            nursery.start_soon(submit, item)
    assert failures == ["the batch failed"] * 3


async def test_a_cancelled_submitter_is_withdrawn_unless_its_batch_took_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    process = Recorder()
    queue: Coalescer[str, int, int] = Coalescer(process, max_batch=10)
    outcome: dict[int, str] = {}

    async def submit(item: int, scope: trio.CancelScope) -> None:
        with scope:
            outcome[item] = f"result {await queue.submit('a', [item])}"
        if scope.cancelled_caught:
            outcome[item] = "cancelled"

    leader, waiter = trio.CancelScope(), trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit, 1, leader)
        await trio.testing.wait_all_tasks_blocked()  # [1] is in its batch (a commit)
        nursery.start_soon(submit, 2, waiter)
        await trio.testing.wait_all_tasks_blocked()  # [2] waits for the next batch
        waiter.cancel()  # not taken yet: withdrawn
        leader.cancel()  # taken: its batch completes and its caller gets the outcome
    assert process.batches == [("a", [1])]
    assert outcome == {1: "result [10]", 2: "cancelled"}


def test_max_batch_must_be_positive() -> None:
    async def process(key: str, items: list[int]) -> list[int]:
        return items

    with pytest.raises(ValueError, match="positive"):
        Coalescer(process, max_batch=0)
