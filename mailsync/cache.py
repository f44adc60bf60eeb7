"""Hot pages of the message list, cached in Redis (Django's cache) under their change numbers.

A page's key names everything the page depends on: for every mailbox in its scope, the
mailbox's id, creation time, address and **the last change number of its container**, then
the folder, the canonical filters, the search, the page size and the position. Why the
mailbox container's `last_seq` makes a cached page never stale:

- every write that changes what a list shows (a new, changed, moved, orphaned or deleted
  message, a folder renamed or removed) takes a number from its mailbox's container in the
  same transaction (DESIGN.md "Change numbers"; `crm.changes`), so any committed change
  moves `last_seq` and with it the key: the next request misses and computes afresh;
- the numbers are read (`selectors.message_scope`) before the page, so a page is at least as
  new as the numbers it is stored under; a write committing in between makes it newer, never
  older, and the next request after that commit uses the new number anyway;
- the scope is computed for the caller first, so the key also changes with what they may
  see; nothing user-specific is in a page, so users seeing the same mailboxes share pages.

A per-folder number would miss less (a change in Sent Items also turns the Inbox's pages
cold) but needs a counter on every folder a message leaves or enters; the mailbox's number
is one indexed read that is already there. The creation time tells a mailbox apart from an
earlier one with the same id (a recreated test database, a disconnected and reconnected
mailbox). Filters that read other apps' rows (`case:`) are not covered by the number, so such
lists are never cached (`MessageFilter.cacheable`). Entries expire after
`MAIL_PAGE_CACHE_SECONDS` only to bound memory; expiry is not what keeps them correct. After
restoring the database from a backup, clear the cache (its numbers may repeat).

When the cache does not answer, the page is computed as if it had missed (and counted as an
error), so Redis being down slows the list but never breaks it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache

from crm.metrics import CACHE_LOOKUPS
from mailsync.selectors import MessageScope

logger = logging.getLogger(__name__)

CACHE_NAME = "mail_pages"
KEY_PREFIX = "mail:page:v1:"


def page_key(*, scope: MessageScope, request: dict[str, Any]) -> str:
    """The key of a page: the scope with its change numbers, and the canonical request."""
    identity = {
        "mailboxes": [
            [m.id, m.created_at.isoformat(), m.address, m.last_seq] for m in scope.mailboxes
        ],
        "folder": scope.folder_id,
        **request,
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return KEY_PREFIX + hashlib.sha256(text.encode()).hexdigest()


def page_get(key: str) -> dict[str, Any] | None:
    """The cached page, or None (a miss, or the cache did not answer)."""
    try:
        page = cache.get(key)
    except Exception:  # noqa: BLE001 - any cache failure is a miss, never a failed request
        logger.warning("mail page cache did not answer", exc_info=True)
        CACHE_LOOKUPS.labels(CACHE_NAME, "error").inc()
        return None
    CACHE_LOOKUPS.labels(CACHE_NAME, "miss" if page is None else "hit").inc()
    return page


def page_set(key: str, page: dict[str, Any]) -> None:
    try:
        cache.set(key, page, timeout=_seconds())
    except Exception:  # noqa: BLE001 - the page was answered; caching it is a bonus
        logger.warning("mail page cache refused a page", exc_info=True)


def page_bypass() -> None:
    """Count a list that cannot be cached (it uses a filter the change numbers do not cover)."""
    CACHE_LOOKUPS.labels(CACHE_NAME, "bypass").inc()


def _seconds() -> int:
    return settings.MAIL_PAGE_CACHE_SECONDS
