"""Mapping foreign exceptions to :mod:`p2pchat.errors` at the adapter boundary.

After httpcore's ``map_exceptions``: each adapter call that may raise a foreign error
runs inside ``with map_exceptions(TABLE, what="dial"):``. The first matching row wins,
the original stays in ``__cause__`` for debugging, and the message names only the
operation and the foreign type, so nothing the peer sent (or any key) ends up in it.
Our own errors pass through untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from p2pchat.errors import P2PChatError

__all__ = ["ErrorTable", "map_exceptions", "unwrap_sole_exception"]

#: ``(foreign type, our type)`` rows, most specific first.
ErrorTable = Sequence[tuple[type[BaseException], type[P2PChatError]]]


@contextmanager
def map_exceptions(table: ErrorTable, *, what: str) -> Iterator[None]:
    """Re-raise a foreign exception listed in ``table`` as the matching p2pchat error."""
    try:
        yield
    except P2PChatError:
        raise
    except tuple(row[0] for row in table) as exc:
        for foreign, ours in table:
            if isinstance(exc, foreign):
                raise ours(f"{what} failed ({type(exc).__name__})") from exc
        raise  # pragma: no cover - the except clause only catches listed types


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


@contextmanager
def unwrap_sole_exception() -> Iterator[None]:
    """Re-raise a group that holds exactly one exception as that exception.

    py-libp2p nests a nursery per service, so an error raised in the body of
    ``async with open_libp2p_network(...)`` would come out wrapped in half a dozen
    ``ExceptionGroup`` layers. Callers should see the error they raised (or the handler
    bug, or the ``Cancelled``) itself; a group of several errors stays a group.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if len(leaves) == 1:
            raise leaves[0] from None
        raise
