"""Simulated Exchange mailboxes with Graph's delta semantics.

Every change to a folder is appended to that folder's change log with a sequence number. A
delta round reads the log after the round's starting point: a message's first appearance
carries all its properties, later changes only the properties that changed (Graph's partial
updates), and a message that left the folder (deleted or moved) appears as `@removed`. Paging
and the final delta link are opaque tokens that encode positions in that log; state older than
the folder's `expired_before` answers 410 `syncStateNotFound`, as Graph does.

Messages are stored under their immutable id. Without `Prefer: IdType="ImmutableId"` Graph
hands out "regular" ids instead, which change whenever a message moves to another folder; they
are derived here from the immutable id and the message's move count, so an id handed out
before a move no longer resolves afterwards.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import itertools
import json
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

WELL_KNOWN_FOLDERS = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "archive": "Archive",
    "junkemail": "Junk Email",
}

# Graph returns these only when `$select` names them on a single-message GET; never in delta
# (our decision: Graph does not reliably return them there, the sync client uses `$batch`).
SELECT_ONLY_PROPERTIES = frozenset({"internetMessageHeaders"})
REGULAR_ID_PREFIX = "AQMk"
# Collapsed rounds kept per folder: a client pages through one round at a time, a few clients
# (or a benchmark's repeated rounds) may overlap; older rounds are collapsed again if asked.
COLLAPSED_ROUNDS_KEPT = 8


SEQ = attrgetter("seq")


class SyncStateExpired(Exception):
    """The delta or skip token points before what the folder still remembers."""


@dataclass(slots=True)
class Change:
    """One log entry; `moves` is the message's move count when it happened, which names the
    regular id the change was visible under."""

    seq: int
    message_id: str
    removed: bool = False
    properties: tuple[str, ...] = ()
    moves: int = 0


@dataclass(slots=True)
class DeltaEntry:
    """One message's changes in a round, collapsed.

    `names` is None for a full item (every property) or the changed properties of a partial
    update. Values are read from `message` when a page is served, so a page may show a value
    newer than its round; the next round then reports that change again, as Graph may.
    """

    message_id: str
    moves: int
    message: dict[str, Any] | None
    names: tuple[str, ...] | None = None

    @property
    def removed(self) -> bool:
        return self.message is None


@dataclass
class Folder:
    id: str
    display_name: str
    parent_id: str | None
    well_known: str | None = None
    log: list[Change] = field(default_factory=list)
    expired_before: int = 0
    collapsed: dict[tuple[int, int, bool], list[DeltaEntry]] = field(
        default_factory=dict, repr=False
    )


def regular_id(message_id: str, moves: int) -> str:
    """The id Graph shows without ImmutableId: opaque, and different after every move."""
    raw = f"{message_id}.{moves}".encode()
    return REGULAR_ID_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_regular_id(value: str) -> tuple[str, int] | None:
    if not value.startswith(REGULAR_ID_PREFIX):
        return None
    encoded = value.removeprefix(REGULAR_ID_PREFIX)
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    message_id, _, moves = raw.rpartition(".")
    return (message_id, int(moves)) if moves.isdigit() else None


def immutable_of(public_id: str) -> str:
    """The immutable id behind a regular or immutable id, without asking a mailbox (a regular
    id encodes it), so a test can name a message either way."""
    parsed = _parse_regular_id(public_id)
    return parsed[0] if parsed else public_id


def message_resource(
    message: dict[str, Any], *, public_id: str, select: Collection[str] | None
) -> dict[str, Any]:
    """A message as a single-message GET returns it: select-only properties only if named."""
    if select:
        return {"id": public_id, **{n: message[n] for n in select if n in message and n != "id"}}
    return {
        "id": public_id,
        **{k: v for k, v in message.items() if k != "id" and k not in SELECT_ONLY_PROPERTIES},
    }


@dataclass
class Mailbox:
    """One user's or shared mailbox: folders, messages (by immutable id) and change logs."""

    address: str
    folders: dict[str, Folder] = field(default_factory=dict)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    location: dict[str, str] = field(default_factory=dict)
    moves: dict[str, int] = field(default_factory=dict)
    folder_log: list[Change] = field(default_factory=list)
    attachments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    # Told (address, folder id, change) after each message change is logged, under the lock:
    # it must only queue (see graphsim.subscriptions), never wait.
    change_listener: Callable[[str, str, Change], None] | None = field(
        default=None, repr=False, compare=False
    )
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

    # Folders

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

    # Messages

    def _log(self, folder: Folder, message_id: str, **change: Any) -> None:
        moves = change.pop("moves", self.moves.get(message_id, 0))
        entry = Change(seq=next(self._seq), message_id=message_id, moves=moves, **change)
        folder.log.append(entry)
        if self.change_listener is not None:
            self.change_listener(self.address, folder.id, entry)

    def add_message(self, folder_key: str, **properties: Any) -> str:
        """Store a new message; `parentFolderId` is always the folder it lands in."""
        with self.lock:
            folder = self.folder(folder_key)
            return self._insert(folder, properties)

    def add_messages(self, folder_key: str, items: Iterable[dict[str, Any]]) -> list[str]:
        """Many new messages in one folder under one lock (seeding large mailboxes fast)."""
        with self.lock:
            folder = self.folder(folder_key)
            return [self._insert(folder, properties) for properties in items]

    def _insert(self, folder: Folder, properties: dict[str, Any]) -> str:
        message_id = self._new_id("message")
        self.messages[message_id] = {"id": message_id, **properties, "parentFolderId": folder.id}
        self.location[message_id] = folder.id
        self._log(folder, message_id)
        return message_id

    def add_attachment(
        self,
        message_id: str,
        *,
        name: str,
        content: bytes,
        content_type: str,
        inline: bool = False,
        content_id: str | None = None,
    ) -> str:
        """A file attachment; the message then reports `hasAttachments`. Inline ones carry the
        `contentId` that the HTML body's `cid:` reference names."""
        with self.lock:
            attachment_id = self.new_attachment_id()
            self.attachments.setdefault(message_id, []).append(
                {
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "id": attachment_id,
                    "name": name,
                    "contentType": content_type,
                    "size": len(content),
                    "isInline": inline,
                    **({"contentId": content_id} if content_id else {}),
                    "contentBytes": base64.b64encode(content).decode(),
                }
            )
            self.update_message(message_id, hasAttachments=True)
            return attachment_id

    def new_attachment_id(self) -> str:
        return self._new_id("attachment")

    def remove_attachment(self, message_id: str, attachment_id: str) -> None:
        """KeyError if the message has no such attachment; the last one gone clears
        `hasAttachments`."""
        with self.lock:
            found = self.attachments.get(message_id, [])
            remaining = [a for a in found if a["id"] != attachment_id]
            if len(remaining) == len(found):
                raise KeyError(attachment_id)
            self.attachments[message_id] = remaining
            self.update_message(message_id, hasAttachments=bool(remaining))

    def update_message(self, message_id: str, **properties: Any) -> None:
        with self.lock:
            self.messages[message_id].update(properties)
            folder = self.folders[self.location[message_id]]
            self._log(folder, message_id, properties=tuple(properties))

    def move_message(self, message_id: str, folder_key: str) -> None:
        """Removed from one folder, added to the other; the immutable id survives, the regular
        id changes and `parentFolderId` follows."""
        with self.lock:
            source = self.folders[self.location[message_id]]
            target = self.folder(folder_key)
            self._log(source, message_id, removed=True)
            self.moves[message_id] = self.moves.get(message_id, 0) + 1
            self.location[message_id] = target.id
            self.messages[message_id]["parentFolderId"] = target.id
            self._log(target, message_id)

    def delete_message(self, message_id: str) -> None:
        with self.lock:
            folder = self.folders[self.location.pop(message_id)]
            del self.messages[message_id]
            self.attachments.pop(message_id, None)
            self._log(folder, message_id, removed=True, moves=self.moves.pop(message_id, 0))

    def resolve_message_id(self, public_id: str) -> str:
        """The immutable id behind an immutable or current regular id; KeyError if the message
        is gone or the regular id predates a move (Graph's 404 ErrorItemNotFound)."""
        with self.lock:
            if public_id in self.messages:
                return public_id
            parsed = _parse_regular_id(public_id)
            if parsed and parsed[0] in self.messages and self.moves.get(parsed[0], 0) == parsed[1]:
                return parsed[0]
            raise KeyError(public_id)

    def public_id(self, message_id: str, *, immutable_ids: bool) -> str:
        """The id a response shows for a stored message, in the id type the request asked."""
        if immutable_ids:
            return message_id
        return regular_id(message_id, self.moves.get(message_id, 0))

    # Delta

    def expire_sync_state(self, folder_key: str) -> None:
        """Forget the folder's history: every older delta token now answers 410."""
        with self.lock:
            folder = self.folder(folder_key)
            folder.expired_before = next(self._seq)
            folder.collapsed.clear()

    def current_seq(self) -> int:
        with self.lock:
            return next(self._seq)

    def delta_page(
        self,
        folder_key: str,
        *,
        since: int,
        until: int,
        offset: int,
        page_size: int,
        immutable_ids: bool = True,
        select: Collection[str] | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of the round (since, until]: changes collapsed per message, in order.

        The collapsed round is computed once and kept on the folder, so paging through a large
        folder costs O(page) per page rather than O(folder). Returns the items and whether
        more pages follow.
        """
        with self.lock:
            folder = self.folder(folder_key)
            if since and since < folder.expired_before:
                raise SyncStateExpired(folder.id)
            entries = self._collapsed(folder, since, until, immutable_ids=immutable_ids)
            page = entries[max(0, offset) : offset + page_size]
            items = [delta_item(e, immutable_ids=immutable_ids, select=select) for e in page]
        return items, offset + page_size < len(entries)

    def _collapsed(
        self, folder: Folder, since: int, until: int, *, immutable_ids: bool
    ) -> list[DeltaEntry]:
        """The log of (since, until] never changes once `until` has passed, so a round's
        collapsed entries can be reused for all its pages."""
        key = (since, until, immutable_ids)
        entries = folder.collapsed.get(key)
        if entries is None:
            entries = self._collapse(folder, since, until, immutable_ids=immutable_ids)
            if len(folder.collapsed) >= COLLAPSED_ROUNDS_KEPT:
                del folder.collapsed[next(iter(folder.collapsed))]
            folder.collapsed[key] = entries
        return entries

    def _collapse(
        self, folder: Folder, since: int, until: int, *, immutable_ids: bool
    ) -> list[DeltaEntry]:
        """Each message once, at its first position in the round. With regular ids a message
        that left and came back is two entries: its old id removed, its new id added."""
        first_sync = since == 0
        latest: dict[Any, DeltaEntry] = {}
        for change in _changes_between(folder.log, since, until):
            key = change.message_id if immutable_ids else (change.message_id, change.moves)
            entry = self._collapse_one(folder, change, latest.get(key), first_sync=first_sync)
            if entry is not None:
                latest[key] = entry
        entries = list(latest.values())
        return [e for e in entries if not e.removed] if first_sync else entries

    def _collapse_one(
        self, folder: Folder, change: Change, previous: DeltaEntry | None, *, first_sync: bool
    ) -> DeltaEntry | None:
        """The entry after applying `change`, or None to leave the previous one as it is."""
        if change.removed:
            return DeltaEntry(change.message_id, change.moves, None)
        message = self.messages.get(change.message_id)
        if message is None or self.location.get(change.message_id) != folder.id:
            return None
        partial = change.properties and not first_sync
        if partial and previous is None:
            return DeltaEntry(change.message_id, change.moves, message, change.properties)
        if partial and previous is not None and not previous.removed:
            names = None if previous.names is None else (*previous.names, *change.properties)
            return DeltaEntry(change.message_id, change.moves, message, names)
        return DeltaEntry(change.message_id, change.moves, message)


def _changes_between(log: list[Change], since: int, until: int) -> list[Change]:
    """The log's changes in (since, until]; the log is in sequence order, so an incremental
    round of a large folder costs O(changes), not O(folder)."""
    start = bisect.bisect_right(log, since, key=SEQ)
    return log[start : bisect.bisect_right(log, until, lo=start, key=SEQ)]


def delta_item(
    entry: DeltaEntry, *, immutable_ids: bool, select: Collection[str] | None
) -> dict[str, Any]:
    """An entry as a delta page shows it: never the select-only properties."""
    item_id = entry.message_id if immutable_ids else regular_id(entry.message_id, entry.moves)
    if entry.message is None:
        return {"id": item_id, "@removed": {"reason": "deleted"}}
    message = entry.message
    if entry.names is None and not select:
        # The common case of a first sync, copied at C speed.
        item = {**message, "id": item_id}
        for name in SELECT_ONLY_PROPERTIES:
            item.pop(name, None)
        return item
    names: Iterable[str] = message if entry.names is None else dict.fromkeys(entry.names)
    if select:
        names = [n for n in names if n in select]
    return {
        "id": item_id,
        **{n: message.get(n) for n in names if n != "id" and n not in SELECT_ONLY_PROPERTIES},
    }


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
