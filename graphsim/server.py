"""The simulator's HTTPS server and the identity platform endpoints MSAL calls.

Graph's mail endpoints join this server in the next step (issue "mail sync, part 1"); the
identity part is what every Graph request needs first: OpenID discovery for the tenant and the
token endpoint with the client-credentials grant, with Azure AD's error shapes.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from graphsim.mail import Mailbox, SyncStateExpired, decode_token, encode_token
from graphsim.tls import TestPKI

TOKEN_LIFETIME_SECONDS = 3599
DEFAULT_PAGE_SIZE = 10
MAILBOX_CONCURRENCY = 4


@dataclass
class IdentityState:
    """Registered apps per tenant, and the access tokens handed out (token -> expiry)."""

    apps: dict[tuple[str, str], str] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    token_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def register_app(self, *, tenant: str, client_id: str, secret: str) -> None:
        self.apps[(tenant, client_id)] = secret

    def issue_token(self) -> str:
        token = "sim." + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.time() + TOKEN_LIFETIME_SECONDS
            self.token_requests += 1
        return token

    def token_valid(self, token: str) -> bool:
        return self.tokens.get(token, 0) > time.time()

    def expire_all_tokens(self) -> None:
        """As if every token's hour had passed: Graph answers 401 until a new one is fetched."""
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)


class Handler(BaseHTTPRequestHandler):
    server: SimulatorServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _tenant_route(self) -> tuple[str, str]:
        path = urllib.parse.urlsplit(self.path).path
        tenant, _, rest = path.lstrip("/").partition("/")
        return tenant, "/" + rest

    def do_GET(self) -> None:  # noqa: N802 - stdlib hook
        if self.path.startswith("/v1.0/"):
            self._graph_get()
            return
        tenant, rest = self._tenant_route()
        if rest == "/v2.0/.well-known/openid-configuration":
            self._send_json(200, self.server.openid_configuration(tenant))
            return
        self._send_json(404, {"error": {"code": "NotFound", "message": "No such resource."}})

    def _graph_error(self, status: int, code: str, message: str) -> None:
        self._send_json(status, {"error": {"code": code, "message": message}})

    def _authenticated(self) -> bool:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and self.server.identity.token_valid(token):
            return True
        self._graph_error(
            401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
        )
        return False

    def _inject_fault(self) -> bool:
        """Answer with the next scripted or random fault, if any; True if one was sent."""
        fault = self.server.next_fault()
        if fault is None:
            return False
        kind, retry_after = fault
        if kind == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return True
        status = int(kind)
        payload = json.dumps(
            {"error": {"code": "TooManyRequests" if status == 429 else "ServiceUnavailable",
                       "message": "Simulated fault."}}
        ).encode()  # fmt: skip
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        return True

    def _graph_get(self) -> None:
        if self._inject_fault() or not self._authenticated():
            return
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[2:]]
        if len(parts) >= 5 and parts[0] == "users" and parts[2] == "messages":
            self._attachments_route(parts, query)
            return
        if len(parts) < 3 or parts[0] != "users" or parts[2] != "mailFolders":
            self._graph_error(400, "BadRequest", "Unsupported request in the simulator.")
            return
        mailbox = self.server.mailboxes.get(parts[1].lower())
        if mailbox is None:
            self._graph_error(
                404, "ErrorInvalidUser", f"The requested user '{parts[1]}' is invalid."
            )
            return
        if not self.server.enter_mailbox(mailbox.address):
            self._send_throttled_concurrency()
            return
        try:
            if self.server.response_delay:
                time.sleep(self.server.response_delay)
            self._mail_route(mailbox, parts[3:], query)
        except KeyError:
            self._graph_error(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        except SyncStateExpired:
            self._graph_error(410, "syncStateNotFound", "The sync state generation is not found.")
        finally:
            self.server.leave_mailbox(mailbox.address)

    def _send_throttled_concurrency(self) -> None:
        payload = json.dumps(
            {"error": {"code": "ApplicationThrottled",
                       "message": "Application is over its MailboxConcurrency limit."}}
        ).encode()  # fmt: skip
        self.send_response(429)
        self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _attachments_route(self, parts: list[str], query: dict[str, str]) -> None:
        """`messages/{id}/attachments` (metadata) and `attachments/{id}/$value` (the bytes)."""
        mailbox = self.server.mailboxes.get(parts[1].lower())
        found = mailbox.attachments.get(parts[3], []) if mailbox else []
        if parts[4] != "attachments" or mailbox is None or parts[3] not in mailbox.messages:
            self._graph_error(404, "ErrorItemNotFound", "The specified object was not found.")
        elif len(parts) == 5:
            metadata = [{k: v for k, v in a.items() if k != "contentBytes"} for a in found]
            self._send_json(200, {"value": metadata})
        else:
            match = next((a for a in found if a["id"] == parts[5]), None)
            if match is None or parts[6:] != ["$value"]:
                self._graph_error(404, "ErrorItemNotFound", "The specified object was not found.")
                return
            payload = base64.b64decode(match["contentBytes"])
            self.send_response(200)
            self.send_header("Content-Type", match["contentType"])
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    def _mail_route(self, mailbox: Mailbox, rest: list[str], query: dict[str, str]) -> None:
        base = f"{self.server.base_url}/v1.0/users/{mailbox.address}/mailFolders"
        if rest == ["delta"]:
            self._send_json(200, self._folder_delta(mailbox, query, base))
        elif not rest:
            root = next(f for f in mailbox.folders.values() if f.parent_id is None)
            self._send_json(200, {"value": _folders(mailbox, root.id)})
        elif len(rest) == 2 and rest[1] == "childFolders":
            self._send_json(200, {"value": _folders(mailbox, mailbox.folder(rest[0]).id)})
        elif len(rest) == 3 and rest[1:] == ["messages", "delta"]:
            folder = mailbox.folder(rest[0])
            self._send_json(200, self._delta(mailbox, folder.id, query, f"{base}/{folder.id}"))
        else:
            self._graph_error(400, "BadRequest", "Unsupported request in the simulator.")

    def _folder_delta(self, mailbox: Mailbox, query: dict[str, str], base: str) -> dict:
        """Folder changes in one page (mailboxes have tens of folders, not thousands)."""
        since = decode_token(query["$deltatoken"])["seq"] if "$deltatoken" in query else 0
        until = mailbox.current_seq()
        token = encode_token(seq=until)
        return {
            "value": mailbox.folder_delta(since=since, until=until),
            "@odata.deltaLink": f"{base}/delta?%24deltatoken={token}",
        }

    def _page_size(self) -> int:
        prefer = self.headers.get("Prefer") or ""
        for part in prefer.split(","):
            name, _, value = part.strip().partition("=")
            if name == "odata.maxpagesize" and value.isdigit():
                return max(1, int(value))
        return DEFAULT_PAGE_SIZE

    def _delta(
        self, mailbox: Mailbox, folder_id: str, query: dict[str, str], base: str
    ) -> dict[str, Any]:
        if "$skiptoken" in query:
            state = decode_token(query["$skiptoken"])
        elif "$deltatoken" in query:
            since = decode_token(query["$deltatoken"])["seq"]
            state = {"since": since, "until": mailbox.current_seq(), "offset": 0}
        else:
            state = {"since": 0, "until": mailbox.current_seq(), "offset": 0}
        size = self._page_size()
        select = f"&%24select={urllib.parse.quote(query['$select'])}" if "$select" in query else ""
        if self.server.empty_pages and not state.get("empty_served"):
            # Graph sends empty pages mid-round; they must not end it.
            token = encode_token(**{**state, "empty_served": True})
            return {
                "value": [],
                "@odata.nextLink": f"{base}/messages/delta?%24skiptoken={token}{select}",
            }
        # Graph may repeat an item within a round: here, the previous page's last one.
        repeat = 1 if self.server.repeat_items and state["offset"] > 0 else 0
        items, more = mailbox.delta_page(
            folder_id, since=state["since"], until=state["until"],
            offset=state["offset"] - repeat, page_size=size + repeat,
        )  # fmt: skip
        selected = query.get("$select")
        if selected:
            keep = {"id", "@removed", *selected.split(",")}
            items = [{k: v for k, v in item.items() if k in keep} for item in items]
        body: dict[str, Any] = {"value": items}
        if more:
            token = encode_token(
                **{**state, "offset": state["offset"] + size, "empty_served": False}
            )
            body["@odata.nextLink"] = f"{base}/messages/delta?%24skiptoken={token}{select}"
        else:
            token = encode_token(seq=state["until"])
            body["@odata.deltaLink"] = f"{base}/messages/delta?%24deltatoken={token}{select}"
        return body

    def do_POST(self) -> None:  # noqa: N802 - stdlib hook
        tenant, rest = self._tenant_route()
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        if rest == "/oauth2/v2.0/token":
            status, body = self.server.token(tenant, {k: v[0] for k, v in form.items()})
            self._send_json(status, body)
            return
        self._send_json(404, {"error": {"code": "NotFound", "message": "No such resource."}})


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, pki: TestPKI, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.identity = IdentityState()
        self.mailboxes: dict[str, Mailbox] = {}
        self.graph_requests = 0
        self.response_delay = 0.0
        self.empty_pages = False
        self.repeat_items = False
        self.concurrency_refusals = 0
        self._in_flight: dict[str, int] = {}
        self._faults: list[tuple[str, str | None]] = []
        self._fault_rate = 0.0
        self._fault_rng = random.Random(0)  # noqa: S311 - simulated faults, not secrets
        self._fault_lock = threading.Lock()

    def enter_mailbox(self, address: str) -> bool:
        """Exchange serves at most four concurrent requests per mailbox and app."""
        with self._fault_lock:
            if self._in_flight.get(address, 0) >= MAILBOX_CONCURRENCY:
                self.concurrency_refusals += 1
                return False
            self._in_flight[address] = self._in_flight.get(address, 0) + 1
            return True

    def leave_mailbox(self, address: str) -> None:
        with self._fault_lock:
            self._in_flight[address] -= 1

    def script_faults(self, *faults: tuple[str, str | None]) -> None:
        """The next Graph requests fail in this order: ("429", "1.5"), ("503", None), ("drop",
        None)...; the second item is the Retry-After header, if any."""
        with self._fault_lock:
            self._faults.extend(faults)

    def set_fault_rate(self, rate: float, *, seed: int = 0) -> None:
        """A seeded share of Graph requests fail with 429, 503, 504 or a dropped connection."""
        with self._fault_lock:
            self._fault_rate = rate
            self._fault_rng = random.Random(seed)  # noqa: S311 - simulated faults

    def next_fault(self) -> tuple[str, str | None] | None:
        with self._fault_lock:
            self.graph_requests += 1
            if self._faults:
                return self._faults.pop(0)
            if self._fault_rate and self._fault_rng.random() < self._fault_rate:
                kind = self._fault_rng.choice(["429", "503", "504", "drop"])
                return kind, ("0.05" if kind == "429" else None)
            return None

    def add_mailbox(self, address: str) -> Mailbox:
        mailbox = Mailbox.with_standard_folders(address)
        self.mailboxes[address.lower()] = mailbox
        return mailbox

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        base = f"{self.base_url}/{tenant}"
        return {
            "issuer": f"{self.base_url}/{tenant}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "tenant_region_scope": "EU",
        }

    def token(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The client-credentials grant, with Azure AD's error codes for what goes wrong."""
        if form.get("grant_type") != "client_credentials":
            return 400, _aad_error("unsupported_grant_type", "AADSTS70003", "Grant not supported.")
        secret = self.identity.apps.get((tenant, form.get("client_id", "")))
        if secret is None:
            return 400, _aad_error(
                "unauthorized_client", "AADSTS700016", "Application not found in the tenant."
            )
        if not secrets.compare_digest(secret, form.get("client_secret", "")):
            return 401, _aad_error("invalid_client", "AADSTS7000215", "Invalid client secret.")
        if not form.get("scope", "").endswith("/.default"):
            return 400, _aad_error("invalid_scope", "AADSTS1002012", "Scope must be /.default.")
        return 200, {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "ext_expires_in": TOKEN_LIFETIME_SECONDS,
            "access_token": self.identity.issue_token(),
        }


def _folders(mailbox: Mailbox, parent_id: str) -> list[dict[str, Any]]:
    children = [f for f in mailbox.folders.values() if f.parent_id == parent_id]
    return [
        {
            "id": f.id,
            "displayName": f.display_name,
            "parentFolderId": f.parent_id,
            "childFolderCount": sum(1 for c in mailbox.folders.values() if c.parent_id == f.id),
            "wellKnownName": f.well_known,
        }
        for f in children
    ]


def _aad_error(error: str, code: str, description: str) -> dict[str, Any]:
    return {
        "error": error,
        "error_description": f"{code}: {description}",
        "error_codes": [int(code.removeprefix("AADSTS"))],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
    }


def start(pki: TestPKI, port: int = 0) -> SimulatorServer:
    """Serve in a background thread; call `shutdown()` and `server_close()` to stop."""
    server = SimulatorServer(pki, port)
    threading.Thread(target=server.serve_forever, name="graphsim", daemon=True).start()
    return server
