"""The import rules of ARCHITECTURE.md, enforced on the source text (AST), not by convention.

* ``crypto/`` (p2pchat_crypto) imports nothing from ``p2pchat`` and no I/O library.
* ``p2pchat/protocol/`` is sans-IO: no trio, libp2p, sqlite3, sockets, asyncio, storage or net.
* Neither reads the clock or global randomness directly.
* ``p2pchat/net/`` and ``p2pchat/storage/`` do not import the node, CLI or RPC.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IO_MODULES = {
    "trio",
    "libp2p",
    "sqlite3",
    "socket",
    "asyncio",
    "selectors",
    "threading",
    "subprocess",
    "multiaddr",
    "zeroconf",
}
CLOCK_AND_RANDOM = {("time", "time"), ("time", "monotonic"), ("os", "urandom"), ("time", "sleep")}


def _py_files(folder: Path) -> list[Path]:
    files = sorted(folder.rglob("*.py"))
    assert files, f"no Python files under {folder}"
    return files


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def _calls(path: Path) -> Iterator[tuple[str, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in CLOCK_AND_RANDOM
        ):
            yield (node.value.id, node.attr)
        if isinstance(node, ast.ImportFrom) and node.module in {"time", "os", "random"}:
            for alias in node.names:
                if (node.module, alias.name) in CLOCK_AND_RANDOM or node.module == "random":
                    yield (node.module, alias.name)


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("path", _py_files(ROOT / "crypto" / "p2pchat_crypto"), ids=str)
def test_crypto_imports_no_node_and_no_io(path: Path) -> None:
    bad = {m for m in _imports(path) if _top(m) in IO_MODULES | {"p2pchat", "msgpack"}}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
    assert not list(_calls(path)), f"{path.relative_to(ROOT)} reads the clock or randomness"


@pytest.mark.parametrize("path", _py_files(ROOT / "p2pchat" / "protocol"), ids=str)
def test_protocol_is_sans_io(path: Path) -> None:
    forbidden_inner = (
        "p2pchat.net",
        "p2pchat.storage",
        "p2pchat.node",
        "p2pchat.cli",
        "p2pchat.rpc",
    )
    bad = {m for m in _imports(path) if _top(m) in IO_MODULES or m.startswith(forbidden_inner)}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
    assert not list(_calls(path)), f"{path.relative_to(ROOT)} reads the clock or randomness"


@pytest.mark.parametrize(
    "path",
    [p for d in ("net", "storage") for p in sorted((ROOT / "p2pchat" / d).rglob("*.py"))],
    ids=str,
)
def test_adapters_do_not_import_upper_layers(path: Path) -> None:
    bad = {
        m
        for m in _imports(path)
        if m.startswith(("p2pchat.node", "p2pchat.cli", "p2pchat.rpc", "p2pchat.client"))
    }
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _py_files(ROOT / "p2pchat" / "client"), ids=str)
def test_client_does_not_import_the_node_or_libp2p(path: Path) -> None:
    bad = {
        m
        for m in _imports(path)
        if _top(m) in {"libp2p", "multiaddr"}
        or m.startswith(("p2pchat.node", "p2pchat.net", "p2pchat.storage"))
    }
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_rules_catch_a_violation(tmp_path: Path) -> None:
    """The checker itself can fail: a file that imports trio and reads the clock is flagged."""
    sample = tmp_path / "bad.py"
    sample.write_text("import trio\nimport time\nx = time.time()\nfrom os import urandom\n")
    assert "trio" in set(_imports(sample))
    assert ("time", "time") in set(_calls(sample))
    assert ("os", "urandom") in set(_calls(sample))
