"""The node's ``devices.*`` RPC methods (``protocol-spec/rpc.md`` §9.3, Devices).

A thin translation, like :mod:`p2pchat.api.methods`: hex in params and results, every call
through the node's public device API. A *DEVICE* param takes a device key (64 hex digits),
a unique prefix of at least 4 hex digits, or the unique name of one of our devices, as
``devices list`` shows them. Joining an account is not here: a node that runs already has
an account; the new device joins before its node starts (``p2pchat devices join``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from p2pchat.devices import DeviceInfo
from p2pchat.errors import ConfigError, NotFoundError
from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat.protocol.device_history import MAX_HISTORY_MESSAGES
from p2pchat.protocol.device_link import LINK_TTL_MS
from p2pchat.rpc import Bounds, NoParams, Registry

if TYPE_CHECKING:
    from p2pchat.node import Node

__all__ = ["register_device_methods", "device_to_dict", "resolve_device"]

_DEVICE = Bounds(max_len=128)


@dataclass(frozen=True, slots=True)
class _DeviceParams:
    device: Annotated[str, _DEVICE]


@dataclass(frozen=True, slots=True)
class _RenameParams:
    device: Annotated[str, _DEVICE]
    name: Annotated[str, Bounds(max_len=64)]


@dataclass(frozen=True, slots=True)
class _LinkParams:
    ttl_ms: Annotated[int, Bounds(min=10_000, max=LINK_TTL_MS)] = LINK_TTL_MS


@dataclass(frozen=True, slots=True)
class _ConfirmParams:
    accept: bool


@dataclass(frozen=True, slots=True)
class _HistorySyncParams:
    device: Annotated[str, _DEVICE]
    since: Annotated[int, Bounds(min=0, max=(1 << 53) - 1)] = 0
    max: Annotated[int, Bounds(min=1, max=MAX_HISTORY_MESSAGES)] = MAX_HISTORY_MESSAGES


def device_to_dict(info: DeviceInfo) -> dict[str, Any]:
    return {
        "device": info.device.hex(),
        "peer_id": peer_id_from_ed25519(info.device),
        "name": info.name,
        "created": info.created,
        "state": info.state,
        "this_device": info.this_device,
        "revoked_at": info.revoked_at,
    }


def resolve_device(text: str, devices: list[DeviceInfo]) -> bytes:
    """A DEVICE param: key, unique hex prefix (4+ digits) or unique name."""
    cleaned = text.strip().lower().replace(" ", "")
    if len(cleaned) == 64:
        try:
            return bytes.fromhex(cleaned)
        except ValueError:
            pass
    by_prefix = (
        [d for d in devices if d.device.hex().startswith(cleaned)]
        if len(cleaned) >= 4 and all(c in "0123456789abcdef" for c in cleaned)
        else []
    )
    by_name = [d for d in devices if d.name and d.name.lower() == text.strip().lower()]
    found = by_prefix or by_name
    if not found:
        raise NotFoundError(f"no device of this account matches {text!r} (see `devices list`)")
    if len(found) > 1:
        raise ConfigError(f"{text!r} matches several devices: give more of the key")
    return found[0].device


def register_device_methods(registry: Registry, node: Node) -> None:
    """``devices.*``: the devices of our account."""

    async def devices_list(_: object) -> list[dict[str, Any]]:
        """Our account's devices: this one first, the others by age, then revoked ones."""
        return [device_to_dict(d) for d in await node.refresh_devices()]

    async def devices_link(p: _LinkParams) -> dict[str, Any]:
        """A one-time link code for a new device (a ``device.link_request`` follows)."""
        invite = node.link_device(ttl_ms=p.ttl_ms)
        return {"code": invite.code, "expires": invite.expires}

    async def devices_confirm(p: _ConfirmParams) -> dict[str, Any]:
        """Accept (the confirmation codes match) or refuse the device waiting to link."""
        request = node.confirm_link(p.accept)
        return {
            "device": request.device.hex(),
            "name": request.name,
            "confirm": request.confirm,
            "accepted": p.accept,
        }

    async def devices_rename(p: _RenameParams) -> dict[str, Any]:
        """Name one of our devices (names stay on this device, never published)."""
        device = resolve_device(p.device, node.devices())
        return device_to_dict(await node.rename_device(device, p.name))

    async def devices_revoke(p: _DeviceParams) -> dict[str, Any]:
        """Revoke one of our other devices (signed, published; it gets no new messages)."""
        device = resolve_device(p.device, node.devices())
        return device_to_dict(await node.revoke_device(device))

    async def devices_history_sync(p: _HistorySyncParams) -> dict[str, Any]:
        """Ask another device of ours for our direct-message history (its user consents)."""
        device = resolve_device(p.device, node.devices())
        result = await node.sync_history(device, since=p.since, max_messages=p.max)
        return {
            "device": result.device.hex(),
            "received": result.received,
            "imported": result.imported,
            "total": result.total,
            "done": result.done,
        }

    async def devices_history_confirm(p: _ConfirmParams) -> dict[str, Any]:
        """Send (or refuse) the history a device of ours asked for."""
        ask = node.confirm_history(p.accept)
        return {
            "device": ask.device.hex(),
            "since": ask.since,
            "max": ask.max,
            "resume": ask.resume,
            "accepted": p.accept,
        }

    async def devices_history_pending(_: object) -> dict[str, Any] | None:
        """The history request waiting for this device's consent, if any."""
        ask = node.pending_history()
        if ask is None:
            return None
        return {
            "device": ask.device.hex(),
            "since": ask.since,
            "max": ask.max,
            "resume": ask.resume,
        }

    registry.add("devices.list", devices_list, scope="read", params=NoParams)
    registry.add("devices.link", devices_link, scope="admin", params=_LinkParams)
    registry.add("devices.confirm", devices_confirm, scope="admin", params=_ConfirmParams)
    registry.add("devices.rename", devices_rename, scope="admin", params=_RenameParams)
    registry.add("devices.revoke", devices_revoke, scope="admin", params=_DeviceParams)
    registry.add(
        "devices.history_sync", devices_history_sync, scope="admin", params=_HistorySyncParams
    )
    registry.add("devices.history_pending", devices_history_pending, scope="read", params=NoParams)
    registry.add(
        "devices.history_confirm", devices_history_confirm, scope="admin", params=_ConfirmParams
    )
