"""Home resolution, directory and file permissions, atomic writes, the config file."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import platformdirs
import pytest

from p2pchat.errors import ConfigError
from p2pchat.identity.home import HOME_ENV, Home, atomic_write, default_home, resolve_home


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Umask 0: any restrictive mode we observe was set by our code, not inherited."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_option_beats_env_beats_default(tmp_path: Path) -> None:
    option, env_home = tmp_path / "option", tmp_path / "env"
    assert resolve_home(option, {HOME_ENV: str(env_home)}) == option
    assert resolve_home(None, {HOME_ENV: str(env_home)}) == env_home
    assert resolve_home(None, {}) == default_home()
    assert resolve_home("", {HOME_ENV: ""}) == default_home()


def test_default_is_the_platform_data_dir() -> None:
    assert default_home() == Path(platformdirs.user_data_dir("p2pchat", appauthor=False))


def test_relative_and_tilde_paths_become_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/alice")
    assert resolve_home("~/chat", {}) == Path("/home/alice/chat")
    resolved = resolve_home("rel/home", {})
    assert resolved.is_absolute()
    assert resolved == Path.cwd() / "rel/home"


@pytest.mark.usefixtures("permissive_umask")
def test_ensure_creates_a_private_directory(tmp_path: Path) -> None:
    home = Home(tmp_path / "a" / "home")
    assert not home.exists()
    home.ensure()
    assert home.exists()
    assert _mode(home.path) == 0o700
    home.ensure()  # idempotent


def test_ensure_is_private_even_under_a_strict_umask(tmp_path: Path) -> None:
    old = os.umask(0o277)
    try:
        Home(tmp_path / "home").ensure()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "home") == 0o700


def test_ensure_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        Home(target).ensure()


@pytest.mark.usefixtures("permissive_umask")
def test_atomic_write_creates_0600_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert _mode(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_atomic_write_without_overwrite_keeps_the_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    atomic_write(target, b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_failed_write_keeps_the_old_file_and_removes_the_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "file.bin"
    atomic_write(target, b"old")

    def fail(_src: object, _dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


@pytest.mark.usefixtures("permissive_umask")
def test_config_round_trip(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    assert home.read_config() == {}
    home.write_config({"port": 4001, "bootstrap": ["/ip4/192.0.2.1/tcp/1/p2p/x"]})
    assert home.read_config() == {"port": 4001, "bootstrap": ["/ip4/192.0.2.1/tcp/1/p2p/x"]}
    assert _mode(home.config_path) == 0o600
    assert _mode(home.path) == 0o700


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\udcff"])
def test_bad_config_is_a_config_error(tmp_path: Path, text: str) -> None:
    home = Home(tmp_path)
    home.config_path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError, match="config"):
        home.read_config()
