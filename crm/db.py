"""Database helpers shared by apps' migrations and queries.

Schema only PostgreSQL has (tsvector triggers, GIN and trigram indexes) goes through
`PostgresOnlySQL`, so the embedded default on SQLite still migrates (DESIGN.md "Processes").
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections, migrations, models, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.db.models.lookups import Exact
from django.utils import timezone


class PostgresOnlySQL(migrations.RunSQL):
    """RunSQL that does nothing on other database vendors."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def equals_ignoring_case(field: str, value: str) -> Exact:
    """`lower(field) = value`, a filter condition the `lower()` unique indexes serve.

    Django's `__iexact` compiles to `UPPER(field) = UPPER(value)` on PostgreSQL, which no
    index serves: on customer addresses that is a scan of the table on every intake.
    """
    return Exact(Lower(field), value.strip().lower())


def reserve_ids(model: type[models.Model], count: int) -> list[int]:
    """The next `count` primary keys of `model`'s table, drawn from its sequence on PostgreSQL
    (so a row can be inserted complete, with values derived from its key); elsewhere, none."""
    if not is_postgresql():
        return []
    meta = model._meta
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, count],
        )
        return [row[0] for row in cursor.fetchall()]


def bulk_insert(model: type[models.Model], objs: list[models.Model]) -> None:
    """Insert new rows and give them their primary keys, as `bulk_create` does, but through
    PostgreSQL's COPY where available.

    Sync pages insert tens of thousands of rows a minute; COPY is several times quicker than
    the multi-row INSERT that `bulk_create` compiles (most of that time is Django preparing
    and psycopg adapting every value one by one). Auto-now fields get their `pre_save`, JSON
    fields are serialised by the field itself, and everything else is written as the
    attribute holds it, which is what the ORM would send for the plain column types this is
    used with (text, numbers, booleans, aware datetimes, foreign key ids). Ids are drawn from
    the table's sequence first. Elsewhere (SQLite) this is `bulk_create`.
    """
    if not objs:
        return
    if not is_postgresql():
        model._default_manager.bulk_create(objs)
        return
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    getters = [_copy_value(field) for field in fields]
    table = connection.ops.quote_name(meta.db_table)
    ids = reserve_ids(model, len(objs))
    with connection.cursor() as cursor:
        columns = ", ".join(connection.ops.quote_name(f.column) for f in [meta.pk, *fields])
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for obj, pk in zip(objs, ids, strict=True):
                obj.pk = pk
                copy.write_row([pk, *(get(obj) for get in getters)])
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


def _copy_value(field: models.Field):
    """How to read `field`'s value off an instance for COPY (see `bulk_insert`)."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return lambda obj: field.pre_save(obj, True)
    if isinstance(field, models.JSONField):
        encoder = field.encoder
        return lambda obj: json.dumps(getattr(obj, field.attname), cls=encoder)
    attname = field.attname
    return lambda obj: getattr(obj, attname)


# --- leases: one process at a time on a row, surviving crashed holders ---------------------------


def lease_take(model: type[models.Model], pk: int, *, seconds: float, prefix: str = "lease") -> str:
    """Take the lease of one row (columns `{prefix}_owner`, `{prefix}_expires_at`) if nobody
    holds it or the holder's lease ran out (a crashed process); returns the holder's token,
    or "" when another process holds it."""
    token = uuid.uuid4().hex
    now = timezone.now()
    expires = f"{prefix}_expires_at"
    taken = (
        model._default_manager.filter(pk=pk)
        .filter(Q(**{f"{expires}__isnull": True}) | Q(**{f"{expires}__lt": now}))
        .update(**{f"{prefix}_owner": token, expires: now + timedelta(seconds=seconds)})
    )
    return token if taken else ""


def lease_renew(
    model: type[models.Model], pk: int, token: str, *, seconds: float, prefix: str = "lease"
) -> bool:
    """Push the lease's end out again; False if it is no longer ours (it ran out and another
    process took it), and the work must stop."""
    return bool(
        model._default_manager.filter(pk=pk, **{f"{prefix}_owner": token}).update(
            **{f"{prefix}_expires_at": timezone.now() + timedelta(seconds=seconds)}
        )
    )


def lease_give_back(
    model: type[models.Model], pk: int, token: str, *, prefix: str = "lease"
) -> None:
    model._default_manager.filter(pk=pk, **{f"{prefix}_owner": token}).update(
        **{f"{prefix}_owner": "", f"{prefix}_expires_at": None}
    )


# --- work gathered per transaction --------------------------------------------------------


class Flushable(Protocol):
    def flush(self) -> None: ...


B = TypeVar("B", bound=Flushable)


class _BatchHook:
    """The on-commit callback of one batch: flushes it once."""

    def __init__(self, batch: Flushable, hooks: list) -> None:
        self.batch = batch
        self.hooks = hooks  # the connection's callback list it was last seen in
        self.done = False  # a test's captureOnCommitCallbacks runs it but leaves it listed

    def run(self) -> None:
        self.done = True
        self.batch.flush()


def transaction_batch(key: str, factory: Callable[[], B], *, using: str = DEFAULT_DB_ALIAS) -> B:
    """The batch gathering `key`'s work in the transaction in progress, made by `factory` on
    first use; its `flush()` runs once, after the transaction commits, and never on rollback.

    Precondition: the caller is inside `transaction.atomic` (outside one there is nothing to
    wait for: act at once). Several calls in one transaction get the same batch, so work asked
    for many times in it (one timeline row per changed case of a sweep) is done once. A batch
    whose callback is no longer pending (committed, or discarded by a rollback) is finished,
    and a new one starts. Finding that out is a list scan only after Django replaced the
    connection's callback list (commit, rollback, a savepoint rolled back).
    """
    conn = connections[using]
    hooks: dict[str, _BatchHook] = conn.__dict__.setdefault("_crm_transaction_batches", {})
    hook = hooks.get(key)
    if hook is not None and _still_pending(hook, conn.run_on_commit):
        return hook.batch  # type: ignore[return-value]
    hook = _BatchHook(factory(), conn.run_on_commit)
    hooks[key] = hook
    transaction.on_commit(hook.run, using=using, robust=True)
    return hook.batch  # type: ignore[return-value]


def _still_pending(hook: _BatchHook, waiting: list) -> bool:
    if hook.done:
        return False
    if hook.hooks is waiting:
        return True
    if any(getattr(callback, "__self__", None) is hook for _, callback, _ in waiting):
        hook.hooks = waiting
        return True
    return False
