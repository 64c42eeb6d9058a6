"""``python -m tests.netns --cleanup``: remove leftovers of dead namespace runs (as root)."""

from __future__ import annotations

import argparse
import sys

from tests.netns._system import PREFIX, available, cleanup, leftovers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.netns", description=__doc__)
    parser.add_argument(
        "--cleanup", action="store_true", help="remove leftovers (default: only list them)"
    )
    parser.add_argument(
        "--prefix", default=PREFIX, help=f"name prefix of the runs (default {PREFIX})"
    )
    args = parser.parse_args(argv)
    ok, reason = available()
    if not ok:
        print(f"network namespaces unavailable: {reason}", file=sys.stderr)
        return 2
    if not args.cleanup:
        stale = leftovers(args.prefix)
        for name in stale:
            print(name)
        print(
            f"{len(stale)} leftover(s); remove with --cleanup" if stale else "no leftovers",
            file=sys.stderr,
        )
        return 1 if stale else 0
    removed = cleanup(args.prefix)
    for name in removed:
        print(f"removed {name}")
    print(f"removed {len(removed)} leftover(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
