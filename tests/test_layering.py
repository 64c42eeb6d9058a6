"""The import rules of ARCHITECTURE.md, enforced on the source text (AST), not by convention.

* ``crypto/`` (p2pchat_crypto) imports nothing from ``p2pchat`` and no I/O library.
* ``p2pchat/protocol/`` is sans-IO: no trio, libp2p, sqlite3, sockets, asyncio, storage or net.
* Neither reads the clock or global randomness directly.
* ``p2pchat/net/`` and ``p2pchat/storage/`` do not import the node, CLI or RPC.
* Every ``p2pchat`` package stands in one layer of :data:`LAYERS` and imports only from
  lower layers (or from inside itself): nothing imports upward or sideways.
* No import cycle among ``p2pchat`` modules.

Every import counts, wherever it is written: at module level, inside a function, and
under ``if TYPE_CHECKING:``. A function-level import still ties the two modules (it only
hides the cycle until run time), and a type-only cycle still means two modules that
cannot be read, tested or moved one without the other; so neither is an exception.
Only the root package ``p2pchat`` (``__init__.py``, the lazy public facade) stands
outside the layers: it may name anything, and anything may read ``__version__`` from it;
it still takes part in the cycle check.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
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


#: The layers of ``p2pchat``, lowest first; the one place that gives the order. A module
#: belongs to the entry that names it or its package; it may import from lower layers and
#: from its own package, never from a higher layer nor from a sibling in its own layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    # the exception tree; pure text helpers and the API's vocabulary (stdlib only)
    ("p2pchat.errors", "p2pchat.text", "p2pchat.vocabulary", "p2pchat.qr"),
    ("p2pchat.protocol",),  # sans-IO
    ("p2pchat.net", "p2pchat.storage", "p2pchat.rpc"),  # adapters and the RPC framework
    ("p2pchat.config", "p2pchat.events", "p2pchat.media"),  # shared by the services
    ("p2pchat.identity",),
    ("p2pchat.blobs",),  # attachments: sealed blobs, their transfer and serving
    ("p2pchat.dm",),
    ("p2pchat.groups",),
    ("p2pchat.devices",),  # multi-device accounts: linking, the device list, revocation
    ("p2pchat.node",),  # the embedding API; never the RPC layer
    ("p2pchat.api", "p2pchat.client"),  # the node's RPC methods; RPC clients
    ("p2pchat.aio",),  # the asyncio client and runner
    ("p2pchat.tui",),  # `p2pchat chat`: a client of the RPC (through aio) only
    ("p2pchat.cli",),  # the front end (`p2pchat chat` opens the tui)
)
ROOT_PACKAGE = "p2pchat"


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


# -- the import graph ---------------------------------------------------------------------


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path, package: str = "p2pchat") -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (every import statement, anywhere
    in the file; relative imports resolved; ``from pkg import mod`` counts as ``pkg.mod``)."""
    files = {_module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if _top(a.name) == package)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                if _top(module) != package:
                    continue
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    targets.add(sub if sub in files else module)
        graph[name] = targets - {name}
    return graph


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Every import cycle, as the modules of each strongly connected component (Tarjan),
    sorted; empty when the graph is acyclic."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a deep chain of imports cannot hit the recursion limit.
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def layer_of(module: str) -> tuple[int, str] | None:
    """``(layer index, the LAYERS entry)`` holding ``module``; ``None`` if none does."""
    for level, entries in enumerate(LAYERS):
        for entry in entries:
            if module == entry or module.startswith(entry + "."):
                return level, entry
    return None


def upward_imports(graph: Mapping[str, set[str]]) -> list[str]:
    """Every import that goes up a layer or sideways into a sibling of the same layer."""
    bad = []
    for module, targets in sorted(graph.items()):
        if module == ROOT_PACKAGE:
            continue
        here = layer_of(module)
        assert here is not None, f"{module} is in no layer: add its package to LAYERS"
        for target in sorted(targets - {ROOT_PACKAGE}):
            there = layer_of(target)
            assert there is not None, f"{target} is in no layer: add its package to LAYERS"
            if there[0] > here[0] or (there[0] == here[0] and there[1] != here[1]):
                bad.append(f"{module} ({here[1]}) imports {target} ({there[1]})")
    return bad


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


# -- layers and cycles --------------------------------------------------------------------


def test_no_import_cycle_among_p2pchat_modules() -> None:
    assert find_cycles(import_graph(ROOT)) == []


def test_no_package_imports_one_above_it() -> None:
    assert upward_imports(import_graph(ROOT)) == []


def test_every_package_has_a_layer() -> None:
    packages = {p.parent for p in (ROOT / "p2pchat").rglob("__init__.py")} - {ROOT / "p2pchat"}
    modules = {p for p in (ROOT / "p2pchat").glob("*.py") if p.name != "__init__.py"}
    for path in sorted(packages | modules):
        name = _module_name(path if path.is_file() else path / "__init__.py", ROOT)
        assert layer_of(name) is not None, f"{name} is in no layer: add it to LAYERS"


def test_the_node_never_imports_its_rpc_layer() -> None:
    graph = import_graph(ROOT)
    for module in (
        m for m in graph if layer_of(m) == (LAYERS.index(("p2pchat.node",)), "p2pchat.node")
    ):
        bad = {t for t in graph[module] if t.startswith(("p2pchat.rpc", "p2pchat.api"))}
        assert not bad, f"{module} imports {sorted(bad)}"


#: The four circles the feature layout cut, as they were written: each must be caught
#: again if it comes back (module-level, function-level and TYPE_CHECKING imports alike).
OLD_CIRCLES = {
    "node and its RPC methods": {
        "p2pchat/node/core.py": "def serve():\n    from p2pchat.api import serve\n",
        "p2pchat/api/serve.py": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from p2pchat.node.core import Node\n",
    },
    "rpc server, session and transport": {
        "p2pchat/rpc/server.py": "from p2pchat.rpc.session import Session\n"
        "from p2pchat.rpc.transport import open_listeners\n",
        "p2pchat/rpc/session.py": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from p2pchat.rpc.server import RpcServer, ServerConfig\n",
        "p2pchat/rpc/transport.py": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from p2pchat.rpc.server import ServerConfig\n",
    },
    "store protocol and its records": {
        "p2pchat/storage/base.py": "from .records import MailboxQuota\n",
        "p2pchat/storage/records.py": "def check():\n    from .base import QuotaExceededError\n",
    },
    "memory network and its services": {
        "p2pchat/net/memory.py": "from ._memory_services import MemoryDht\n",
        "p2pchat/net/_memory_services.py": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .memory import MemoryHub\n",
    },
}


@pytest.mark.parametrize("name", sorted(OLD_CIRCLES))
def test_each_old_circle_would_be_caught(tmp_path: Path, name: str) -> None:
    """The checker can fail: a synthetic tree holding one old circle is reported, and the
    real tree (checked above) holds none of them."""
    for relative, text in OLD_CIRCLES[name].items():
        path = tmp_path / relative
        for folder in [*reversed(path.relative_to(tmp_path).parents)][1:]:
            (tmp_path / folder).mkdir(exist_ok=True)
            (tmp_path / folder / "__init__.py").touch()
        path.write_text(text)
    expected = sorted(r.removesuffix(".py").replace("/", ".") for r in OLD_CIRCLES[name])
    assert find_cycles(import_graph(tmp_path)) == [expected]


def test_an_upward_import_is_caught() -> None:
    graph = {"p2pchat.storage.base": {"p2pchat.events"}, "p2pchat.dm.service": {"p2pchat.api"}}
    graph |= {"p2pchat.net.memory": {"p2pchat.rpc.server"}}  # a sibling of the same layer
    assert upward_imports(graph) == [
        "p2pchat.dm.service (p2pchat.dm) imports p2pchat.api (p2pchat.api)",
        "p2pchat.net.memory (p2pchat.net) imports p2pchat.rpc.server (p2pchat.rpc)",
        "p2pchat.storage.base (p2pchat.storage) imports p2pchat.events (p2pchat.events)",
    ]
