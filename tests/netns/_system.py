"""Plumbing below the world: running `ip`/`iptables`, run locks, leftovers and their cleanup.

Every name a run creates is ``<prefix><run id>-<suffix>`` (``p2pt3fa91c-alice``). A live run
holds an exclusive ``flock`` on ``/run/p2pt-netns/<prefix><run id>.lock`` for as long as it
exists; a name whose run holds no lock is a leftover of a run that died (SIGKILL, power cut).
Runs of other processes that are still alive are never leftovers, so parallel test sessions
on one machine do not refuse each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

PREFIX = "p2pt"
RUN_ID_LEN = 6
LOCK_DIR = Path("/run/p2pt-netns")


class NetnsError(RuntimeError):
    """A namespace operation failed, or namespaces cannot be used here."""


class LeftoversError(NetnsError):
    """Names of a previous, dead run still exist: refuse to start until they are cleaned up."""


def sh(
    argv: Sequence[str], *, timeout: float = 10.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run one command, capture its output; a failure names the command and its stderr."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"`{' '.join(argv)}` failed: {exc}") from exc
    if check and done.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()}")
    return done


def available() -> tuple[bool, str]:
    """Whether network namespaces can be used here, and why (not)."""
    if os.geteuid() != 0:
        return False, f"network namespaces need root (running as uid {os.geteuid()})"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return False, f"`{tool}` is not installed (iproute2 / util-linux)"
    probe = sh(["unshare", "--net", "ip", "link", "set", "lo", "up"], check=False)
    if probe.returncode != 0:
        return False, f"cannot create a network namespace: {probe.stderr.strip()}"
    return True, "root, iproute2 present, a network namespace can be created"


def iptables_available() -> tuple[bool, str]:
    """Whether `iptables` exists (NAT, loss and partitions need it)."""
    if shutil.which("iptables") is None:
        return False, "`iptables` is not installed: run `make netns-deps` as root"
    return True, "iptables present"


def namespaces() -> list[str]:
    """Names of all named network namespaces on this machine."""
    out = sh(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def root_links() -> list[str]:
    """Names of the links of the root namespace (ours never live there; checked anyway)."""
    out = sh(["ip", "-o", "link", "show"]).stdout
    return [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def lock_path(prefix: str, run_id: str) -> Path:
    return LOCK_DIR / f"{prefix}{run_id}.lock"


def take_run_lock(prefix: str, run_id: str) -> int:
    """Create and lock this run's lock file; returns the fd (closing it releases the lock)."""
    LOCK_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(lock_path(prefix, run_id), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise NetnsError(
            f"run lock {lock_path(prefix, run_id)} is held by another process"
        ) from None
    return fd


def release_run_lock(prefix: str, run_id: str, fd: int) -> None:
    lock_path(prefix, run_id).unlink(missing_ok=True)
    os.close(fd)


def run_is_live(prefix: str, run_id: str) -> bool:
    """True while a process holds the run's lock (the run is still alive)."""
    try:
        fd = os.open(lock_path(prefix, run_id), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _run_id_of(prefix: str, name: str) -> str | None:
    match = re.fullmatch(rf"{re.escape(prefix)}([0-9a-f]{{{RUN_ID_LEN}}})-.+", name)
    return match.group(1) if match else None


def _is_stale(prefix: str, name: str) -> bool:
    if not name.startswith(prefix):
        return False
    run_id = _run_id_of(prefix, name)
    return run_id is None or not run_is_live(prefix, run_id)


def leftovers(prefix: str = PREFIX) -> list[str]:
    """Namespaces and root links named with `prefix` whose run is dead."""
    names = namespaces() + root_links()
    return sorted(name for name in names if _is_stale(prefix, name))


def kill_namespace_processes(ns: str) -> None:
    """SIGKILL every process still inside namespace `ns`."""
    done = sh(["ip", "netns", "pids", ns], check=False)
    for word in done.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(word), signal.SIGKILL)


def cleanup(prefix: str = PREFIX) -> list[str]:
    """Remove the leftovers of dead runs (their processes, namespaces, links, lock files)."""
    removed = []
    links = set(root_links())
    for name in leftovers(prefix):
        if name in links:
            sh(["ip", "link", "del", name], check=False)
        else:
            kill_namespace_processes(name)
            sh(["ip", "netns", "del", name])
        removed.append(name)
    if LOCK_DIR.is_dir():
        for path in LOCK_DIR.glob(f"{prefix}*.lock"):
            run_id = path.stem[len(prefix) :]
            if not run_is_live(prefix, run_id):
                path.unlink(missing_ok=True)
    return removed
