"""A tiny TCP echo for namespace tests: the server answers ``<peer ip> <line>``.

    python tests/netns/echo.py serve PORT
    python tests/netns/echo.py ask IP PORT MESSAGE [TIMEOUT]   (exit 0 and print the answer,
                                                               exit 1 with the error on stderr)

Run it in a namespace with the venv's python: ``host.run([*ECHO, "serve", "7000"])``.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

#: argv prefix that runs this file with the current interpreter (-S: stdlib only, quick start).
ECHO = [sys.executable, "-S", str(Path(__file__).resolve())]


def serve(port: int) -> None:
    with socket.create_server(("0.0.0.0", port)) as server:
        while True:
            conn, (peer, _) = server.accept()
            with conn:
                conn.settimeout(5.0)
                try:
                    line = conn.makefile("rb").readline(1024).decode(errors="replace").strip()
                    conn.sendall(f"{peer} {line}\n".encode())
                except OSError:
                    pass


def ask(ip: str, port: int, message: str, timeout: float) -> str:
    with socket.create_connection((ip, port), timeout=timeout) as conn:
        conn.sendall(message.encode() + b"\n")
        return conn.makefile("rb").readline(1024).decode().strip()


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"] and len(argv) == 2:
        serve(int(argv[1]))
        return 0
    if argv[:1] == ["ask"] and len(argv) in (4, 5):
        try:
            print(ask(argv[1], int(argv[2]), argv[3], float(argv[4]) if len(argv) == 5 else 5.0))
        except OSError as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
