"""The node's home directory: where it is, how it is created, and how files in it are written.

A home holds the identity keystore, the node's configuration and (later) its store. It
contains private keys, so it is created with mode 0700 and every file in it with 0600,
and files are replaced *atomically*: a crash or a full disk leaves either the old file or
the new one, never a torn mixture. That matters most for the keystore, whose loss is the
loss of the identity.

Where the home is: ``--home`` beats ``$P2PCHAT_HOME`` beats the platform's user data
directory (``platformdirs.user_data_dir("p2pchat")``). Resolution is a pure function of
its inputs so the CLI and tests agree on it without touching the process environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = [
    "HOME_ENV",
    "KEYSTORE_FILENAME",
    "CONFIG_FILENAME",
    "DIR_MODE",
    "FILE_MODE",
    "Home",
    "default_home",
    "resolve_home",
    "atomic_write",
    "is_private",
]

HOME_ENV = "P2PCHAT_HOME"
KEYSTORE_FILENAME = "identity.keystore"
CONFIG_FILENAME = "config.json"
DIR_MODE = 0o700
FILE_MODE = 0o600
_MAX_CONFIG_SIZE = 1024 * 1024


def default_home() -> Path:
    """The platform's per-user data directory for p2pchat (not created here)."""
    import platformdirs  # imported lazily: only needed when no home is given

    return Path(platformdirs.user_data_dir("p2pchat", appauthor=False))


def resolve_home(option: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """Pick the home directory: the option, else ``$P2PCHAT_HOME``, else the default.

    An empty value counts as unset, so ``P2PCHAT_HOME= p2pchat ...`` means the default
    rather than the current directory. ``~`` is expanded; the path is made absolute so
    messages name an unambiguous place.
    """
    for candidate in (option, env.get(HOME_ENV)):
        if candidate is not None and os.fspath(candidate) != "":
            return Path(candidate).expanduser().absolute()
    return default_home()


@dataclass(frozen=True)
class Home:
    """A node's home directory. Creating the value touches nothing; :meth:`ensure` does."""

    path: Path

    @property
    def keystore_path(self) -> Path:
        return self.path / KEYSTORE_FILENAME

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILENAME

    def exists(self) -> bool:
        return self.path.is_dir()

    def ensure(self) -> None:
        """Create the directory (and missing parents) with mode 0700 if it does not exist.

        An existing directory keeps its mode: tightening a directory the user chose (say
        an existing one given with ``--home``) behind their back would be surprising. A
        path that exists but is not a directory is a :class:`ConfigError`.
        """
        if self.path.exists():
            if not self.path.is_dir():
                raise ConfigError(f"The p2pchat home {self.path} exists but is not a directory.")
            return
        try:
            self.path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            os.chmod(self.path, DIR_MODE)  # mkdir's mode is filtered by the umask
        except OSError as exc:
            raise ConfigError(
                f"Cannot create the p2pchat home {self.path}: {exc.strerror}."
            ) from None

    def read_config(self) -> dict[str, Any]:
        """The saved configuration, or an empty one when there is none yet."""
        try:
            data = self.config_path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"Cannot read {self.config_path}: {exc.strerror}.") from None
        if len(data) > _MAX_CONFIG_SIZE:
            raise ConfigError(f"{self.config_path} is too large to be a p2pchat configuration.")
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"{self.config_path} is not valid JSON.") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{self.config_path} must hold a JSON object.")
        return value

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Replace the configuration atomically (keys sorted so diffs stay readable)."""
        self.ensure()
        text = json.dumps(dict(config), indent=2, sort_keys=True) + "\n"
        atomic_write(self.config_path, text.encode())


def atomic_write(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file.

    The bytes go to a temporary file in the same directory (same filesystem, so the
    rename is atomic), created 0600 by :func:`tempfile.mkstemp`, which is fsynced before
    it is renamed over ``path``; the directory is then fsynced so the rename itself is
    durable. On any failure the temporary file is removed.

    With ``overwrite=False`` the file is hard-linked into place instead of renamed, which
    fails with :class:`FileExistsError` if ``path`` exists: "create unless present" with
    no window between the check and the write.
    """
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            tmp.unlink()
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def is_private(path: Path) -> bool:
    """True when neither group nor others have any access to ``path``."""
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
