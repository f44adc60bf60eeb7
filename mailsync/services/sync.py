"""Microsoft Graph delta sync: a careful Exchange client that loses and duplicates nothing.

A mailbox round is: the folder tree (folder delta), then a delta round per synced folder, then
settling messages that left a folder without turning up in another one.

A folder round follows next links until a delta link. Each page is applied in one transaction
that also stores where to continue (the next link, or at the end the delta link), so a crash
resumes after the last committed page and never applies a page twice or half. Messages are
upserted by their immutable id, merging only the properties present (Graph's updates are
partial). `@removed` means "left this folder": the row keeps its identity without a folder
(`orphaned_at`) until every synced folder has had a round since; if it turned up elsewhere it is
the same row, otherwise it is deleted with a tombstone. A round without a delta link (the first,
or after Graph forgot the state: 410 `syncStateNotFound` and friends) is a full round: rows of
the folder that it does not list have left the folder, so nothing is duplicated and nothing
that vanished stays.

One process syncs a folder at a time (a lease row), and all Graph calls go through the shared
client with its per-mailbox limiter and circuit breaker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Min, Q, QuerySet
from django.utils import timezone

from crm.changes import change_seq_allocate_many, item_leave, item_touch
from crm.db import bulk_insert, lease_give_back, lease_take
from crm.errors import ServiceError
from crm.graph import subscriptions
from crm.graph.client import GraphClient, GraphError, GraphSyncStateExpired
from crm.models import Tombstone
from mailsync.choices import (
    DEFAULT_SYNCED_FOLDERS,
    MailboxKind,
    OperationKind,
    OperationStatus,
    RoundKind,
    RoundStatus,
    WellKnownFolder,
)
from mailsync.errors import SyncBusy
from mailsync.graph_mapping import DELTA_SELECT, attachment_fields, header_fields, message_fields
from mailsync.models import Attachment, Mailbox, MailFolder, MailOperation, Message, SyncRound
from mailsync.signals import message_ingested

logger = logging.getLogger(__name__)

IMMUTABLE_IDS = 'IdType="ImmutableId"'
ATTACHMENT_SELECT = "id,name,contentType,size,isInline,contentId"
Progress = Callable[[str], None]


class BadPage(GraphError):
    """Graph answered a delta request with JSON that is not a delta page."""

    code = "graph_bad_page"


@dataclass
class MailboxSyncResult:
    """What a mailbox round did, per folder, for the command and the task's log."""

    rounds: list[SyncRound] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deleted: int = 0

    @property
    def failed(self) -> bool:
        return any(r.status == RoundStatus.FAILED for r in self.rounds)


@dataclass
class RoundState:
    """A round under way: the folder (None for the folder tree) and where counting started."""

    folder: MailFolder | None
    round: SyncRound
    client: GraphClient
    lease: str
    full: bool
    stats_before: dict[str, int]
    mark: int | None = None  # full rounds: rows listed get this sync_mark


def _user_path(mailbox: Mailbox) -> str:
    return f"users/{quote(mailbox.address)}"


def _prefer(page_size: int | None = None) -> dict[str, str]:
    parts = [f"odata.maxpagesize={page_size}"] if page_size else []
    return {"Prefer": ", ".join([*parts, IMMUTABLE_IDS])}


def mailbox_sync(
    *,
    mailbox: Mailbox,
    client: GraphClient | None = None,
    folders: Iterable[MailFolder] | None = None,
    progress: Progress | None = None,
) -> MailboxSyncResult:
    """Sync the folder tree, then each synced folder (or the given ones), then settle orphans.

    A failing folder does not stop the others; its round is recorded as failed.
    """
    client = client or GraphClient(mailbox=mailbox.address)
    result = MailboxSyncResult()
    result.rounds.append(folder_tree_sync(mailbox=mailbox, client=client))
    targets = (
        list(folders)
        if folders is not None
        else list(mailbox.folders.filter(sync_enabled=True).order_by("pk"))
    )
    for folder in targets:
        try:
            result.rounds.append(folder_sync(folder=folder, client=client, progress=progress))
        except SyncBusy as exc:
            result.skipped.append(str(exc))
            continue
        if result.rounds[-1].status != RoundStatus.FAILED:
            folder.refresh_from_db(fields=["delta_link", "graph_id"])
            folder_subscription_ensure(folder=folder)
    result.deleted = orphans_settle(mailbox=mailbox)
    errors = [r.errors for r in result.rounds if r.status == RoundStatus.FAILED]
    now = timezone.now()
    clean = {} if errors else {"last_clean_sync_at": now, "stale_alert_sent_at": None}
    Mailbox.objects.filter(pk=mailbox.pk).update(
        last_synced_at=now, last_error="\n".join(errors)[:10_000], **clean
    )
    return result


# --- the folder tree -------------------------------------------------------------------------


def folder_tree_sync(*, mailbox: Mailbox, client: GraphClient) -> SyncRound:
    """Apply the folder delta (names, parents, roles; deletions) in one transaction.

    A failure is recorded on the returned round; the folders already known still sync.
    """
    sync_round = SyncRound.objects.create(mailbox=mailbox, kind=RoundKind.FOLDERS)
    state = RoundState(None, sync_round, client, "", True, dict(client.stats))
    try:
        try:
            items, delta_link = _folder_delta(client, mailbox, mailbox.folders_delta_link)
            full = not mailbox.folders_delta_link
        except GraphSyncStateExpired:
            items, delta_link = _folder_delta(client, mailbox, "")
            full = True
        roles = _resolve_roles(client, mailbox, items)
        with transaction.atomic():
            locked = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
            counts = _apply_folders(locked, items, roles, full=full)
            locked.folders_delta_link = delta_link
            locked.save(update_fields=["folders_delta_link"])
        mailbox.folders_delta_link = delta_link
        _finish(state, RoundStatus.OK, **counts)
    except (GraphError, ServiceError) as exc:
        logger.warning("mail sync: %s folder tree failed: %s", mailbox, exc)
        _finish(state, RoundStatus.FAILED, str(exc))
    return sync_round


def _folder_delta(
    client: GraphClient, mailbox: Mailbox, link: str
) -> tuple[list[dict[str, Any]], str]:
    url = link or f"{_user_path(mailbox)}/mailFolders/delta"
    items: list[dict[str, Any]] = []
    while True:
        page = _page(client.get(url, headers=_prefer()))
        items += page["value"]
        if page.get("@odata.deltaLink"):
            return items, page["@odata.deltaLink"]
        url = page["@odata.nextLink"]


def _resolve_roles(
    client: GraphClient, mailbox: Mailbox, items: list[dict[str, Any]]
) -> dict[str, str]:
    """Folder id → well-known role. Graph v1.0 does not say which folder is the Inbox in a
    folder listing, so the roles still unknown are asked for in one `$batch`."""
    roles = {
        item["id"]: item["wellKnownName"]
        for item in items
        if item.get("wellKnownName") in WellKnownFolder.values and "id" in item
    }
    known = set(roles.values()) | set(
        mailbox.folders.exclude(well_known="").values_list("well_known", flat=True)
    )
    missing = [role for role in WellKnownFolder.values if role not in known]
    if not missing or not items:
        return roles
    base = f"/{_user_path(mailbox)}/mailFolders"
    requests = [
        {"id": role, "method": "GET", "url": f"{base}/{role}?$select=id",
         "headers": {"Prefer": IMMUTABLE_IDS}}
        for role in missing
    ]  # fmt: skip
    for response in client.batch(requests):
        if response.get("status") == 200 and isinstance(response.get("body"), dict):
            roles.setdefault(response["body"].get("id", ""), response["id"])
    return roles


def _apply_folders(
    mailbox: Mailbox, items: list[dict[str, Any]], roles: dict[str, str], *, full: bool
) -> dict[str, int]:
    """Precondition: the caller holds `select_for_update` on the mailbox."""
    existing = {f.graph_id: f for f in mailbox.folders.exclude(graph_id="")}
    taken_roles = set(mailbox.folders.exclude(well_known="").values_list("well_known", flat=True))
    added = updated = removed = 0
    listed = set()
    for item in items:
        graph_id = item.get("id")
        if not isinstance(graph_id, str) or not graph_id:
            continue
        if "@removed" in item:
            removed += _folder_remove(mailbox, existing.pop(graph_id, None))
            continue
        listed.add(graph_id)
        folder = existing.get(graph_id)
        if folder is None:
            folder = existing[graph_id] = MailFolder(mailbox=mailbox, graph_id=graph_id)
            added += 1
        else:
            updated += 1
        _folder_fill(folder, item, roles.get(graph_id, ""), taken_roles)
        item_touch(folder, mailbox.container)
        folder.save()
    for item in items:
        folder = existing.get(item.get("id"))
        parent = existing.get(item.get("parentFolderId") or "")
        if folder is not None and folder.pk and folder.parent_id != (parent.pk if parent else None):
            MailFolder.objects.filter(pk=folder.pk).update(parent=parent)
    if full:
        for graph_id, folder in list(existing.items()):
            if graph_id not in listed:
                removed += _folder_remove(mailbox, folder)
    return {"added": added, "updated": updated, "removed": removed}


def _folder_fill(
    folder: MailFolder, item: dict[str, Any], role: str, taken_roles: set[str]
) -> None:
    """Name and role; a role goes to one folder only (`taken_roles` is updated)."""
    if isinstance(item.get("displayName"), str):
        folder.display_name = item["displayName"][:255]
    if role and not folder.well_known and role not in taken_roles:
        taken_roles.add(role)
        folder.well_known = role
        if folder.pk is None:
            folder.sync_enabled = role in DEFAULT_SYNCED_FOLDERS


def _folder_remove(mailbox: Mailbox, folder: MailFolder | None) -> int:
    """The folder is gone: its messages left it (they may turn up elsewhere), then it goes."""
    if folder is None or folder.pk is None:
        return 0
    for child in folder.children.all():
        _folder_remove(mailbox, child)
    messages_orphan(mailbox=mailbox, messages=list(folder.messages.all()))
    item_leave(folder, mailbox.container)
    gone = [folder.pk]
    transaction.on_commit(
        lambda: subscriptions.subscriptions_delete_for(kind=SUBSCRIPTION_KIND, target_ids=gone)
    )
    folder.delete()
    return 1


# --- a folder's messages ---------------------------------------------------------------------


def folder_sync(
    *, folder: MailFolder, client: GraphClient | None = None, progress: Progress | None = None
) -> SyncRound:
    """One delta round of a folder (a full one without a delta link); see the module doc.

    Raises SyncBusy if another process holds the folder; every other failure is recorded on
    the returned round.
    """
    client = client or GraphClient(mailbox=folder.mailbox.address)
    lease = _lease_acquire(folder)
    try:
        state = _round_start(folder, client, lease)
        try:
            _round_run(state, progress)
        except GraphSyncStateExpired:
            logger.warning("mail sync: %s: delta state expired, full resync", folder)
            _finish(state, RoundStatus.FAILED, "Delta state expired (410); a full resync follows.")
            _forget_delta_state(folder)
            state = _round_start(folder, client, lease)
            _round_run(state, progress)
    except (GraphError, ServiceError) as exc:
        logger.warning("mail sync: %s failed: %s", folder, exc)
        _finish(state, RoundStatus.FAILED, str(exc))
    finally:
        _lease_release(folder, lease)
    return state.round


def _lease_acquire(folder: MailFolder) -> str:
    """One sync per folder across processes: a lease on the folder row that expires, so a
    crashed worker does not block the folder for ever."""
    token = lease_take(MailFolder, folder.pk, seconds=settings.MAIL_SYNC_LEASE_SECONDS)
    if not token:
        raise SyncBusy(f"{folder} is being synced by another process.")
    return token


def _lease_release(folder: MailFolder, token: str) -> None:
    lease_give_back(MailFolder, folder.pk, token)


def _forget_delta_state(folder: MailFolder) -> None:
    MailFolder.objects.filter(pk=folder.pk).update(delta_link="", resume_link="")
    folder.delta_link = folder.resume_link = ""


def _round_start(folder: MailFolder, client: GraphClient, lease: str) -> RoundState:
    """A new round record; a round left unfinished (a resume link) continues where it was."""
    folder.refresh_from_db(
        fields=["delta_link", "resume_link", "round_started_at", "full_round_mark"]
    )
    full = not folder.delta_link
    sync_round = SyncRound.objects.create(
        mailbox=folder.mailbox, folder=folder, kind=RoundKind.FULL if full else RoundKind.DELTA
    )
    if not folder.resume_link:
        folder.round_started_at = sync_round.started_at
        folder.full_round_mark = sync_round.pk if full else None
        MailFolder.objects.filter(pk=folder.pk).update(
            round_started_at=folder.round_started_at, full_round_mark=folder.full_round_mark
        )
    state = RoundState(folder, sync_round, client, lease, full, dict(client.stats))
    state.mark = folder.full_round_mark
    return state


@dataclass
class Prepared:
    """What the network thread fetched for a page: its extras, and the page after it."""

    extras: dict[str, dict[str, Any]]
    next_page: dict[str, Any] | None
    next_error: GraphError | None = None  # raised after this page is applied, not before


def _round_run(state: RoundState, progress: Progress | None) -> None:
    """Follow the round's pages, fetching over the network one page ahead.

    While page k is written to the database, a second thread fetches page k's internet
    headers and attachment lists (`$batch`) and then page k+1, so the round waits on Graph
    and on the database at the same time instead of in turn. Only that thread talks to Graph
    during the loop, and only this one to the database. An expired delta or skip token (410)
    propagates to `folder_sync`, which starts a full round.
    """
    folder = state.folder
    page = _fetch_page(state, folder.resume_link or folder.delta_link or _initial_url(folder))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="graph-prefetch") as network:
        upcoming = network.submit(_prepare, state, page, _known_ids(folder.mailbox, page))
        while True:
            prepared = upcoming.result()
            if prepared.next_error is None and prepared.next_page is not None:
                hint = _known_ids(folder.mailbox, prepared.next_page)
                upcoming = network.submit(_prepare, state, prepared.next_page, hint)
            _page_apply(state, page, prepared.extras)
            if progress:
                r = state.round
                progress(f"{folder}: page {r.pages}, +{r.added} ~{r.updated} -{r.removed}")
            if prepared.next_error is not None:
                raise prepared.next_error
            if prepared.next_page is None:
                break
            page = prepared.next_page
    if state.full:
        _full_round_reconcile(state)
    _finish(state, RoundStatus.OK)


def _fetch_page(state: RoundState, url: str) -> dict[str, Any]:
    return _page(state.client.get(url, headers=_prefer(settings.MAIL_DELTA_PAGE_SIZE)))


def _known_ids(mailbox: Mailbox, page: dict[str, Any]) -> set[str]:
    """Which of the page's messages are stored already (a hint: they need no extras)."""
    ids = [item["id"] for item in page["value"] if isinstance(item, dict) and "id" in item]
    return set(
        Message.objects.filter(mailbox=mailbox, graph_id__in=ids).values_list("graph_id", flat=True)
    )


def _prepare(state: RoundState, page: dict[str, Any], known: set[str]) -> Prepared:
    """Network thread: the extras of the page's new messages, then the next page."""
    present, _ = _page_items(page["value"])
    new_ids = [graph_id for graph_id in present if graph_id not in known]
    extras = _fetch_extras(state.client, state.folder.mailbox, new_ids, present)
    next_link = page.get("@odata.nextLink")
    if page.get("@odata.deltaLink") or not next_link:
        return Prepared(extras, None)
    try:
        return Prepared(extras, _fetch_page(state, next_link))
    except GraphError as exc:
        return Prepared(extras, None, exc)


def _initial_url(folder: MailFolder) -> str:
    return (
        f"{_user_path(folder.mailbox)}/mailFolders/{quote(folder.graph_id)}/messages/delta"
        f"?$select={DELTA_SELECT}"
    )


def _page(body: Any) -> dict[str, Any]:
    """A delta page must have a list of items and exactly one way on."""
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("value"), list)
        or not (body.get("@odata.nextLink") or body.get("@odata.deltaLink"))
    ):
        raise BadPage("Microsoft Graph answered with something that is not a delta page.")
    return body


def _page_items(items: list[Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Present items by id (an item repeated within the page merges) and removed ids."""
    present: dict[str, dict[str, Any]] = {}
    removed: list[str] = []
    for item in items:
        graph_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(graph_id, str) or not graph_id:
            continue
        if "@removed" in item:
            present.pop(graph_id, None)
            removed.append(graph_id)
        else:
            present[graph_id] = {**present.get(graph_id, {}), **item}
            if graph_id in removed:
                removed.remove(graph_id)
    return present, removed


def _page_apply(state: RoundState, page: dict[str, Any], extras: dict[str, dict]) -> None:
    """Apply one page and record the position after it, in one transaction."""
    folder, mailbox = state.folder, state.folder.mailbox
    next_link, delta_link = page.get("@odata.nextLink"), page.get("@odata.deltaLink")
    present, removed_ids = _page_items(page["value"])
    existing = {
        m.graph_id: m
        for m in Message.objects.filter(mailbox=mailbox, graph_id__in=[*present, *removed_ids])
    }
    new_ids = [graph_id for graph_id in present if graph_id not in existing]
    now = timezone.now()
    with transaction.atomic():
        created = _create_messages(state, [present[i] for i in new_ids], extras)
        changed = _update_messages(
            state, [(existing[i], present[i]) for i in present if i in existing]
        )
        left = [
            existing[i] for i in removed_ids if i in existing and existing[i].folder_id == folder.pk
        ]
        messages_orphan(mailbox=mailbox, messages=left, now=now)
        if state.full and existing:  # new rows were created with the mark
            Message.objects.filter(mailbox=mailbox, graph_id__in=list(existing)).update(
                sync_mark=state.mark
            )
        _save_position(state, next_link=next_link, delta_link=delta_link)
        _count(state.round, pages=1, added=len(created), updated=changed, removed=len(left))
        role = folder.well_known
        transaction.on_commit(lambda: _announce(created, mailbox.pk, role))


def _fetch_extras(
    client: GraphClient, mailbox: Mailbox, new_ids: list[str], present: dict[str, dict]
) -> dict[str, dict[str, Any]]:
    """Internet headers (threading) and attachment metadata of new messages, in `$batch`es.

    Asked before the page's transaction so no database lock waits on the network. A message
    deleted meanwhile (404) gets none; any other failure fails the page, which is then retried
    from the same position.
    """
    requests = []
    for graph_id in new_ids:
        base = f"/{_user_path(mailbox)}/messages/{quote(graph_id)}"
        headers = {"Prefer": IMMUTABLE_IDS}
        requests.append({"id": f"h:{graph_id}", "method": "GET", "headers": headers,
                         "url": f"{base}?$select=internetMessageHeaders"})  # fmt: skip
        if present[graph_id].get("hasAttachments"):
            requests.append({"id": f"a:{graph_id}", "method": "GET", "headers": headers,
                             "url": f"{base}/attachments?$select={ATTACHMENT_SELECT}"})  # fmt: skip
    extras: dict[str, dict[str, Any]] = {graph_id: {} for graph_id in new_ids}
    if not requests:
        return extras
    for response in client.batch(requests):
        kind, _, graph_id = response["id"].partition(":")
        status, body = response.get("status"), response.get("body")
        if status == 404:
            continue
        if status != 200 or not isinstance(body, dict):
            raise GraphError(
                f"Microsoft Graph answered {status} for a message's "
                f"{'headers' if kind == 'h' else 'attachments'} in a batch.",
                status=status,
            )
        if kind == "h":
            extras[graph_id].update(header_fields(body.get("internetMessageHeaders")))
        else:
            extras[graph_id]["attachments"] = [
                attachment_fields(a) for a in body.get("value") or [] if isinstance(a, dict)
            ]
    return extras


def _create_messages(
    state: RoundState, items: list[dict[str, Any]], extras: dict[str, dict[str, Any]]
) -> list[Message]:
    if not items:
        return []
    mailbox = state.folder.mailbox
    numbers = change_seq_allocate_many(mailbox.container, len(items))
    messages = []
    attachments = []
    for item, number in zip(items, numbers, strict=True):
        extra = dict(extras.get(item["id"], {}))
        message = Message(
            mailbox=mailbox,
            folder=state.folder,
            graph_id=item["id"][:512],
            change_container=mailbox.container,
            change_seq=number,
            sync_mark=state.mark,
            **message_fields(item),
        )
        for name, value in extra.items():
            if name != "attachments":
                setattr(message, name, value)
        # Lists sort by this; Graph always sends it, but a message must never lack it.
        message.received_at = message.received_at or message.sent_at or timezone.now()
        messages.append(message)
        attachments.append(extra.get("attachments", []))
    bulk_insert(Message, messages)
    Attachment.objects.bulk_create(
        Attachment(message=message, **fields)
        for message, found in zip(messages, attachments, strict=True)
        for fields in found
    )
    return messages


def _update_messages(state: RoundState, pairs: list[tuple[Message, dict[str, Any]]]) -> int:
    """Merge the present properties into stored rows; only rows that changed get a number.

    A row that arrives here from another folder (or from limbo) moved in.
    """
    folder = state.folder
    changed: list[Message] = []
    columns: set[str] = set()
    waiting = _waiting_write_back([message.pk for message, _ in pairs])
    for message, item in pairs:
        fields = {
            name: value
            for name, value in message_fields(item).items()
            if getattr(message, name) != value and name not in waiting.get(message.pk, ())
        }
        moving = "folder" in waiting.get(message.pk, ())
        if not moving and (message.folder_id != folder.pk or message.orphaned_at is not None):
            fields.update(folder_id=folder.pk, orphaned_at=None)
        if not fields:
            continue
        for name, value in fields.items():
            setattr(message, name, value)
        columns |= set(fields)
        changed.append(message)
    if not changed:
        return 0
    numbers = change_seq_allocate_many(folder.mailbox.container, len(changed))
    for message, number in zip(changed, numbers, strict=True):
        message.change_seq = number
    Message.objects.bulk_update(changed, [*sorted(columns), "change_seq", "updated_at"])
    return len(changed)


# The columns each kind of write-back sets; a delta round must not undo them while the
# operation waits in the outbox (Graph still has the old value then).
WRITE_BACK_COLUMNS = {
    OperationKind.READ: ("is_read",),
    OperationKind.FLAG: ("flag_status",),
    OperationKind.CATEGORIES: ("categories",),
    OperationKind.MOVE: ("folder",),
    OperationKind.DELETE: ("folder",),
}


def _waiting_write_back(message_ids: list[int]) -> dict[int, set[str]]:
    """For messages with pending outbox operations, the columns those operations set."""
    waiting: dict[int, set[str]] = {}
    rows = MailOperation.objects.filter(
        message_id__in=message_ids, status=OperationStatus.PENDING
    ).values_list("message_id", "kind")
    for message_id, kind in rows:
        waiting.setdefault(message_id, set()).update(WRITE_BACK_COLUMNS[kind])
    return waiting


def messages_orphan(*, mailbox: Mailbox, messages: list[Message], now=None) -> None:
    """These messages left their folder; they wait, folderless, to be claimed or deleted.

    They get a new number so a consumer of the folder sees them go.
    """
    if not messages:
        return
    numbers = change_seq_allocate_many(mailbox.container, len(messages))
    now = now or timezone.now()
    for message, number in zip(messages, numbers, strict=True):
        message.folder = None
        message.orphaned_at = now
        message.change_seq = number
    Message.objects.bulk_update(messages, ["folder", "orphaned_at", "change_seq", "updated_at"])


def _save_position(state: RoundState, *, next_link: str | None, delta_link: str | None) -> None:
    """Where the next round (or a resumed one) continues, written with the page, and the lease
    renewed in the same statement: if another process took the folder over meanwhile, the
    page is rolled back instead of being applied twice."""
    folder = state.folder
    if delta_link:
        update = {"delta_link": delta_link, "resume_link": ""}
    else:
        update = {"resume_link": next_link or ""}
    renewed = MailFolder.objects.filter(pk=folder.pk, lease_owner=state.lease).update(
        lease_expires_at=timezone.now() + timedelta(seconds=settings.MAIL_SYNC_LEASE_SECONDS),
        **update,
    )
    if not renewed:
        raise SyncBusy(f"{folder}: the sync lease was lost to another process.")
    for name, value in update.items():
        setattr(folder, name, value)


def _full_round_reconcile(state: RoundState) -> None:
    """After a full round: rows of the folder it did not list have left the folder."""
    folder = state.folder
    with transaction.atomic():
        gone = list(Message.objects.filter(folder=folder).exclude(sync_mark=state.mark))
        messages_orphan(mailbox=folder.mailbox, messages=gone)
        _count(state.round, removed=len(gone))


def _count(sync_round: SyncRound, **increments: int) -> None:
    SyncRound.objects.filter(pk=sync_round.pk).update(
        **{name: F(name) + value for name, value in increments.items()}
    )
    for name, value in increments.items():
        setattr(sync_round, name, getattr(sync_round, name) + value)


def _finish(state: RoundState, status: str, errors: str = "", **counts: int) -> None:
    """Close the round with its counts and the Graph requests, throttles and retries it took."""
    sync_round = state.round

    def spent(name: str) -> int:
        return state.client.stats.get(name, 0) - state.stats_before.get(name, 0)

    sync_round.requests = spent("requests")
    sync_round.throttled = spent("throttled")
    sync_round.retries = spent("retries") + spent("subrequest_retries")
    for name, value in counts.items():
        setattr(sync_round, name, value)
    sync_round.status = status
    sync_round.finished_at = timezone.now()
    sync_round.errors = errors[:10_000]
    sync_round.save()
    if status == RoundStatus.OK and state.folder is not None:
        MailFolder.objects.filter(pk=state.folder.pk).update(
            last_round_at=state.folder.round_started_at
        )


def _announce(messages: list[Message], mailbox_id: int, role: str) -> None:
    for message in messages:
        message_ingested.send(
            sender=Message, message_id=message.pk, mailbox_id=mailbox_id, folder_role=role
        )


# --- settling messages that left their folder ------------------------------------------------


def orphans_settle(*, mailbox: Mailbox) -> int:
    """Delete (with tombstones) the messages that left a folder and did not turn up in any
    synced folder whose round started after they left. Returns how many were deleted."""
    rounds = mailbox.folders.filter(sync_enabled=True).aggregate(
        oldest=Min("last_round_at"), never=Count("pk", filter=Q(last_round_at__isnull=True))
    )
    horizon = rounds["oldest"]
    if horizon is None or rounds["never"]:  # a folder yet to complete a round may claim them
        return 0
    deleted = 0
    while True:
        with transaction.atomic():
            batch = list(
                Message.objects.select_for_update()
                .filter(mailbox=mailbox, folder__isnull=True, orphaned_at__lt=horizon)
                .order_by("pk")[:500]
            )
            if not batch:
                return deleted
            _delete_messages(mailbox, batch)
            deleted += len(batch)


def _delete_messages(mailbox: Mailbox, messages: list[Message]) -> None:
    numbers = change_seq_allocate_many(mailbox.container, len(messages))
    Tombstone.objects.bulk_create(
        Tombstone(container=mailbox.container, item_type=Message._meta.label_lower,
                  item_id=message.pk, change_seq=number)
        for message, number in zip(messages, numbers, strict=True)
    )  # fmt: skip
    files = [a.content.name for a in Attachment.objects.filter(message__in=messages) if a.content]
    Message.objects.filter(pk__in=[m.pk for m in messages]).delete()
    if files:
        transaction.on_commit(lambda: _delete_files(files))


def _delete_files(names: list[str]) -> None:
    from django.core.files.storage import default_storage

    for name in names:
        default_storage.delete(name)


# --- change notifications ---------------------------------------------------------------------

SUBSCRIPTION_KIND = "mail_folder"


def folder_resource(folder: MailFolder) -> str:
    """The Graph resource a folder's subscription watches."""
    return f"{_user_path(folder.mailbox)}/mailFolders('{folder.graph_id}')/messages"


def folder_subscription_ensure(*, folder: MailFolder) -> None:
    """After a folder's first completed round, Graph tells us about its changes (when the CRM
    has a public address); until then, and whenever that fails, beat polls it."""
    if not folder.graph_id or folder.delta_link == "":
        return
    subscriptions.subscription_ensure(
        kind=SUBSCRIPTION_KIND,
        target_id=folder.pk,
        resource=folder_resource(folder),
        limiter_key=folder.mailbox.address,
    )


def mailboxes_to_sync() -> QuerySet[Mailbox]:
    """Enabled Microsoft 365 mailboxes, except agents' own ones waiting for their owner to
    connect them again (Microsoft would refuse every round)."""
    return Mailbox.objects.filter(kind=MailboxKind.M365, sync_enabled=True).exclude(
        grant__reconnect_needed=True
    )


def folders_to_poll() -> list[int]:
    """Synced Microsoft 365 folders with no working subscription (all of them without a
    public address)."""
    synced = list(
        MailFolder.objects.filter(mailbox__in=mailboxes_to_sync(), sync_enabled=True).values_list(
            "pk", flat=True
        )
    )
    return subscriptions.needs_polling(kind=SUBSCRIPTION_KIND, target_ids=synced)
