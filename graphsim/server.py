"""The simulator's HTTPS server and the identity platform endpoints MSAL calls.

The identity part is what every Graph request needs first: OpenID discovery for the tenant, the
token endpoint (client credentials, authorization code with PKCE, refresh tokens), the authorize
endpoint standing in for the sign-in pages and the id tokens' signing keys; the logic and Azure
AD's error shapes are in `graphsim.identity`. Graph
requests below `/v1.0` are answered by `graphsim.routes` (and `graphsim.batch` for `$batch`);
this module only speaks HTTP, injects faults (`graphsim.faults`) and counts concurrency. The
server also holds the change-notification subscriptions and their notifier
(`graphsim.subscriptions`), with the switches and counters tests use, and the switches of the
write operations (`graphsim.writes`): scripted refusals, counters by kind, the sent mail log,
and the pre-authenticated upload URLs of attachment upload sessions.
"""

from __future__ import annotations

import ssl
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from graphsim.batch import run_batch
from graphsim.faults import Fault, FaultPlan, garbage_body, status_fault_response
from graphsim.identity import (
    IdentityState,
    TestUser,
    TokenContext,
    authorize,
    jwks,
    token_response,
)
from graphsim.mail import Mailbox
from graphsim.routes import (
    GraphRequest,
    GraphResponse,
    graph_error,
    handle,
    parse_prefer,
    throttled_concurrency,
)
from graphsim.subscriptions import (
    Notifier,
    SubscriptionStore,
    burst_deliveries,
    lifecycle_delivery,
)
from graphsim.tls import TestPKI
from graphsim.writes import (
    UPLOAD_PATH_PREFIX,
    UploadSessions,
    WriteSwitches,
    upload_chunk,
    upload_session_of,
)

MAILBOX_CONCURRENCY = 4


class Handler(BaseHTTPRequestHandler):
    """HTTP only: reads the request, injects faults, hands Graph requests to the routes."""

    server: SimulatorServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm the body's last segment
    # would wait for the client's delayed ACK (~40 ms a response, most of a large sync).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _send(self, response: GraphResponse) -> None:
        payload = response.payload()
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name != "Content-Type":
                self.send_header(name, value)
        self.send_header("Content-Type", response.content_type())
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        self._send(GraphResponse(status, body))

    def _tenant_route(self) -> tuple[str, str]:
        path = urllib.parse.urlsplit(self.path).path
        tenant, _, rest = path.lstrip("/").partition("/")
        return tenant, "/" + rest

    def _graph_request(self, method: str, body: bytes = b"") -> GraphRequest:
        return GraphRequest(
            method=method,
            target=self.path.removeprefix("/v1.0"),
            authorization=self.headers.get("Authorization") or "",
            prefer=parse_prefer(self.headers.get_all("Prefer") or []),
            body=body,
        )

    def _inject_fault(self) -> bool:
        """Answer with the next scripted or random fault, if any; True if one was sent."""
        fault = self.server.next_fault()
        if fault is None:
            return False
        kind, retry_after = fault
        if kind == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
        elif kind == "garbage":
            garbage = garbage_body(self.server.base_url)
            self._send(GraphResponse(200, garbage, {"Content-Type": "application/json"}))
        else:
            self._send(status_fault_response(kind, retry_after))
        return True

    def do_GET(self) -> None:  # noqa: N802 - stdlib hook
        if self.path.startswith("/v1.0/"):
            if not self._inject_fault():
                self._send(handle(self.server, self._graph_request("GET")))
            return
        tenant, rest = self._tenant_route()
        if rest == "/v2.0/.well-known/openid-configuration":
            self._send_json(200, self.server.openid_configuration(tenant))
            return
        if rest == "/oauth2/v2.0/authorize":
            self._authorize(tenant)
            return
        if rest == "/discovery/v2.0/keys":
            self._send_json(200, jwks(self.server.identity, self.server.issuer(tenant)))
            return
        self._send_json(404, {"error": {"code": "NotFound", "message": "No such resource."}})

    def _authorize(self, tenant: str) -> None:
        """The sign-in and consent pages: a redirect back to the app, or an error page."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        answer = authorize(self.server.identity, tenant, {k: v[0] for k, v in query.items()})
        if answer.location is not None:
            headers = {"Location": answer.location, "Content-Type": "text/html; charset=utf-8"}
            self._send(GraphResponse(answer.status, b"", headers))
        else:
            headers = {"Content-Type": "text/html; charset=utf-8"}
            self._send(GraphResponse(answer.status, answer.page.encode(), headers))

    def do_POST(self) -> None:  # noqa: N802 - stdlib hook
        # Read the body first, whatever happens next, so a kept-alive connection stays in step.
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/v1.0/"):
            if self._inject_fault():
                return
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            request = self._graph_request("POST", body)
            if path == "/v1.0/$batch":
                self._send(run_batch(self.server, request, body))
            else:
                self._send(handle(self.server, request))
            return
        tenant, rest = self._tenant_route()
        if rest == "/oauth2/v2.0/token":
            form = urllib.parse.parse_qs(body.decode())
            status, answer = self.server.token(tenant, {k: v[0] for k, v in form.items()})
            self._send_json(status, answer)
            return
        self._send_json(404, {"error": {"code": "NotFound", "message": "No such resource."}})

    def do_PATCH(self) -> None:  # noqa: N802 - stdlib hook
        self._body_route("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802 - stdlib hook
        self._body_route("DELETE")

    def do_PUT(self) -> None:  # noqa: N802 - stdlib hook
        """A chunk to an upload session's URL: no bearer token (the URL carries its own), but
        faults and the mailbox's concurrency limit apply as to any request."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.startswith(UPLOAD_PATH_PREFIX):
            self._send_json(404, {"error": {"code": "NotFound", "message": "No such resource."}})
            return
        if self._inject_fault():
            return
        session = upload_session_of(self.server, self.path)
        if session is None:
            self._send(unknown_upload_session())
            return
        if not self.server.enter_mailbox(session.address):
            self._send(throttled_concurrency())
            return
        try:
            if self.server.response_delay:
                time.sleep(self.server.response_delay)
            self._send(upload_chunk(self.server, session, self.headers.get("Content-Range"), body))
        finally:
            self.server.leave_mailbox(session.address)

    def _cancel_upload(self) -> None:
        """DELETE on an upload URL ends the session, as Graph's optional last step."""
        session = upload_session_of(self.server, self.path)
        if session is None:
            self._send(unknown_upload_session())
        else:
            self.server.upload_sessions.close(session.id)
            self._send(GraphResponse(204, b""))

    def _body_route(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if method == "DELETE" and self.path.startswith(UPLOAD_PATH_PREFIX):
            self._cancel_upload()
        elif not self.path.startswith("/v1.0/"):
            self._send_json(404, {"error": {"code": "NotFound", "message": "No such resource."}})
        elif not self._inject_fault():
            self._send(handle(self.server, self._graph_request(method, body)))


class SimulatorServer(ThreadingHTTPServer):
    """The simulator and its switches for tests: `response_delay` (seconds each mailbox
    request holds its slot), `empty_pages` and `repeat_items` (Graph's delta quirks), faults
    (`script_faults`, `set_fault_rate`) and counters: `graph_requests` (HTTP requests below
    /v1.0), `batch_subrequests`, `concurrency_refusals`.

    Change notifications: `notification_ca_file` (the CA that notification URLs' certificates
    must chain to; None: the system's), `allow_http_notification_urls`, `validation_timeout`,
    `notification_timeout`, `notification_retry_delays` (the backoff before each retry),
    `notification_batch_size`, `notification_concurrency` (POSTs in flight at once),
    `duplicate_notifications` (every batch POSTed twice), `shuffle_notifications` (batches and
    their items in random order); counters `notifications_sent` (items answered 2xx, duplicates
    included), `notification_posts` (every POST, retries and lifecycle events included),
    `notification_failures` (POSTs not answered 2xx in time), `notifications_dropped` (items
    given up after the last retry), `lifecycle_events_sent`.

    Writes (`graphsim.writes`): `refuse_writes` (the next writes on a message fail with a
    status), counters `write_counts` and `refused_writes` (Counters by kind: "update", "move",
    "delete", "permanentDelete", "createDraft", "createReply", "createReplyAll",
    "createForward", "send", "sendMail", "addAttachment", "deleteAttachment",
    "createUploadSession", "uploadChunk", "uploadedAttachment"), `sent_messages` (each sent
    message as it went out, attachments included), `expire_upload_sessions`.

    Identity (`graphsim.identity`, on `identity`): `register_app(..., redirect_uris=[...])`,
    `add_user` (which also creates the user's mailbox here), `sign_in` / `sign_out`,
    `deny_consent`, `revoke_refresh_tokens`, `expire_refresh_tokens`,
    `expire_authorization_codes`, `expire_all_tokens`; `authorize_requests` and
    `grant_counts` for assertions."""

    daemon_threads = True

    def __init__(
        self, pki: TestPKI, port: int = 0, *, notification_ca: Path | str | None = None
    ) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.identity = IdentityState()
        self.identity.user_added = self._user_mailbox
        self.mailboxes: dict[str, Mailbox] = {}
        self.graph_requests = 0
        self.response_delay = 0.0
        self.empty_pages = False
        self.repeat_items = False
        self.concurrency_refusals = 0
        self.batch_subrequests = 0
        self._in_flight: dict[str, int] = {}
        self._in_flight_lock = threading.Lock()
        self._faults = FaultPlan()
        self.subscriptions = SubscriptionStore()
        self.notifier = Notifier(self)
        self.notification_ca_file = str(notification_ca) if notification_ca else None
        self.allow_http_notification_urls = False
        self.validation_timeout = 10.0
        self.notification_timeout = 3.0
        self.notification_retry_delays: tuple[float, ...] = (0.1, 0.3, 0.9)
        self.notification_batch_size = 100
        self.notification_concurrency = 1
        self.duplicate_notifications = False
        self.shuffle_notifications = False
        self.notifications_sent = 0
        self.notification_posts = 0
        self.notification_failures = 0
        self.notifications_dropped = 0
        self.lifecycle_events_sent = 0
        self.writes = WriteSwitches()
        self.upload_sessions = UploadSessions()

    def enter_mailbox(self, address: str) -> bool:
        """Exchange serves at most four concurrent requests per mailbox and app."""
        with self._in_flight_lock:
            if self._in_flight.get(address, 0) >= MAILBOX_CONCURRENCY:
                self.concurrency_refusals += 1
                return False
            self._in_flight[address] = self._in_flight.get(address, 0) + 1
            return True

    def leave_mailbox(self, address: str) -> None:
        with self._in_flight_lock:
            self._in_flight[address] -= 1

    def script_faults(self, *faults: Fault) -> None:
        """The next Graph requests fail in this order: ("429", "1.5"), ("503", None), ("drop",
        None), ("garbage", None), ("ok", None)...; the second item is the Retry-After header,
        if any. A `$batch` takes one for itself, then one per sub-request (see `faults`)."""
        self._faults.script(*faults)

    def set_fault_rate(self, rate: float, *, seed: int = 0) -> None:
        """A seeded share of Graph requests fail with 429, 503, 504, a dropped connection or a
        truncated body (sub-requests of a `$batch`: 429, 503 or 504 only)."""
        self._faults.set_rate(rate, seed=seed)

    def next_fault(self, *, outer: bool = True) -> Fault | None:
        """The fault for the next request; counts HTTP requests and `$batch` sub-requests."""
        with self._in_flight_lock:
            if outer:
                self.graph_requests += 1
            else:
                self.batch_subrequests += 1
        return self._faults.next(outer=outer)

    def add_mailbox(self, address: str) -> Mailbox:
        mailbox = Mailbox.with_standard_folders(address)
        mailbox.change_listener = self.notifier.mail_changed
        self.mailboxes[address.lower()] = mailbox
        return mailbox

    def _user_mailbox(self, user: TestUser) -> None:
        """A test user has a mailbox at their address, as every licensed user does."""
        if user.email not in self.mailboxes:
            self.add_mailbox(user.email)

    # Writes, for tests

    def refuse_writes(
        self, message_id: str | None = None, *, status: int = 403, times: int = 1
    ) -> None:
        """The next `times` writes on the message (regular or immutable id; None: any write,
        sendMail and new drafts included) fail with `status` in Graph's error shape, before
        changing anything. A 429 or 503 refusal carries no Retry-After; use faults for those."""
        self.writes.refuse(message_id, status, times)

    @property
    def write_counts(self) -> Counter[str]:
        """Successful writes by kind (see the class docstring)."""
        return self.writes.counts

    @property
    def refused_writes(self) -> Counter[str]:
        return self.writes.refused

    @property
    def sent_messages(self) -> list[dict[str, Any]]:
        return self.writes.sent

    def expire_upload_sessions(self) -> None:
        """Every open upload session's URL now answers 404."""
        self.upload_sessions.expire_all()

    # Change notifications, for tests

    def pause_notifications(self) -> None:
        """Changes queue up until `resume_notifications`, then go out in batches."""
        self.notifier.pause()

    def resume_notifications(self) -> None:
        self.notifier.resume()

    def wait_for_notifications(self, timeout: float = 10.0) -> bool:
        """True once every queued notification and lifecycle event was delivered or dropped."""
        return self.notifier.wait_idle(timeout)

    def notify_burst(
        self,
        subscription_id: str,
        count: int,
        *,
        change_type: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        """POST `count` notifications for the subscription's folder as fast as the receiver
        takes them, `batch_size` (default `notification_batch_size`) per POST."""
        subscription = self.subscriptions.get(subscription_id)
        deliveries = burst_deliveries(
            self, subscription, count, change_type=change_type, batch_size=batch_size
        )
        self.notifier.enqueue(deliveries)

    def send_lifecycle_event(self, subscription_id: str, event: str) -> None:
        """POST `reauthorizationRequired`, `subscriptionRemoved` (which also deletes the
        subscription) or `missed` to the subscription's lifecycle URL."""
        self.notifier.enqueue([lifecycle_delivery(self, subscription_id, event)])

    def expire_subscription(self, subscription_id: str) -> None:
        """As if its lifetime had run out: gone from GET and sends nothing."""
        self.subscriptions.expire(subscription_id)

    def server_close(self) -> None:
        self.notifier.stop()
        super().server_close()

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    def issuer(self, tenant: str) -> str:
        return f"{self.base_url}/{tenant}/v2.0"

    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        base = f"{self.base_url}/{tenant}"
        return {
            "issuer": self.issuer(tenant),
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "tenant_region_scope": "EU",
        }

    def token(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The client-credentials, authorization-code and refresh-token grants, with Azure
        AD's error codes for what goes wrong (see `graphsim.identity`)."""
        return token_response(self.identity, TokenContext(tenant, self.issuer(tenant)), form)


def unknown_upload_session() -> GraphResponse:
    return graph_error(404, "ErrorItemNotFound", "The upload session does not exist or expired.")


def start(
    pki: TestPKI, port: int = 0, *, notification_ca: Path | str | None = None
) -> SimulatorServer:
    """Serve in a background thread; call `shutdown()` and `server_close()` to stop.
    `notification_ca` is the CA file that notification endpoints' certificates are verified
    against (default: the system's CAs)."""
    server = SimulatorServer(pki, port, notification_ca=notification_ca)
    # A short poll interval: `shutdown()` waits for the loop's next poll, and every test that
    # uses the simulator shuts one down (the default half second added up to minutes).
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="graphsim", daemon=True
    ).start()
    return server
