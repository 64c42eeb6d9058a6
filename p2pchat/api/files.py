"""``files.*``: attachments over RPC (``protocol-spec/rpc.md`` §9.6).

Files are named by their blob id (hex, or a prefix of at least 8 digits). ``files.add``
reads a file *on the node's machine* and ``files.get`` writes one there, so both need
the ``admin`` scope; ``dm.send`` / ``groups.post`` then name added files by id (scope
``send``), which never lets a send-only client read arbitrary files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import trio

from p2pchat.api.shapes import media_to_dict
from p2pchat.errors import NotFoundError
from p2pchat.media import media_of
from p2pchat.protocol.content import MAX_ATTACHMENTS, MediaRef
from p2pchat.rpc import Bounds, NoParams, Registry
from p2pchat.storage.blobs import BlobInfo

if TYPE_CHECKING:
    from p2pchat.node import Node

__all__ = ["register_file_methods", "file_to_dict", "refs_for", "FILE_IDS"]

_FILE_ID = Bounds(max_len=64)
#: ``files`` params of dm.send and groups.post: ids of files to attach.
FILE_IDS = Annotated[list[str] | None, Bounds(max_len=MAX_ATTACHMENTS)]


@dataclass(frozen=True, slots=True)
class _MediaParams:
    media: Annotated[str, Bounds(max_len=4096)]


@dataclass(frozen=True, slots=True)
class _AddParams:
    path: Annotated[str, Bounds(max_len=4096)]
    mime: Annotated[str | None, Bounds(max_len=127)] = None


@dataclass(frozen=True, slots=True)
class _FileParams:
    file: Annotated[str, _FILE_ID]


@dataclass(frozen=True, slots=True)
class _GetParams:
    file: Annotated[str, _FILE_ID]
    out: Annotated[str, Bounds(max_len=4096)]
    overwrite: bool = False


def file_to_dict(info: BlobInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "file_id": info.blob_id.hex(),
        "reason": info.reason,
        "complete": info.complete,
        "held_bytes": info.held_bytes,
        "created": info.created,
        "last_used": info.last_used,
        "holders": list(info.sources),
    }
    if info.ref is not None:
        out.update({k: v for k, v in media_to_dict(info.ref).items() if k != "file_id"})
    return out


def refs_for(node: Node, ids: list[str] | None) -> list[MediaRef]:
    """The media-refs of files this node can open (added or received), by id."""
    refs = []
    for file_id in ids or ():
        info = node.file_info(file_id)
        if info.ref is None or info.ref.key is None:
            raise NotFoundError(f"file {file_id} cannot be attached: this node has not its key")
        refs.append(info.ref)
    return refs


def register_file_methods(registry: Registry, node: Node) -> None:
    async def files_add(p: _AddParams) -> dict[str, Any]:
        """Seal a file of the node's machine into its blob store, ready to attach by id."""
        ref = await node.add_file(p.path, mime=p.mime)
        return file_to_dict(node.file_info(ref.hash))

    async def files_media_hash(p: _MediaParams) -> dict[str, Any]:
        """The hash that names a media file in live groups (``groups.live``): of a file on
        the node's machine, of an http(s) URL's text, or a hash as given."""
        found = await trio.to_thread.run_sync(media_of, p.media)
        return {"media_hash": found.hash, "mime": found.mime, "size": found.size, "url": found.url}

    async def files_list(_: object) -> list[dict[str, Any]]:
        """Files this node holds or can fetch, newest first."""
        return [file_to_dict(i) for i in node.files()]

    async def files_info(p: _FileParams) -> dict[str, Any]:
        return file_to_dict(node.file_info(p.file))

    async def files_fetch(p: _FileParams) -> dict[str, Any]:
        """Download a file from its holders (several at once); file.progress events."""
        return file_to_dict(await node.fetch_file(p.file))

    async def files_get(p: _GetParams) -> dict[str, Any]:
        """Fetch if needed and write the plain file at ``out`` on the node's machine."""
        path = await node.save_file(p.file, Path(p.out), overwrite=p.overwrite)
        return {**file_to_dict(node.file_info(p.file)), "path": str(path)}

    async def files_gc(_: object) -> dict[str, Any]:
        """Delete the blobs retention no longer covers."""
        count, freed = node.collect_files()
        return {"deleted": count, "bytes": freed}

    registry.add("files.add", files_add, scope="admin", params=_AddParams)
    registry.add("files.list", files_list, scope="read", params=NoParams)
    registry.add("files.media_hash", files_media_hash, scope="admin", params=_MediaParams)
    registry.add("files.info", files_info, scope="read", params=_FileParams)
    registry.add("files.fetch", files_fetch, scope="send", params=_FileParams)
    registry.add("files.get", files_get, scope="admin", params=_GetParams)
    registry.add("files.gc", files_gc, scope="admin", params=NoParams)
