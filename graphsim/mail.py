"""Simulated Exchange mailboxes with Graph's delta semantics.

Every change to a folder is appended to that folder's change log with a sequence number. A
delta round reads the log after the round's starting point: a message's first appearance
carries all its properties, later changes only the properties that changed (Graph's partial
updates), and a message that left the folder (deleted or moved) appears as `@removed`. Paging
and the final delta link are opaque tokens that encode positions in that log; state older than
the folder's `expired_before` answers 410 `syncStateNotFound`, as Graph does.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

WELL_KNOWN_FOLDERS = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "archive": "Archive",
    "junkemail": "Junk Email",
}


class SyncStateExpired(Exception):
    """The delta or skip token points before what the folder still remembers."""


@dataclass
class Change:
    seq: int
    message_id: str
    removed: bool = False
    properties: tuple[str, ...] = ()


@dataclass
class Folder:
    id: str
    display_name: str
    parent_id: str | None
    well_known: str | None = None
    log: list[Change] = field(default_factory=list)
    expired_before: int = 0


@dataclass
class Mailbox:
    """One user's or shared mailbox: folders, messages (by immutable id) and change logs."""

    address: str
    folders: dict[str, Folder] = field(default_factory=dict)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    location: dict[str, str] = field(default_factory=dict)
    folder_log: list[Change] = field(default_factory=list)
    attachments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def with_standard_folders(cls, address: str) -> Mailbox:
        mailbox = cls(address=address)
        root = mailbox._new_id("folder")
        mailbox.folders[root] = Folder(id=root, display_name="Top of Information Store",
                                       parent_id=None)  # fmt: skip
        for role, name in WELL_KNOWN_FOLDERS.items():
            mailbox.add_folder(name, parent_id=root, well_known=role)
        return mailbox

    def _new_id(self, kind: str) -> str:
        raw = f"{self.address}:{kind}:{next(self._ids)}".encode()
        return "AAMk" + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def folder(self, key: str) -> Folder:
        """By id or by well-known name (`inbox`), as Graph accepts both."""
        if key in self.folders:
            return self.folders[key]
        for folder in self.folders.values():
            if folder.well_known == key.lower():
                return folder
        raise KeyError(key)

    def add_folder(self, name: str, *, parent_id: str, well_known: str | None = None) -> Folder:
        with self.lock:
            folder = Folder(id=self._new_id("folder"), display_name=name, parent_id=parent_id,
                            well_known=well_known)  # fmt: skip
            self.folders[folder.id] = folder
            self.folder_log.append(Change(seq=next(self._seq), message_id=folder.id))
            return folder

    def rename_folder(self, key: str, name: str) -> None:
        with self.lock:
            folder = self.folder(key)
            folder.display_name = name
            self.folder_log.append(Change(seq=next(self._seq), message_id=folder.id))

    def delete_folder(self, key: str) -> None:
        """Delete a user folder with its subfolders and messages."""
        with self.lock:
            folder = self.folder(key)
            for child in [f for f in self.folders.values() if f.parent_id == folder.id]:
                self.delete_folder(child.id)
            for message_id in [m for m, f in self.location.items() if f == folder.id]:
                self.delete_message(message_id)
            del self.folders[folder.id]
            self.folder_log.append(Change(seq=next(self._seq), message_id=folder.id, removed=True))

    def folder_delta(self, *, since: int, until: int) -> list[dict[str, Any]]:
        """Folders changed in (since, until], each once, as Graph's mailFolders/delta lists
        them: the whole tree flattened, with parent ids; deleted ones as `@removed`."""
        with self.lock:
            changed = dict.fromkeys(c.message_id for c in self.folder_log if since < c.seq <= until)
            items = []
            for folder_id in changed:
                folder = self.folders.get(folder_id)
                if folder is None:
                    if since:
                        items.append({"id": folder_id, "@removed": {"reason": "deleted"}})
                elif folder.parent_id is not None:
                    items.append(folder_item(folder))
            return items

    def _log(self, folder: Folder, message_id: str, **change: Any) -> None:
        folder.log.append(Change(seq=next(self._seq), message_id=message_id, **change))

    def add_message(self, folder_key: str, **properties: Any) -> str:
        with self.lock:
            folder = self.folder(folder_key)
            message_id = self._new_id("message")
            self.messages[message_id] = {"id": message_id, **properties}
            self.location[message_id] = folder.id
            self._log(folder, message_id)
            return message_id

    def add_attachment(
        self, message_id: str, *, name: str, content: bytes, content_type: str, inline: bool = False
    ) -> str:
        """A file attachment; the message then reports `hasAttachments`."""
        with self.lock:
            attachment_id = self._new_id("attachment")
            self.attachments.setdefault(message_id, []).append(
                {
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "id": attachment_id,
                    "name": name,
                    "contentType": content_type,
                    "size": len(content),
                    "isInline": inline,
                    "contentBytes": base64.b64encode(content).decode(),
                }
            )
            self.update_message(message_id, hasAttachments=True)
            return attachment_id

    def update_message(self, message_id: str, **properties: Any) -> None:
        with self.lock:
            self.messages[message_id].update(properties)
            folder = self.folders[self.location[message_id]]
            self._log(folder, message_id, properties=tuple(properties))

    def move_message(self, message_id: str, folder_key: str) -> None:
        """Immutable ids survive a move: removed from one folder, added to the other."""
        with self.lock:
            source = self.folders[self.location[message_id]]
            target = self.folder(folder_key)
            self._log(source, message_id, removed=True)
            self.location[message_id] = target.id
            self._log(target, message_id)

    def delete_message(self, message_id: str) -> None:
        with self.lock:
            folder = self.folders[self.location.pop(message_id)]
            del self.messages[message_id]
            self._log(folder, message_id, removed=True)

    def expire_sync_state(self, folder_key: str) -> None:
        """Forget the folder's history: every older delta token now answers 410."""
        with self.lock:
            folder = self.folder(folder_key)
            folder.expired_before = next(self._seq)

    def current_seq(self) -> int:
        with self.lock:
            return next(self._seq)

    def delta_page(
        self, folder_key: str, *, since: int, until: int, offset: int, page_size: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of the round (since, until]: changes collapsed per message, in order.

        Returns the items and whether more pages follow.
        """
        with self.lock:
            folder = self.folder(folder_key)
            if since and since < folder.expired_before:
                raise SyncStateExpired(folder.id)
            items = self._collapse(folder, since, until, first_sync=since == 0)
        page = items[offset : offset + page_size]
        return page, offset + page_size < len(items)

    def _collapse(self, folder: Folder, since: int, until: int, *, first_sync: bool) -> list:
        latest: dict[str, dict[str, Any]] = {}
        for change in folder.log:
            if not since < change.seq <= until:
                continue
            if change.removed:
                latest[change.message_id] = {
                    "id": change.message_id,
                    "@removed": {"reason": "deleted"},
                }
                continue
            message = self.messages.get(change.message_id)
            here = self.location.get(change.message_id) == folder.id
            if message is None or not here:
                continue
            previous = latest.get(change.message_id)
            if (
                change.properties
                and not first_sync
                and (previous is None or "@removed" not in previous)
            ):
                partial = previous or {"id": change.message_id}
                latest[change.message_id] = {
                    **partial,
                    **{name: message.get(name) for name in change.properties},
                }
            else:
                latest[change.message_id] = dict(message)
        if first_sync:
            return [item for item in latest.values() if "@removed" not in item]
        return list(latest.values())


def folder_item(folder: Folder) -> dict[str, Any]:
    return {
        "id": folder.id,
        "displayName": folder.display_name,
        "parentFolderId": folder.parent_id,
        "wellKnownName": folder.well_known,
    }


def encode_token(**state: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    padded = token + "=" * (-len(token) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode()))
