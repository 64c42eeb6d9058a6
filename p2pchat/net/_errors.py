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

__all__ = ["ErrorTable", "map_exceptions"]

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
