"""The keystore file in a node's home: read, write (never silently replacing a key), and
:func:`open_or_create`, the one entry point a node uses to load its identity.

The format (sealing, unlocking, the passphrase types) is :mod:`p2pchat.identity.keystore`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from p2pchat.identity.home import Home, atomic_write
from p2pchat_crypto.sealed import Rng

from ..errors import (
    KeystoreCorruptError,
    KeystoreExistsError,
    KeystoreMissingError,
    WrongPassphraseError,
)
from .keystore import (
    KEYSTORE_KIND,
    MAX_KEYSTORE_SIZE,
    KdfLimits,
    LockedKeystore,
    Protection,
    UnlockedIdentity,
    Unprotected,
    _damaged,
)

__all__ = [
    "PassphrasePurpose",
    "PassphraseSource",
    "read_keystore",
    "write_keystore",
    "open_or_create",
]


class PassphrasePurpose(enum.Enum):
    """Why a passphrase is asked for: to open a keystore, or to protect a new one."""

    UNLOCK = "unlock"
    CREATE = "create"


#: Supplies the passphrase when (and only when) one is needed. For ``UNLOCK`` it must
#: return a :class:`Passphrase`; for ``CREATE`` it may return :data:`UNPROTECTED`.
PassphraseSource = Callable[[PassphrasePurpose], Protection]


def read_keystore(
    path: Path, *, kinds: tuple[str, ...] = (KEYSTORE_KIND,), home: Home | None = None
) -> LockedKeystore:
    """Read and parse a keystore or backup file (no passphrase needed).

    ``home`` is the home the keystore belongs to (``None`` for a backup file elsewhere);
    it only shapes the message when the file is missing.
    """
    try:
        data = path.read_bytes() if path.stat().st_size <= MAX_KEYSTORE_SIZE else None
    except FileNotFoundError:
        if home is not None and not home.exists():
            raise KeystoreMissingError(
                f"There is no p2pchat home at {home.path}. Create an identity with "
                "`p2pchat keys generate`, or point --home / P2PCHAT_HOME at an existing one."
            ) from None
        if home is None:
            raise KeystoreMissingError(f"There is no file at {path}.") from None
        raise KeystoreMissingError(
            f"There is no keystore at {path}. Create one with `p2pchat keys generate`."
        ) from None
    except IsADirectoryError:
        raise KeystoreCorruptError(f"{path} is a directory, not a keystore file.") from None
    except OSError as exc:
        raise KeystoreCorruptError(f"Cannot read {path}: {exc.strerror}.") from None
    if data is None:
        raise KeystoreCorruptError(_damaged("it is far too large to be a keystore"))
    return LockedKeystore.from_bytes(data, kinds=kinds)


def write_keystore(
    home: Home, data: bytes, *, force: bool, now: int, keep_backup: bool = True
) -> Path | None:
    """Save keystore bytes into ``home``; never silently replace an existing key.

    Without ``force`` an existing keystore raises :class:`KeystoreExistsError` (checked
    atomically: the new file is linked into place, which fails if one appeared
    meanwhile). With ``force`` the old file is first copied to a timestamped backup
    beside it, whose path is returned. ``keep_backup=False`` is for re-encrypting the
    *same* key (``keys passwd``): a copy under the old passphrase would defeat changing it.
    """
    home.ensure()
    path = home.keystore_path
    if not force:
        try:
            atomic_write(path, data, overwrite=False)
        except FileExistsError:
            raise KeystoreExistsError(
                f"A keystore already exists at {path}. Refusing to overwrite a key; use "
                "--force to replace it (the old file is kept as a timestamped backup)."
            ) from None
        return None
    backup = None
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        old = None
    if old is not None and keep_backup:
        backup = _backup_path(path, now)
        atomic_write(backup, old, overwrite=False)
    atomic_write(path, data)
    return backup


def _backup_path(path: Path, now: int) -> Path:
    stamp = datetime.fromtimestamp(now / 1000, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.name}.bak-{stamp}")
    counter = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak-{stamp}-{counter}")
        counter += 1
    return candidate


def open_or_create(
    home: Home,
    *,
    passphrase: PassphraseSource,
    create: bool,
    rng: Rng,
    now: int,
    limits: KdfLimits | None = None,
) -> tuple[UnlockedIdentity, bool]:
    """Unlock the keystore in ``home``, or create it first when ``create`` allows it.

    Returns ``(identity, created)``. This is the one entry point a node uses to load
    its identity; ``passphrase`` is called only when one is needed.
    """
    path = home.keystore_path
    if not path.exists() and create:
        identity = UnlockedIdentity.generate(rng=rng, now=now)
        protection = passphrase(PassphrasePurpose.CREATE)
        data = identity.lock(protection, rng=rng, limits=limits)
        write_keystore(home, data, force=False, now=now)
        return identity, True
    locked = read_keystore(path, home=home)
    secret = passphrase(PassphrasePurpose.UNLOCK) if locked.protected else None
    if isinstance(secret, Unprotected):
        raise WrongPassphraseError("This keystore is protected by a passphrase.")
    return locked.unlock(secret), False
