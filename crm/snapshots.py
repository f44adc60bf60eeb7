"""Configuration read on hot paths (triage rules, SLA policies), kept in each process.

Intake and the case services must not query rule tables per message, yet an admin's change
must apply everywhere soon. A `Snapshot` builds its value from the database once per process
and rebuilds it when the version in the shared cache changes; it reads that version at most
every `check_seconds`, and a snapshot older than `max_age_seconds` is rebuilt whatever the
cache says (the cache may be down). `changed()` bumps the version now and again after commit,
so that a process that rebuilt in between (and saw the old rows) does not keep them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_migrate

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Snapshot(Generic[T]):
    def __init__(
        self,
        key: str,
        build: Callable[[], T],
        *,
        check_seconds: float = 1.0,
        max_age_seconds: float = 300.0,
    ) -> None:
        self.key = key
        self._build = build
        self._check_seconds = check_seconds
        self._max_age_seconds = max_age_seconds
        self._value: T | None = None
        self._token: str | None = None
        self._loaded_at = 0.0
        self._checked_at = 0.0
        self._lock = threading.Lock()
        _all.append(self)

    def get(self) -> T:
        now = time.monotonic()
        value = self._value
        if value is not None and now - self._loaded_at < self._max_age_seconds:
            if now - self._checked_at < self._check_seconds:
                return value
            token, self._checked_at = self._shared_token(), now
            if token is None or token == self._token:
                return value
        else:
            token, self._checked_at = self._shared_token(), now
        with self._lock:
            if self._value is not None and self._value is not value:  # another thread did
                return self._value
            self._value, self._token, self._loaded_at = self._build(), token, time.monotonic()
            return self._value

    def changed(self) -> None:
        """The rows behind it changed: every process rebuilds before its next use."""
        self._bump()
        transaction.on_commit(self._bump, robust=True)

    def forget(self) -> None:
        """Drop this process's value (the next use rebuilds)."""
        self._value = None

    def _bump(self) -> None:
        self._value = None
        try:
            cache.set(self.key, uuid.uuid4().hex, timeout=None)
        except Exception:  # noqa: BLE001 - other processes catch up after max_age_seconds
            logger.warning("%s changed but the shared cache is unreachable", self.key)

    def _shared_token(self) -> str | None:
        """The version in the shared cache (created if missing); None if the cache is down."""
        try:
            token = cache.get(self.key)
            if token is None:
                cache.add(self.key, uuid.uuid4().hex, timeout=None)
                token = cache.get(self.key)
        except Exception:  # noqa: BLE001 - a cache outage must not stop intake
            return None
        return token


_all: list[Snapshot] = []


def forget_all() -> None:
    """Drop every snapshot's value in this process (tests roll the rows back under them)."""
    for snapshot in _all:
        snapshot.forget()


def _changed_by_migrate(**kwargs: object) -> None:
    """A flush (test databases) or migration may have replaced the rows under every snapshot."""
    for snapshot in _all:
        snapshot._bump()


post_migrate.connect(_changed_by_migrate, dispatch_uid="crm.snapshots.changed_by_migrate")
