"""``python -m p2pchat.cli``: the same as the ``p2pchat`` command."""

from p2pchat.cli import main

main()
