"""RPC tokens: the admin token file and minted tokens with fewer scopes.

A node's home holds::

    <home>/rpc.token         the admin token, in clear (0600): the CLI reads it to connect
    <home>/rpc-tokens.json   minted tokens (0600): label, scopes and a BLAKE2b hash only

Minted tokens are shown once, at :func:`mint_token`, and stored only hashed, so the
tokens file can be listed or backed up without handing out access. A token is 32
random bytes, base64url without padding, with a ``p2pc_`` prefix that secret scanners
can match. Comparison is by hash and constant-time.

The server re-reads the tokens file at every ``rpc.hello`` (it is tiny), so a token
minted or revoked by the CLI while the node runs takes effect on the next connection.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from p2pchat.errors import ConfigError, NotFoundError, StorageError
from p2pchat.rpc.registry import SCOPES
from p2pchat_crypto.kdf import blake2b, constant_time_equal
from p2pchat_crypto.sealed import Rng

__all__ = [
    "TOKEN_FILE",
    "TOKENS_FILE",
    "TokenInfo",
    "TokenStore",
    "ensure_admin_token",
    "read_admin_token",
    "mint_token",
    "revoke_token",
    "list_tokens",
]

TOKEN_FILE: Final = "rpc.token"  # noqa: S105 - a file name, not a secret
TOKENS_FILE: Final = "rpc-tokens.json"
_PREFIX: Final = "p2pc_"
_PERSON: Final = b"p2pchat-rpc-tok1"
_ALL_SCOPES: Final = frozenset(SCOPES)


def _new_token(rng: Rng) -> str:
    return _PREFIX + base64.urlsafe_b64encode(rng(32)).rstrip(b"=").decode("ascii")


def _hash(token: str) -> bytes:
    return blake2b(token.encode("utf-8"), size=32, person=_PERSON)


def _write_private(path: Path, data: bytes, *, exclusive: bool) -> None:
    """Write owner-only (0600) from the first byte: never a window with wider permissions."""
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def ensure_admin_token(home: Path, *, rng: Rng) -> str:
    """The admin token of ``home``, created (0600, in a 0700 home) on first use."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = home / TOKEN_FILE
    with contextlib.suppress(FileExistsError):
        _write_private(path, (_new_token(rng) + "\n").encode("ascii"), exclusive=True)
    return read_admin_token(home)


def read_admin_token(home: Path) -> str:
    """The admin token a local client presents by default."""
    try:
        token = (home / TOKEN_FILE).read_text("ascii").strip()
    except FileNotFoundError:
        raise ConfigError(f"no RPC token in {home}: is this a node home?") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"cannot read the RPC token file: {type(exc).__name__}") from None
    if not token.startswith(_PREFIX):
        raise StorageError("the RPC token file is corrupt")
    return token


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A minted token as listed: never the token itself."""

    token_id: str
    label: str
    scopes: frozenset[str]


def _load(home: Path) -> list[dict[str, object]]:
    try:
        raw = (home / TOKENS_FILE).read_bytes()
    except FileNotFoundError:
        return []
    try:
        doc = json.loads(raw)
    except ValueError:
        raise StorageError("the RPC tokens file is corrupt") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tokens"), list):
        raise StorageError("the RPC tokens file is corrupt")
    entries: list[dict[str, object]] = doc["tokens"]
    return entries


def _save(home: Path, entries: list[dict[str, object]]) -> None:
    data = json.dumps({"version": 1, "tokens": entries}, indent=1, sort_keys=True)
    _write_private(home / TOKENS_FILE, data.encode(), exclusive=False)


def mint_token(home: Path, *, scopes: Iterable[str], label: str, rng: Rng) -> tuple[str, str]:
    """Create a token limited to ``scopes``; returns ``(token_id, token)``. Shown once."""
    wanted = frozenset(scopes)
    if not wanted or not wanted <= _ALL_SCOPES:
        raise ConfigError(f"scopes must be a non-empty subset of {sorted(_ALL_SCOPES)}")
    token = _new_token(rng)
    token_id = _hash(token)[:6].hex()
    entries = _load(home)
    entries.append(
        {"id": token_id, "label": label, "scopes": sorted(wanted), "hash": _hash(token).hex()}
    )
    _save(home, entries)
    return token_id, token


def revoke_token(home: Path, token_id: str) -> None:
    entries = _load(home)
    kept = [e for e in entries if e.get("id") != token_id]
    if len(kept) == len(entries):
        raise NotFoundError(f"no RPC token with id {token_id!r}")
    _save(home, kept)


def list_tokens(home: Path) -> list[TokenInfo]:
    return [
        TokenInfo(str(e.get("id")), str(e.get("label")), frozenset(_scopes_of(e)))
        for e in _load(home)
    ]


def _scopes_of(entry: dict[str, object]) -> set[str]:
    scopes = entry.get("scopes")
    if not isinstance(scopes, list):
        return set()
    return {s for s in scopes if isinstance(s, str) and s in _ALL_SCOPES}


class TokenStore:
    """What the server asks at ``rpc.hello``: which scopes does this token grant?"""

    def __init__(self, home: Path) -> None:
        self._home = home

    def __repr__(self) -> str:
        return f"TokenStore(home={str(self._home)!r})"

    def authenticate(self, token: str) -> frozenset[str] | None:
        """The token's scopes, or ``None`` for an unknown token (checked in constant time)."""
        presented = _hash(token)
        granted: frozenset[str] | None = None
        admin = read_admin_token(self._home)
        if constant_time_equal(presented, _hash(admin)):
            granted = _ALL_SCOPES
        for entry in _load(self._home):
            stored = entry.get("hash")
            if isinstance(stored, str) and constant_time_equal(presented, _hex(stored)):
                granted = granted or frozenset(_scopes_of(entry))
        return granted


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""
