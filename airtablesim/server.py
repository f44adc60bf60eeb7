"""The fake Airtable's HTTP server: tokens, the per-base rate limit and lockout, faults and
counters. Record semantics are in `airtablesim.tables`.

Routes (below `/v0`, as Airtable's): `GET /{base}/{table}` and `POST /{base}/{table}/listRecords`
(a page of records, `pageSize` and `offset`), `POST /{base}/{table}` (create), `PATCH
/{base}/{table}` (update by id, or upsert with `performUpsert`). Anything else is 404.

Checks in Airtable's order: the token (401 `AUTHENTICATION_REQUIRED` when absent, 401
`UNAUTHORIZED` when unknown), then the base's rate limit (at most `rate_limit` requests in any
`rate_window` seconds; the one over it is answered 429 and the base stays locked for
`lockout_seconds`, every request meanwhile answered 429 too), then whether the token may use
the base and the table exists (403 `INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND` for either: with
personal access tokens Airtable does not say which), then the body (422).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from airtablesim.tables import AirtableFailure, Base, Table

RATE_LIMIT = 5
RATE_WINDOW_SECONDS = 1.0
LOCKOUT_SECONDS = 30.0

NO_ACCESS = AirtableFailure(
    403,
    "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
    "Invalid permissions, or the requested model was not found. Check that both your user "
    "and your token have the required permissions, and that the model names and/or ids are "
    "correct.",
)
NO_TOKEN = AirtableFailure(401, "AUTHENTICATION_REQUIRED", "Authentication required")
BAD_TOKEN = AirtableFailure(401, "UNAUTHORIZED", "Invalid authentication token")
RATE_LIMITED = AirtableFailure(
    429, "RATE_LIMIT_REACHED", "Rate limit exceeded. Please try again later"
)


class Handler(BaseHTTPRequestHandler):
    server: AirtableServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def do_GET(self) -> None:  # noqa: N802 - stdlib hook
        self._answer("GET")

    def do_POST(self) -> None:  # noqa: N802 - stdlib hook
        self._answer("POST")

    def do_PATCH(self) -> None:  # noqa: N802 - stdlib hook
        self._answer("PATCH")

    def do_PUT(self) -> None:  # noqa: N802 - stdlib hook
        self._answer("PUT")

    def do_DELETE(self) -> None:  # noqa: N802 - stdlib hook
        self._answer("DELETE")

    def _answer(self, method: str) -> None:
        # The body first, whatever happens next, so a kept-alive connection stays in step.
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        split = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in split.path.strip("/").split("/")]
        kind = _kind(method, parts, raw)
        try:
            status, body = (
                200,
                self.server.handle(
                    kind=kind,
                    parts=parts,
                    query=urllib.parse.parse_qs(split.query),
                    authorization=self.headers.get("Authorization") or "",
                    raw=raw,
                ),
            )
        except AirtableFailure as failure:
            status, body = failure.status, failure.body()
        self.server.count(kind, status)
        if kind in ("upsert", "create", "update") and self.server.take_drop(kind):
            # The write was applied (or refused) but the answer never arrives: the client
            # cannot tell, which is why retries must be upserts.
            self.server.count("dropped", None)
            self.close_connection = True
            self.connection.shutdown(2)
            return
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _kind(method: str, parts: list[str], raw: bytes) -> str:
    """What a request is, for the counters: list, create, update, upsert or other."""
    if len(parts) == 3 and parts[0] == "v0":
        kind = {"GET": "list", "POST": "create", "PATCH": "update"}.get(method, "other")
        if kind == "update" and b'"performUpsert"' in raw:
            return "upsert"
        return kind
    if len(parts) == 4 and parts[0] == "v0" and parts[3] == "listRecords" and method == "POST":
        return "list"
    return "other"


class AirtableServer(ThreadingHTTPServer):
    """The fake and its switches for tests: `add_base`, `rate_limit`, `rate_window`,
    `lockout_seconds`, faults (`drop_next`, `throttle_next`), counters (`counts`: requests
    by kind "list", "create", "update", "upsert", "other", by answer "status:429" and so on,
    and "dropped"), `max_requests_in_window(base_id)` and `table(base_id, name)`."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.bases: dict[str, Base] = {}
        self.tokens: dict[str, set[str]] = {}
        self.rate_limit = RATE_LIMIT
        self.rate_window = RATE_WINDOW_SECONDS
        self.lockout_seconds = LOCKOUT_SECONDS
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._accepted: dict[str, list[float]] = {}
        self._drops: list[str | int] = []  # [kinds, skip, count] as set by drop_next
        self._throttle_next = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    # --- set-up -----------------------------------------------------------------------------

    def add_base(
        self, base_id: str, *, token: str, tables: dict[str, list[str]] | None = None
    ) -> Base:
        """A base the token may use, with tables `{name: [field names]}`."""
        base = self.bases.setdefault(base_id, Base(base_id))
        for number, (name, fields) in enumerate((tables or {}).items(), start=len(base.tables)):
            base.tables[name] = Table(id=f"tbl{base_id[-6:]}{number:08d}", name=name,
                                      fields=list(fields))  # fmt: skip
        self.tokens.setdefault(token, set()).add(base_id)
        return base

    def table(self, base_id: str, name: str) -> Table:
        return self.bases[base_id].tables[name]

    # --- faults -----------------------------------------------------------------------------

    def drop_next(self, count: int, *, kinds: tuple[str, ...] = ("upsert",), skip: int = 0) -> None:
        """After `skip` more writes of these kinds, the next `count` are applied but their
        connections closed without an answer."""
        with self._lock:
            self._drops = [",".join(kinds), skip, count]

    def throttle_next(self, count: int = 1) -> None:
        """The next `count` requests are answered 429 and lock their base out, as if it had
        gone over the rate limit."""
        with self._lock:
            self._throttle_next = count

    def take_drop(self, kind: str) -> bool:
        with self._lock:
            if not self._drops or kind not in str(self._drops[0]).split(","):
                return False
            _, skip, count = self._drops
            if skip:
                self._drops[1] = int(skip) - 1
                return False
            if not count:
                return False
            self._drops[2] = int(count) - 1
            return True

    # --- counters ---------------------------------------------------------------------------

    def count(self, kind: str, status: int | None) -> None:
        with self._lock:
            self.counts[kind] += 1
            if status is not None:
                self.counts[f"status:{status}"] += 1

    def max_requests_in_window(self, base_id: str) -> int:
        """The most requests the base accepted within any `rate_window` (a real limit holds
        if this never passes `rate_limit`)."""
        with self._lock:
            times = sorted(self._accepted.get(base_id, []))
        most, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= self.rate_window:
                start += 1
            most = max(most, end - start + 1)
        return most

    # --- requests ---------------------------------------------------------------------------

    def handle(
        self, *, kind: str, parts: list[str], query: dict[str, list[str]], authorization: str,
        raw: bytes,
    ) -> dict[str, Any]:  # fmt: skip
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise NO_TOKEN
        if token not in self.tokens:
            raise BAD_TOKEN
        if kind == "other":
            raise AirtableFailure(404, "NOT_FOUND", "Could not find what you are looking for")
        base_id = parts[1]
        self._take_turn(base_id)
        base = self.bases.get(base_id)
        table = base.table(parts[2]) if base and base_id in self.tokens[token] else None
        if table is None:
            raise NO_ACCESS
        body = _json_body(raw)
        if kind == "list":
            options = {k: v[-1] for k, v in query.items()} if not body else body
            page_size = options.get("pageSize")
            try:
                size = int(page_size) if page_size is not None else None
            except ValueError:
                raise AirtableFailure(422, "INVALID_REQUEST_UNKNOWN", "Bad pageSize.") from None
            return table.list_page(page_size=size, offset=options.get("offset"))
        if kind == "create":
            return table.create(body)
        return table.update(body)

    def _take_turn(self, base_id: str) -> None:
        """Airtable's limit: `rate_limit` requests per `rate_window` per base; the request
        over it is refused and locks the base out for `lockout_seconds`."""
        with self._lock:
            now = time.monotonic()  # under the lock, so the window stays in order
            if self._throttle_next:
                self._throttle_next -= 1
                self._locked_until[base_id] = now + self.lockout_seconds
                raise RATE_LIMITED
            if self._locked_until.get(base_id, 0.0) > now:
                raise RATE_LIMITED
            recent = self._recent.setdefault(base_id, deque())
            while recent and now - recent[0] >= self.rate_window:
                recent.popleft()
            if len(recent) >= self.rate_limit:
                self._locked_until[base_id] = now + self.lockout_seconds
                raise RATE_LIMITED
            recent.append(now)
            self._accepted.setdefault(base_id, []).append(now)


def _json_body(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise AirtableFailure(400, "INVALID_REQUEST_UNKNOWN", "Invalid JSON body.") from None
    if not isinstance(body, dict):
        raise AirtableFailure(400, "INVALID_REQUEST_UNKNOWN", "The body must be an object.")
    return body


def start(port: int = 0) -> AirtableServer:
    """Serve in a background thread; call `shutdown()` and `server_close()` to stop."""
    server = AirtableServer(port)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="airtablesim",
        daemon=True,
    ).start()  # fmt: skip
    return server
