"""Token files: permissions, scopes, hashing at rest, no token in any repr or message."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from p2pchat.errors import ConfigError, NotFoundError, StorageError
from p2pchat.rpc.auth import (
    TOKEN_FILE,
    TOKENS_FILE,
    TokenStore,
    ensure_admin_token,
    list_tokens,
    mint_token,
    read_admin_token,
    revoke_token,
)
from tests.conftest import DeterministicRng


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_admin_token_created_once_owner_only(tmp_path: Path, rng: DeterministicRng) -> None:
    token = ensure_admin_token(tmp_path, rng=rng)
    assert token.startswith("p2pc_")
    assert len(token) == 5 + 43
    assert _mode(tmp_path / TOKEN_FILE) == 0o600
    assert ensure_admin_token(tmp_path, rng=DeterministicRng(b"other")) == token
    assert read_admin_token(tmp_path) == token
    assert TokenStore(tmp_path).authenticate(token) == frozenset({"read", "send", "admin"})


def test_missing_and_corrupt_token_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no RPC token"):
        read_admin_token(tmp_path)
    (tmp_path / TOKEN_FILE).write_text("garbage")
    with pytest.raises(StorageError):
        read_admin_token(tmp_path)


def test_minted_tokens_have_their_scopes_and_are_stored_hashed(
    tmp_path: Path, rng: DeterministicRng
) -> None:
    admin = ensure_admin_token(tmp_path, rng=rng)
    token_id, reader = mint_token(tmp_path, scopes=["read"], label="shop", rng=rng)
    _, sender = mint_token(tmp_path, scopes={"read", "send"}, label="bot", rng=rng)
    store = TokenStore(tmp_path)
    assert store.authenticate(reader) == frozenset({"read"})
    assert store.authenticate(sender) == frozenset({"read", "send"})
    assert store.authenticate(admin) == frozenset({"read", "send", "admin"})
    assert store.authenticate("p2pc_wrong") is None
    assert store.authenticate("") is None
    raw = (tmp_path / TOKENS_FILE).read_text()
    assert reader not in raw
    assert sender not in raw
    assert admin not in raw
    assert _mode(tmp_path / TOKENS_FILE) == 0o600
    assert {(t.label, t.scopes) for t in list_tokens(tmp_path)} == {
        ("shop", frozenset({"read"})),
        ("bot", frozenset({"read", "send"})),
    }
    assert all(reader not in repr(t) for t in list_tokens(tmp_path))
    revoke_token(tmp_path, token_id)
    assert store.authenticate(reader) is None
    assert store.authenticate(sender) == frozenset({"read", "send"})
    with pytest.raises(NotFoundError):
        revoke_token(tmp_path, token_id)


@pytest.mark.parametrize("scopes", [[], ["root"], ["read", "write"]])
def test_mint_rejects_bad_scopes(tmp_path: Path, rng: DeterministicRng, scopes: list[str]) -> None:
    with pytest.raises(ConfigError):
        mint_token(tmp_path, scopes=scopes, label="x", rng=rng)


def test_corrupt_tokens_file(tmp_path: Path, rng: DeterministicRng) -> None:
    ensure_admin_token(tmp_path, rng=rng)
    (tmp_path / TOKENS_FILE).write_text("{not json")
    with pytest.raises(StorageError):
        TokenStore(tmp_path).authenticate("p2pc_x")
    (tmp_path / TOKENS_FILE).write_text(json.dumps({"tokens": {}}))
    with pytest.raises(StorageError):
        list_tokens(tmp_path)


def test_store_repr_has_no_token(tmp_path: Path, rng: DeterministicRng) -> None:
    token = ensure_admin_token(tmp_path, rng=rng)
    assert token not in repr(TokenStore(tmp_path))
