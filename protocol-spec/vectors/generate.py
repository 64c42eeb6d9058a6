"""Regenerate (or check) every test-vector set of protocol-spec/vectors/.

Each ``gen_*.py`` beside this file is one vector set. It defines
``generate() -> dict[str, str]``: file path relative to ``protocol-spec/vectors/`` (it may
climb out with ``../``, as the wire generator does for ``../schemas/*.cddl``) to the exact
text that file must hold. Generation is deterministic (fixed seeds, fixed
times), so regenerating must reproduce what is committed.

    python protocol-spec/vectors/generate.py           # write every file
    python protocol-spec/vectors/generate.py --check   # exit 1 if any committed file differs
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def generators() -> list[ModuleType]:
    modules = []
    for path in sorted(HERE.glob("gen_*.py")):
        spec = importlib.util.spec_from_file_location(f"_vectors_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while executing it
        spec.loader.exec_module(module)
        modules.append(module)
    return modules


def expected_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for module in generators():
        produced = module.generate()
        clash = files.keys() & produced.keys()
        if clash:
            raise SystemExit(f"two generators write {sorted(clash)}")
        files.update(produced)
    return files


def differences() -> list[str]:
    """Paths whose committed text differs from a fresh generation (or is missing)."""
    return [
        rel
        for rel, text in sorted(expected_files().items())
        if not (HERE / rel).is_file() or (HERE / rel).read_text() != text
    ]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        stale = differences()
        for rel in stale:
            print(f"stale or missing: protocol-spec/vectors/{rel}")
        return 1 if stale else 0
    for rel, text in sorted(expected_files().items()):
        target = HERE / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote protocol-spec/vectors/{rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
