"""Bases, tables and records with the semantics of Airtable's record endpoints.

Each write is validated whole before anything changes, as Airtable does: one bad record or
unknown field name fails the request with 422 and leaves the table as it was.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_RECORDS_PER_WRITE = 10
MAX_PAGE_SIZE = 100
MAX_MERGE_FIELDS = 3

_record_numbers = itertools.count(1)


class AirtableFailure(Exception):
    """An answer in Airtable's error shape: `{"error": {"type": ..., "message": ...}}`."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.error_type, "message": self.message}}


def invalid(error_type: str, message: str) -> AirtableFailure:
    return AirtableFailure(422, error_type, message)


def _new_record_id() -> str:
    return f"rec{next(_record_numbers):014d}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Table:
    """One table: its field names (anything else is an unknown field) and its records in
    creation order (which is also the list order; Airtable's default view order)."""

    id: str
    name: str
    fields: list[str]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    # --- reads ---------------------------------------------------------------------------

    def list_page(self, *, page_size: int | None, offset: str | None) -> dict[str, Any]:
        """One page of records; `offset` names the next page's first record."""
        size = MAX_PAGE_SIZE if page_size is None else page_size
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise invalid("INVALID_REQUEST_UNKNOWN", f"pageSize must be 1 to {MAX_PAGE_SIZE}.")
        with self._lock:
            ids = list(self.records)
            start = 0
            if offset:
                record_id = offset.removeprefix("itr")
                if record_id not in self.records:
                    raise invalid(
                        "LIST_RECORDS_ITERATOR_NOT_AVAILABLE",
                        "The offset is not valid (it may have expired); start from the "
                        "first page again.",
                    )
                start = ids.index(record_id)
            page = [dict(self.records[i], fields=dict(self.records[i]["fields"])) for i in
                    ids[start : start + size]]  # fmt: skip
        answer: dict[str, Any] = {"records": page}
        if start + size < len(ids):
            answer["offset"] = f"itr{ids[start + size]}"
        return answer

    def all_fields(self) -> list[dict[str, Any]]:
        """Every record's fields (for tests and the benchmark)."""
        with self._lock:
            return [dict(record["fields"]) for record in self.records.values()]

    # --- writes ---------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        records = self._records_of(body, with_ids=False)
        with self._lock:
            created = [self._insert(fields) for fields in records]
        return {"records": created}

    def update(self, body: dict[str, Any]) -> dict[str, Any]:
        """PATCH: by record id, or by `performUpsert.fieldsToMergeOn` (then records without
        a match are created)."""
        upsert = body.get("performUpsert")
        if upsert is not None:
            return self._upsert(body, upsert)
        records = self._records_of(body, with_ids=True)
        with self._lock:
            missing = [r["id"] for r in records if r["id"] not in self.records]
            if missing:
                raise AirtableFailure(404, "NOT_FOUND", f"Record {missing[0]} does not exist.")
            updated = []
            for record in records:
                stored = self.records[record["id"]]
                stored["fields"].update(record["fields"])
                updated.append(_copy(stored))
        return {"records": updated}

    def _upsert(self, body: dict[str, Any], upsert: Any) -> dict[str, Any]:
        merge_on = upsert.get("fieldsToMergeOn") if isinstance(upsert, dict) else None
        if (
            not isinstance(merge_on, list)
            or not 1 <= len(merge_on) <= MAX_MERGE_FIELDS
            or not all(isinstance(name, str) for name in merge_on)
        ):
            raise invalid(
                "INVALID_REQUEST_UNKNOWN",
                f"performUpsert.fieldsToMergeOn must list 1 to {MAX_MERGE_FIELDS} field names.",
            )
        self._known_fields(merge_on)
        records = [fields for _, fields in self._pairs_of(body)]
        for fields in records:
            absent = [name for name in merge_on if fields.get(name) in (None, "")]
            if absent:
                raise invalid(
                    "INVALID_VALUE_FOR_COLUMN",
                    f'Field "{absent[0]}" is used for fieldsToMergeOn, so every record must '
                    "have a value for it.",
                )
        keys = [tuple(_merge_value(fields[name]) for name in merge_on) for fields in records]
        if len(set(keys)) != len(keys):
            raise invalid(
                "INVALID_RECORDS", "Two records in one request have the same fieldsToMergeOn."
            )
        created_ids, updated_ids, answer = [], [], []
        with self._lock:
            index = {
                tuple(_merge_value(r["fields"].get(name)) for name in merge_on): record_id
                for record_id, r in self.records.items()
            }
            for key, fields in zip(keys, records, strict=True):
                record_id = index.get(key)
                if record_id is None:
                    record = self._insert(fields)
                    created_ids.append(record["id"])
                else:
                    self.records[record_id]["fields"].update(fields)
                    record = _copy(self.records[record_id])
                    updated_ids.append(record_id)
                answer.append(record)
        return {"records": answer, "createdRecords": created_ids, "updatedRecords": updated_ids}

    def _insert(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Caller holds the table's lock."""
        record = {"id": _new_record_id(), "createdTime": _now(), "fields": dict(fields)}
        self.records[record["id"]] = record
        return _copy(record)

    # --- validation -----------------------------------------------------------------------

    def _records_of(self, body: dict[str, Any], *, with_ids: bool) -> list[dict[str, Any]]:
        pairs = self._pairs_of(body)
        if with_ids:
            if any(not record_id for record_id, _ in pairs):
                raise invalid("INVALID_RECORDS", "Every record to update needs an id.")
            return [{"id": record_id, "fields": fields} for record_id, fields in pairs]
        return [fields for _, fields in pairs]

    def _pairs_of(self, body: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
        records = body.get("records")
        if not isinstance(records, list) or not records:
            raise invalid("INVALID_RECORDS", "The request must contain a list of records.")
        if len(records) > MAX_RECORDS_PER_WRITE:
            raise invalid(
                "INVALID_RECORDS",
                f"You can only create or update up to {MAX_RECORDS_PER_WRITE} records per "
                f"request; got {len(records)}.",
            )
        pairs = []
        for record in records:
            fields = record.get("fields") if isinstance(record, dict) else None
            if not isinstance(fields, dict):
                raise invalid("INVALID_RECORDS", 'Each record must be an object with "fields".')
            self._known_fields(list(fields))
            pairs.append((record.get("id"), fields))
        return pairs

    def _known_fields(self, names: list[str]) -> None:
        for name in names:
            if name not in self.fields:
                raise invalid("UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')


def _copy(record: dict[str, Any]) -> dict[str, Any]:
    return dict(record, fields=dict(record["fields"]))


def _merge_value(value: Any) -> Any:
    """Upserts match text case-sensitively but numbers by value (1 and 1.0 are one)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


@dataclass
class Base:
    id: str
    tables: dict[str, Table] = field(default_factory=dict)

    def table(self, name_or_id: str) -> Table | None:
        """By name or by id (`tbl...`), as Airtable's URLs accept either."""
        found = self.tables.get(name_or_id)
        if found is None:
            found = next((t for t in self.tables.values() if t.id == name_or_id), None)
        return found
