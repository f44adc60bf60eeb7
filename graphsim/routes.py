"""Graph's mail and subscription routes without HTTP: a `GraphRequest` in, a `GraphResponse` out.

Keeping the routes apart from the socket handling lets `$batch` run each sub-request through
exactly the same routing, authentication, id handling and errors as a direct request.
"""

from __future__ import annotations

import base64
import datetime
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from graphsim.mail import (
    Folder,
    Mailbox,
    SyncStateExpired,
    decode_token,
    encode_token,
    message_resource,
)
from graphsim.subscriptions import (
    Subscription,
    SubscriptionError,
    create_subscription,
    mailbox_by_user,
    renew_subscription,
    user_id,
)

if TYPE_CHECKING:
    from graphsim.server import SimulatorServer

DEFAULT_PAGE_SIZE = 10
IMMUTABLE_ID_PREFERENCE = 'IdType="ImmutableId"'
# Graph's path segments are case-insensitive: notifications name `Users/{id}/Messages/{id}`.
SEGMENTS = {
    name.lower(): name
    for name in (
        "users", "mailFolders", "childFolders", "messages", "delta", "attachments", "move",
        "send", "sendMail", "createReply", "createReplyAll", "createForward", "permanentDelete",
        "createUploadSession",
    )
}  # fmt: skip
# Methods the mail routes answer besides GET (see graphsim.writes); `$batch` stays GET-only.
WRITE_METHODS = frozenset({"POST", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Preferences:
    """What the request's `Prefer` headers ask for (several may be sent, or one comma list)."""

    page_size: int | None = None
    immutable_ids: bool = False


def parse_prefer(values: Iterable[str]) -> Preferences:
    page_size, immutable = None, False
    for header in values:
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "odata.maxpagesize" and value.isdigit():
                page_size = max(1, int(value))
            elif name == "idtype" and value.lower() == "immutableid":
                immutable = True
    return Preferences(page_size=page_size, immutable_ids=immutable)


@dataclass(frozen=True)
class GraphRequest:
    """A request below `/v1.0`: `target` is the path and query, e.g. `/users/x/messages/1`."""

    method: str
    target: str
    authorization: str
    prefer: Preferences = Preferences()
    body: bytes = b""

    @property
    def parts(self) -> list[str]:
        """The path's segments, Graph's own names in their canonical case."""
        path = urllib.parse.urlsplit(self.target).path
        segments = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        return [SEGMENTS.get(s.lower(), s) for s in segments]

    @property
    def query(self) -> dict[str, str]:
        query = urllib.parse.urlsplit(self.target).query
        return {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}


# Compact UTF-8 and no cycle check (bodies are plain JSON trees): a large sync spends most
# of the simulator's time here.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


@dataclass
class GraphResponse:
    """`body` is JSON (a dict) or raw bytes served with `headers["Content-Type"]`."""

    status: int
    body: dict[str, Any] | bytes
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return _ENCODER.encode(self.body).encode()

    def content_type(self) -> str:
        return self.headers.get("Content-Type", "application/json; charset=utf-8")


def graph_error(status: int, code: str, message: str) -> GraphResponse:
    """Graph's error shape, with the `innerError` diagnostics it always adds."""
    request_id = str(uuid.uuid4())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    inner = {"date": now, "request-id": request_id, "client-request-id": request_id}
    return GraphResponse(status, {"error": {"code": code, "message": message, "innerError": inner}})


def not_found() -> GraphResponse:
    return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def unsupported() -> GraphResponse:
    return graph_error(400, "BadRequest", "Unsupported request in the simulator.")


def throttled_concurrency() -> GraphResponse:
    response = graph_error(
        429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit."
    )
    response.headers["Retry-After"] = "1"
    return response


def authenticated(server: SimulatorServer, authorization: str) -> bool:
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and server.identity.token_valid(token)


def unauthenticated() -> GraphResponse:
    return graph_error(
        401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
    )


def mailbox_of(server: SimulatorServer, parts: list[str]) -> Mailbox | None:
    """The mailbox a `/users/{address or user id}/...` path names, if it exists."""
    if len(parts) < 2 or parts[0] != "users":
        return None
    return mailbox_by_user(server.mailboxes, parts[1])


def delegated_request(
    server: SimulatorServer, request: GraphRequest
) -> GraphRequest | GraphResponse:
    """A delegated token (authorization code flow) acts for its user: `/me/...` is read as
    `/users/{their address}/...`, and other users' mailboxes are refused as Exchange refuses
    them without delegate rights. App-only tokens have no `/me`."""
    user = server.identity.delegated_user(request.authorization)
    parts = request.parts
    if parts[0].lower() == "me":
        if user is None:
            return graph_error(
                400, "BadRequest", "/me request is only valid with delegated authentication flow."
            )
        return replace(request, target=_users_target(request.target, user))
    if user is not None and parts[0] == "users" and len(parts) > 1:
        if parts[1].lower() not in (user, user_id(user)):
            return graph_error(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
    return request


def _users_target(target: str, address: str) -> str:
    """`/me/messages?$top=1` -> `/users/{address}/messages?$top=1`."""
    path, sep, query = target.partition("?")
    rest = path.lstrip("/")[2:]  # after "me", whatever its case
    return f"/users/{urllib.parse.quote(address)}{rest}{sep}{query}"


def user_resource(server: SimulatorServer, key: str) -> GraphResponse:
    """`GET /me` or `/users/{address or id}`: the test user, or a mailbox's user."""
    user = server.identity.users.get(key.lower()) or next(
        (u for u in server.identity.users.values() if u.oid == key.lower()), None
    )
    if user is not None:
        return GraphResponse(200, user.resource())
    mailbox = mailbox_by_user(server.mailboxes, key)
    if mailbox is None:
        return graph_error(404, "Request_ResourceNotFound", f"Resource '{key}' does not exist.")
    address = mailbox.address
    resource = {"id": user_id(address), "mail": address, "userPrincipalName": address}
    return GraphResponse(200, {**resource, "displayName": address.partition("@")[0]})


def handle(
    server: SimulatorServer, request: GraphRequest, *, in_batch: bool = False
) -> GraphResponse:
    """Authenticate, hold one of the mailbox's concurrency slots, route. Inside a `$batch` the
    batch already holds the slot (and has waited the response delay) for all its requests."""
    if not authenticated(server, request.authorization):
        return unauthenticated()
    if request.parts[0].lower() == "subscriptions":
        return subscription_route(server, request)
    delegated = delegated_request(server, request)
    if isinstance(delegated, GraphResponse):
        return delegated
    request, parts = delegated, delegated.parts
    if request.method == "GET" and len(parts) == 2 and parts[0] == "users":
        return user_resource(server, parts[1])
    if request.method != "GET" and (in_batch or request.method not in WRITE_METHODS):
        return graph_error(405, "MethodNotAllowed", "Not a method the simulator answers here.")
    if len(parts) < 3 or parts[0] != "users":
        return unsupported()
    mailbox = mailbox_of(server, parts)
    if mailbox is None:
        return graph_error(404, "ErrorInvalidUser", f"The requested user '{parts[1]}' is invalid.")
    if in_batch:
        return _routed(server, mailbox, request)
    if not server.enter_mailbox(mailbox.address):
        return throttled_concurrency()
    try:
        if server.response_delay:
            time.sleep(server.response_delay)
        return _routed(server, mailbox, request)
    finally:
        server.leave_mailbox(mailbox.address)


def _routed(server: SimulatorServer, mailbox: Mailbox, request: GraphRequest) -> GraphResponse:
    """Graph's errors for what the mailbox does not know."""
    try:
        with mailbox.lock:  # a consistent view; the body is serialized after, outside the lock
            response = MailRoutes(server, mailbox, request).dispatch()
    except KeyError:
        return not_found()
    except SyncStateExpired:
        return graph_error(410, "syncStateNotFound", "The sync state generation is not found.")
    if request.prefer.immutable_ids and response.status < 300:
        response.headers["Preference-Applied"] = IMMUTABLE_ID_PREFERENCE
    return response


class MailRoutes:
    """The routes below `/users/{address}/` for one request."""

    def __init__(self, server: SimulatorServer, mailbox: Mailbox, request: GraphRequest) -> None:
        self.server = server
        self.mailbox = mailbox
        self.request = request
        self.query = request.query
        self.immutable_ids = request.prefer.immutable_ids
        self.base = f"{server.base_url}/v1.0/users/{mailbox.address}"

    def dispatch(self) -> GraphResponse:
        if self.request.method != "GET":
            from graphsim.writes import dispatch_write  # writes builds on this module

            return dispatch_write(self) or unsupported()
        rest = self.request.parts[2:]
        match rest:
            case ["mailFolders"]:
                root = next(f for f in self.mailbox.folders.values() if f.parent_id is None)
                return GraphResponse(200, {"value": _folders(self.mailbox, root.id)})
            case ["mailFolders", "delta"]:
                return GraphResponse(200, self._folder_delta())
            case ["mailFolders", folder]:
                return GraphResponse(200, self._folder(folder))
            case ["mailFolders", folder, "childFolders"]:
                parent = self.mailbox.folder(folder).id
                return GraphResponse(200, {"value": _folders(self.mailbox, parent)})
            case ["mailFolders", folder, "messages", "delta"]:
                return GraphResponse(200, self._delta(self.mailbox.folder(folder).id))
            case ["mailFolders", folder, "messages", message]:
                return self._message(message, folder=folder)
            case ["messages", message]:
                return self._message(message)
            case ["messages", message, "attachments"]:
                return self._attachments(message)
            case ["messages", message, "attachments", attachment]:
                return self._attachment(message, attachment)
            case ["messages", message, "attachments", attachment, "$value"]:
                return self._attachment_bytes(message, attachment)
        return unsupported()

    def _select(self) -> list[str] | None:
        selected = self.query.get("$select")
        return [n.strip() for n in selected.split(",") if n.strip()] if selected else None

    def _folder(self, key: str) -> dict[str, Any]:
        folder = self.mailbox.folder(key)
        resource = _folder_resource(self.mailbox, folder)
        return _selected(resource, self._select())

    def _message(self, public_id: str, *, folder: str | None = None) -> GraphResponse:
        """A single message; in a folder's path it must be in that folder."""
        message_id = self.mailbox.resolve_message_id(public_id)
        if (
            folder is not None
            and self.mailbox.location[message_id] != self.mailbox.folder(folder).id
        ):
            raise KeyError(public_id)
        body = message_resource(
            self.mailbox.messages[message_id],
            public_id=self.mailbox.public_id(message_id, immutable_ids=self.immutable_ids),
            select=self._select(),
        )
        return GraphResponse(200, body)

    def _attachments(self, public_id: str) -> GraphResponse:
        """Metadata only; the bytes come from `$value`."""
        message_id = self.mailbox.resolve_message_id(public_id)
        found = self.mailbox.attachments.get(message_id, [])
        metadata = [{k: v for k, v in a.items() if k != "contentBytes"} for a in found]
        return GraphResponse(200, {"value": [_selected(a, self._select()) for a in metadata]})

    def _attachment(self, public_id: str, attachment_id: str) -> GraphResponse:
        """One attachment with its `contentBytes`, as Graph returns it."""
        message_id = self.mailbox.resolve_message_id(public_id)
        found = self.mailbox.attachments.get(message_id, [])
        match = next((a for a in found if a["id"] == attachment_id), None)
        if match is None:
            raise KeyError(attachment_id)
        return GraphResponse(200, _selected(dict(match), self._select()))

    def _attachment_bytes(self, public_id: str, attachment_id: str) -> GraphResponse:
        message_id = self.mailbox.resolve_message_id(public_id)
        found = self.mailbox.attachments.get(message_id, [])
        match = next((a for a in found if a["id"] == attachment_id), None)
        if match is None:
            raise KeyError(attachment_id)
        content = base64.b64decode(match["contentBytes"])
        return GraphResponse(200, content, {"Content-Type": match["contentType"]})

    def _folder_delta(self) -> dict[str, Any]:
        """Folder changes in one page (mailboxes have tens of folders, not thousands)."""
        query = self.query
        since = decode_token(query["$deltatoken"])["seq"] if "$deltatoken" in query else 0
        until = self.mailbox.current_seq()
        token = encode_token(seq=until)
        return {
            "value": self.mailbox.folder_delta(since=since, until=until),
            "@odata.deltaLink": f"{self.base}/mailFolders/delta?%24deltatoken={token}",
        }

    def _round_state(self) -> dict[str, Any]:
        if "$skiptoken" in self.query:
            return decode_token(self.query["$skiptoken"])
        since = decode_token(self.query["$deltatoken"])["seq"] if "$deltatoken" in self.query else 0
        return {"since": since, "until": self.mailbox.current_seq(), "offset": 0}

    def _delta(self, folder_id: str) -> dict[str, Any]:
        """One page of a message delta round; the links carry the round's state."""
        state = self._round_state()
        size = self.request.prefer.page_size or DEFAULT_PAGE_SIZE
        link = f"{self.base}/mailFolders/{folder_id}/messages/delta"
        select = self.query.get("$select")
        suffix = f"&%24select={urllib.parse.quote(select)}" if select else ""
        if self.server.empty_pages and not state.get("empty_served"):
            # Graph sends empty pages mid-round; they must not end it.
            token = encode_token(**{**state, "empty_served": True})
            return {"value": [], "@odata.nextLink": f"{link}?%24skiptoken={token}{suffix}"}
        # Graph may repeat an item within a round: here, the previous page's last one.
        repeat = 1 if self.server.repeat_items and state["offset"] > 0 else 0
        items, more = self.mailbox.delta_page(
            folder_id, since=state["since"], until=state["until"],
            offset=state["offset"] - repeat, page_size=size + repeat,
            immutable_ids=self.immutable_ids, select=self._select(),
        )  # fmt: skip
        body: dict[str, Any] = {"value": items}
        if more:
            token = encode_token(
                **{**state, "offset": state["offset"] + size, "empty_served": False}
            )
            body["@odata.nextLink"] = f"{link}?%24skiptoken={token}{suffix}"
        else:
            token = encode_token(seq=state["until"])
            body["@odata.deltaLink"] = f"{link}?%24deltatoken={token}{suffix}"
        return body


def subscription_route(server: SimulatorServer, request: GraphRequest) -> GraphResponse:
    """`/subscriptions`: create (with the validation handshake), list, get, renew, delete,
    reauthorize. Not held to a mailbox's concurrency slots: Graph counts these apart."""
    try:
        return _subscription_action(server, request)
    except SubscriptionError as exc:
        return graph_error(exc.status, exc.code, exc.message)


def _subscription_action(server: SimulatorServer, request: GraphRequest) -> GraphResponse:
    store = server.subscriptions
    context = f"{server.base_url}/v1.0/$metadata#subscriptions"
    match request.method, request.parts[1:]:
        case "POST", []:
            created = create_subscription(
                server, _json_body(request), server.identity.caller(request.authorization),
                immutable_ids=request.prefer.immutable_ids,
            )  # fmt: skip
            return _entity(201, context, created)
        case "GET", []:
            return GraphResponse(
                200, {"@odata.context": context, "value": [s.resource_json() for s in store.all()]}
            )
        case "GET", [subscription_id]:
            return _entity(200, context, store.get(subscription_id))
        case "PATCH", [subscription_id]:
            renewed = renew_subscription(server, subscription_id, _json_body(request))
            return _entity(200, context, renewed)
        case "DELETE", [subscription_id]:
            store.remove(subscription_id)
            return GraphResponse(204, b"")
        case "POST", [subscription_id, "reauthorize"]:
            store.reauthorize(subscription_id)
            return GraphResponse(204, b"")
    return graph_error(405, "MethodNotAllowed", "Not a subscription operation Graph supports.")


def _entity(status: int, context: str, subscription: Subscription) -> GraphResponse:
    return GraphResponse(
        status, {"@odata.context": f"{context}/$entity", **subscription.resource_json()}
    )


def _json_body(request: GraphRequest) -> Any:
    try:
        return json.loads(request.body or b"null")
    except ValueError:
        raise SubscriptionError(400, "BadRequest", "The request body is not valid JSON.") from None


def _folders(mailbox: Mailbox, parent_id: str) -> list[dict[str, Any]]:
    children = [f for f in mailbox.folders.values() if f.parent_id == parent_id]
    return [_folder_resource(mailbox, f) for f in children]


def _folder_resource(mailbox: Mailbox, folder: Folder) -> dict[str, Any]:
    return {
        "id": folder.id,
        "displayName": folder.display_name,
        "parentFolderId": folder.parent_id,
        "childFolderCount": sum(1 for c in mailbox.folders.values() if c.parent_id == folder.id),
        "wellKnownName": folder.well_known,
    }


def _selected(resource: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """`$select` on a resource: the named properties, and always the id (and OData type)."""
    if not select:
        return resource
    keep = {"id", "@odata.type", *select}
    return {k: v for k, v in resource.items() if k in keep}
