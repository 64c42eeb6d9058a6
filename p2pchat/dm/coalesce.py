"""Concurrent submissions per key, coalesced into one batch (the DM send queue).

``send`` to one account used to take the account's lock, encrypt, and commit its own
transaction: concurrent senders to one account queued on the lock and paid one fsync
each. :class:`Coalescer` lets whoever finds no batch running for a key take every
submission waiting for that key (in arrival order, up to ``max_batch`` items, never
splitting a submission) and process them together; the others wait for the batch that
took theirs. A lone sender is processed at once (a batch of one): coalescing adds no
latency, it only grows with the load, as the receiver's :class:`~.streams.FrameBatches`.

Outcomes are never lost to a cancellation: once a batch took a submission, the batch
runs shielded and its submitter waits for the outcome (a cancellation takes effect at
its caller's next checkpoint), as a caller of
:meth:`~p2pchat.storage.sqlite.SqliteStore.atomically` does. A submission not yet taken
is withdrawn (``Cancelled``, nothing processed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

import trio

__all__ = ["Coalescer"]

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")


class _Submission(Generic[I, R]):
    __slots__ = ("done", "error", "items", "results", "taken")

    def __init__(self, items: Sequence[I]) -> None:
        self.items = items
        self.taken = False
        self.done = False
        self.results: list[R] = []
        self.error: BaseException | None = None


class Coalescer(Generic[K, I, R]):
    """``await submit(key, items)``: ``items`` processed by ``process(key, batch)`` in one
    batch with whatever else waits for ``key`` (see the module docstring).

    ``process`` returns one result per item of the batch, in order; if it raises, every
    submission of that batch raises that error (the batch is all or nothing).
    """

    def __init__(
        self, process: Callable[[K, list[I]], Awaitable[list[R]]], *, max_batch: int
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be positive")
        self._process = process
        self._max_batch = max_batch
        self._waiting: dict[K, list[_Submission[I, R]]] = {}
        self._running: set[K] = set()
        self._finished = trio.Event()
        self.batches = 0  # statistics: batches processed and items in them
        self.items = 0

    def __repr__(self) -> str:
        return f"<Coalescer {len(self._running)} running, {len(self._waiting)} keys waiting>"

    async def submit(self, key: K, items: Sequence[I]) -> list[R]:
        submission: _Submission[I, R] = _Submission(items)
        self._waiting.setdefault(key, []).append(submission)
        try:
            while not submission.done:
                if key in self._running:
                    await self._finished.wait()
                else:
                    await self._run_batch(key)
        except BaseException:
            if not submission.taken:
                self._withdraw(key, submission)
                raise
            with trio.CancelScope(shield=True):
                while not submission.done:
                    await self._finished.wait()
            raise
        if submission.error is not None:
            raise submission.error
        return submission.results

    def _withdraw(self, key: K, submission: _Submission[I, R]) -> None:
        waiting = self._waiting.get(key)
        if waiting is not None and submission in waiting:
            waiting.remove(submission)
            if not waiting:
                del self._waiting[key]

    async def _run_batch(self, key: K) -> None:
        """Take the submissions waiting for ``key`` (the caller's among them) and
        process them as one batch, shielded: their submitters wait for it."""
        waiting = self._waiting.pop(key, [])
        taken: list[_Submission[I, R]] = []
        count = 0
        while waiting and (not taken or count + len(waiting[0].items) <= self._max_batch):
            submission = waiting.pop(0)
            submission.taken = True
            taken.append(submission)
            count += len(submission.items)
        if waiting:
            self._waiting[key] = waiting
        self._running.add(key)
        try:
            with trio.CancelScope(shield=True):
                batch = [item for submission in taken for item in submission.items]
                try:
                    results = await self._process(key, batch)
                    if len(results) != len(batch):
                        raise AssertionError("a batch must return one result per item")
                except BaseException as exc:  # noqa: BLE001 (each submitter raises it)
                    for submission in taken:
                        submission.error = exc
                else:
                    position = 0
                    for submission in taken:
                        end = position + len(submission.items)
                        submission.results = results[position:end]
                        position = end
                self.batches += 1
                self.items += len(batch)
        finally:
            for submission in taken:
                submission.done = True
            self._running.discard(key)
            self._finished.set()
            self._finished = trio.Event()
