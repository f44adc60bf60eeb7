"""Graph change-notification subscriptions: the store, the validation handshake, the notifier.

A subscription watches one mail folder (or a whole mailbox) for created, updated and deleted
messages. Creating one costs a validation handshake against its endpoints, as Graph does, so a
receiver that does not echo the token exactly is caught when it subscribes, not later.

Changes reach the notifier through the mailbox's change listener, which runs under the mailbox
lock and therefore only queues plain events. The notifier thread turns them into batches and
POSTs them with retries, outside any mailbox lock, so a slow or failing receiver never stalls
the mail routes. Notification URLs are verified against a configurable CA (the test PKI's in
tests) and redirects are never followed: both are what makes the real thing refuse a receiver.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import http.client
import json
import logging
import queue
import random
import re
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from graphsim.mail import Change, Mailbox, regular_id

if TYPE_CHECKING:
    from graphsim.server import SimulatorServer

logger = logging.getLogger(__name__)

# The longest lifetime Graph allows for Outlook resources (its error message says 10070).
MAX_LIFETIME = datetime.timedelta(minutes=10080)
MAX_CLIENT_STATE_LENGTH = 128
CHANGE_TYPES = ("created", "updated", "deleted")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
TLS_VERSIONS = ("v1_0", "v1_1", "v1_2", "v1_3")
DEFAULT_TLS_VERSION = "v1_2"
DEFAULT_TENANT = "graphsim"
VALIDATION_PREFIX = (
    "Validation: Testing client application reachability for subscription Request-Id: "
)
MAX_VALIDATION_ANSWER = 64 * 1024
VALIDATION_FAILED = "Subscription validation request failed."
NOTIFICATION_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
RETRYABLE_ON_KEPT_CONNECTION = (
    ConnectionResetError,
    BrokenPipeError,
    http.client.CannotSendRequest,
)

_RESOURCE = re.compile(
    r"^/?users/(?P<user>[^/()']+)"
    r"(?:/mailfolders(?:\('(?P<quoted>[^']+)'\)|/(?P<plain>[^/()']+)))?"
    r"/messages$",
    re.IGNORECASE,
)


class SubscriptionError(Exception):
    """A request Graph refuses: routes answer it with Graph's error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(subscription_id: str) -> SubscriptionError:
    return SubscriptionError(
        404, "ResourceNotFound", f"The object was not found. Subscription '{subscription_id}'."
    )


# Identities: Graph names users, tenants and apps by GUIDs; stable ones per name here.


def _guid(kind: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"graphsim:{kind}:{name.lower()}"))


def user_id(address: str) -> str:
    """The user's object id, which notifications use in `resource` instead of the address."""
    return _guid("user", address)


def tenant_id(tenant: str) -> str:
    return _guid("tenant", tenant)


def mailbox_by_user(mailboxes: Mapping[str, Mailbox], key: str) -> Mailbox | None:
    """By address or by user id, as Graph accepts either in `users/{...}`."""
    found = mailboxes.get(key.lower())
    if found is not None or "@" in key:
        return found
    return next((m for m in mailboxes.values() if user_id(m.address) == key.lower()), None)


@dataclass(frozen=True)
class Caller:
    """The app and tenant behind the access token; Graph records them on the subscription."""

    tenant: str = DEFAULT_TENANT
    client_id: str = ""

    @property
    def application_id(self) -> str:
        return self.client_id or _guid("app", "graphsim")

    @property
    def creator_id(self) -> str:
        """With application permissions, the app's service principal."""
        return _guid("service-principal", self.application_id)


# Times


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def format_time(moment: datetime.datetime) -> str:
    """Graph's seven fractional digits and a `Z`."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def parse_expiration(value: Any, *, now: datetime.datetime) -> datetime.datetime:
    """ISO 8601, UTC if no offset; in the future and within Graph's lifetime for Outlook."""
    if not isinstance(value, str):
        raise SubscriptionError(400, "InvalidRequest", "expirationDateTime is required.")
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise SubscriptionError(
            400, "InvalidRequest", f"expirationDateTime '{value}' is not a valid date and time."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    if moment <= now:
        raise SubscriptionError(
            400, "InvalidRequest", "Subscription expiration must be in the future."
        )
    if moment > now + MAX_LIFETIME:
        raise SubscriptionError(
            400,
            "ExtensionError",
            "Subscription expiration can only be 10070 minutes in the future.",
        )
    return moment


# The subscription and its store


@dataclass
class Subscription:
    """One subscription; `folder_id` None watches every folder of the mailbox. With
    `immutable_ids` (created with `Prefer: IdType="ImmutableId"`) notifications carry immutable
    message ids, else regular ones, which change when a message moves."""

    id: str
    resource: str
    address: str
    folder_id: str | None
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_url: str | None
    expiration: datetime.datetime
    client_state: str | None
    caller: Caller
    tls_version: str = DEFAULT_TLS_VERSION
    immutable_ids: bool = False
    reauthorization_required: bool = False

    def watches(self, folder_id: str, change_type: str) -> bool:
        return change_type in self.change_types and self.folder_id in (None, folder_id)

    def resource_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.caller.application_id,
            "changeType": ",".join(self.change_types),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": format_time(self.expiration),
            "creatorId": self.caller.creator_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": self.tls_version,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }


class SubscriptionStore:
    """Thread-safe; expired subscriptions are dropped whenever they would be seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, Subscription] = {}
        self._per_mailbox: dict[str, int] = {}

    def watches(self, address: str) -> bool:
        """Whether any subscription may care about the mailbox. Lock-free: the mailbox's change
        listener asks on every change, under the mailbox lock, and must stay cheap."""
        return bool(self._per_mailbox.get(address.lower()))

    def add(self, subscription: Subscription) -> None:
        with self._lock:
            self._items[subscription.id] = subscription
            key = subscription.address.lower()
            self._per_mailbox[key] = self._per_mailbox.get(key, 0) + 1

    def get(self, subscription_id: str) -> Subscription:
        with self._lock:
            self._drop_expired(utcnow())
            found = self._items.get(subscription_id)
        if found is None:
            raise not_found(subscription_id)
        return found

    def all(self) -> list[Subscription]:
        with self._lock:
            self._drop_expired(utcnow())
            return list(self._items.values())

    def remove(self, subscription_id: str) -> Subscription:
        with self._lock:
            self._drop_expired(utcnow())
            if subscription_id not in self._items:
                raise not_found(subscription_id)
            return self._forget(subscription_id)

    def renew(self, subscription_id: str, expiration: datetime.datetime) -> Subscription:
        """Renewing also reauthorizes, as in Graph."""
        with self._lock:
            subscription = self._live(subscription_id)
            subscription.expiration = expiration
            subscription.reauthorization_required = False
            return subscription

    def reauthorize(self, subscription_id: str) -> Subscription:
        with self._lock:
            subscription = self._live(subscription_id)
            subscription.reauthorization_required = False
            return subscription

    def require_reauthorization(self, subscription_id: str) -> Subscription:
        with self._lock:
            subscription = self._live(subscription_id)
            subscription.reauthorization_required = True
            return subscription

    def expire(self, subscription_id: str) -> None:
        """As if its lifetime had run out (for tests of renewal and recreation)."""
        with self._lock:
            self._live(subscription_id).expiration = utcnow() - datetime.timedelta(seconds=1)

    def matching(self, address: str, folder_id: str, change_type: str) -> list[Subscription]:
        with self._lock:
            self._drop_expired(utcnow())
            return [
                s
                for s in self._items.values()
                if s.address.lower() == address.lower() and s.watches(folder_id, change_type)
            ]

    def _live(self, subscription_id: str) -> Subscription:
        self._drop_expired(utcnow())
        found = self._items.get(subscription_id)
        if found is None:
            raise not_found(subscription_id)
        return found

    def _drop_expired(self, now: datetime.datetime) -> None:
        for expired in [i for i, s in self._items.items() if s.expiration <= now]:
            self._forget(expired)

    def _forget(self, subscription_id: str) -> Subscription:
        subscription = self._items.pop(subscription_id)
        self._per_mailbox[subscription.address.lower()] -= 1
        return subscription


# Creating a subscription


@dataclass(frozen=True)
class SubscriptionRequest:
    """A create request's body, checked as Graph checks it before the handshake."""

    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_url: str | None
    resource: str
    user: str
    folder: str | None
    expiration: datetime.datetime
    client_state: str | None
    tls_version: str


def parse_change_types(value: Any) -> tuple[str, ...]:
    if not isinstance(value, str) or not value.strip():
        raise SubscriptionError(400, "InvalidRequest", "changeType is required.")
    requested = [part.strip() for part in value.split(",")]
    unknown = [part for part in requested if part not in CHANGE_TYPES]
    if unknown:
        raise SubscriptionError(
            400, "InvalidRequest", f"Invalid changeType '{unknown[0]}' for this resource."
        )
    return tuple(t for t in CHANGE_TYPES if t in requested)


def check_endpoint_url(value: Any, name: str, *, allow_http: bool) -> str:
    """Graph only calls https endpoints; `allow_http` is the simulator's switch for tests."""
    if not isinstance(value, str) or not value:
        raise SubscriptionError(400, "InvalidRequest", f"{name} is required.")
    split = urllib.parse.urlsplit(value)
    schemes = ("https", "http") if allow_http else ("https",)
    if split.scheme.lower() not in schemes or not split.hostname:
        raise SubscriptionError(
            400, "InvalidRequest", f"Invalid {name} '{value}': must be an https URL."
        )
    return value


def parse_resource(value: Any) -> tuple[str, str | None]:
    """(user, folder or None) of `users/{user}/mailFolders('{folder}')/messages`, also with
    `/mailFolders/{folder}`, a leading slash, or the whole mailbox's `users/{user}/messages`."""
    match = _RESOURCE.match(value) if isinstance(value, str) else None
    if match is None:
        raise SubscriptionError(
            400, "InvalidRequest", f"Resource '{value}' is not supported for subscriptions."
        )
    user = urllib.parse.unquote(match["user"])
    folder = match["quoted"] or match["plain"]
    return user, urllib.parse.unquote(folder) if folder else None


def parse_create(body: Any, *, now: datetime.datetime, allow_http: bool) -> SubscriptionRequest:
    if not isinstance(body, dict):
        raise SubscriptionError(400, "BadRequest", "The request body must be a JSON object.")
    if body.get("includeResourceData"):
        raise SubscriptionError(
            400, "InvalidRequest", "Rich notifications are not simulated (includeResourceData)."
        )
    client_state = body.get("clientState")
    if client_state is not None and (
        not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE_LENGTH
    ):
        raise SubscriptionError(
            400, "InvalidRequest",
            f"clientState must be a string of at most {MAX_CLIENT_STATE_LENGTH} characters.",
        )  # fmt: skip
    tls_version = body.get("latestSupportedTlsVersion") or DEFAULT_TLS_VERSION
    if tls_version not in TLS_VERSIONS:
        raise SubscriptionError(
            400, "InvalidRequest", f"Invalid latestSupportedTlsVersion '{tls_version}'."
        )
    lifecycle = body.get("lifecycleNotificationUrl")
    user, folder = parse_resource(body.get("resource"))
    return SubscriptionRequest(
        change_types=parse_change_types(body.get("changeType")),
        notification_url=check_endpoint_url(
            body.get("notificationUrl"), "notificationUrl", allow_http=allow_http
        ),
        lifecycle_url=None if lifecycle is None else check_endpoint_url(
            lifecycle, "lifecycleNotificationUrl", allow_http=allow_http
        ),
        resource=body["resource"],
        user=user,
        folder=folder,
        expiration=parse_expiration(body.get("expirationDateTime"), now=now),
        client_state=client_state,
        tls_version=tls_version,
    )  # fmt: skip


def create_subscription(
    server: SimulatorServer, body: Any, caller: Caller, *, immutable_ids: bool = False
) -> Subscription:
    """Check the request, find the folder, run the handshake on both endpoints, then store."""
    request = parse_create(body, now=utcnow(), allow_http=server.allow_http_notification_urls)
    mailbox = mailbox_by_user(server.mailboxes, request.user)
    if mailbox is None:
        raise SubscriptionError(
            404, "ResourceNotFound", f"The requested user '{request.user}' is invalid."
        )
    try:
        folder_id = mailbox.folder(request.folder).id if request.folder else None
    except KeyError:
        raise SubscriptionError(
            404, "ResourceNotFound", f"The mail folder '{request.folder}' was not found."
        ) from None
    for url in filter(None, (request.notification_url, request.lifecycle_url)):
        problem = validate_endpoint(
            url, ca_file=server.notification_ca_file, tls_version=request.tls_version,
            timeout=server.validation_timeout,
        )  # fmt: skip
        if problem:
            raise SubscriptionError(400, "ValidationError", problem)
    subscription = Subscription(
        id=str(uuid.uuid4()), resource=request.resource, address=mailbox.address,
        folder_id=folder_id, change_types=request.change_types,
        notification_url=request.notification_url, lifecycle_url=request.lifecycle_url,
        expiration=request.expiration, client_state=request.client_state, caller=caller,
        tls_version=request.tls_version, immutable_ids=immutable_ids,
    )  # fmt: skip
    server.subscriptions.add(subscription)
    return subscription


def renew_subscription(server: SimulatorServer, subscription_id: str, body: Any) -> Subscription:
    """PATCH: only `expirationDateTime` may change, within the same limits as at creation."""
    server.subscriptions.get(subscription_id)  # 404 first, as Graph answers for unknown ids
    if not isinstance(body, dict) or set(body) - {"expirationDateTime"}:
        raise SubscriptionError(
            400, "InvalidRequest", "Only expirationDateTime can be updated on a subscription."
        )
    expiration = parse_expiration(body.get("expirationDateTime"), now=utcnow())
    return server.subscriptions.renew(subscription_id, expiration)


# HTTP to the receiver


@functools.lru_cache(maxsize=16)
def client_context(ca_file: str | None, tls_version: str) -> ssl.SSLContext:
    """Certificates verified against `ca_file` (None: the system's CAs), host names checked,
    and no TLS newer than the subscription says its endpoint supports."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls_version != "v1_3":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def open_connection(
    url: urllib.parse.SplitResult, *, ca_file: str | None, tls_version: str, timeout: float
) -> http.client.HTTPConnection:
    """http.client follows no redirects, which is what Graph requires of a receiver."""
    if url.scheme.lower() == "https":
        context = client_context(ca_file, tls_version)
        return http.client.HTTPSConnection(url.hostname, url.port, timeout=timeout, context=context)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    will_close: bool


def post(
    connection: http.client.HTTPConnection,
    url: urllib.parse.SplitResult,
    body: bytes,
    headers: Mapping[str, str],
    *,
    limit: int | None = None,
) -> Answer:
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    connection.request("POST", target, body=body, headers=dict(headers))
    response = connection.getresponse()
    data = response.read(limit) if limit is not None else response.read()
    return Answer(
        status=response.status,
        content_type=response.getheader("Content-Type", ""),
        body=data,
        will_close=response.will_close or limit is not None,
    )


def with_query(url: str, name: str, value: str) -> str:
    split = urllib.parse.urlsplit(url)
    extra = urllib.parse.urlencode({name: value}, quote_via=urllib.parse.quote)
    query = f"{split.query}&{extra}" if split.query else extra
    return urllib.parse.urlunsplit(split._replace(query=query, fragment=""))


def validate_endpoint(
    url: str, *, ca_file: str | None, tls_version: str = DEFAULT_TLS_VERSION, timeout: float = 10
) -> str | None:
    """Graph's handshake: POST `?validationToken=...` with an empty text/plain body; the
    endpoint must answer 200, text/plain, exactly the token, within `timeout` seconds.
    Returns None if it did, else Graph's reason."""
    token = VALIDATION_PREFIX + str(uuid.uuid4())
    target = urllib.parse.urlsplit(with_query(url, "validationToken", token))
    started = time.monotonic()
    connection = open_connection(target, ca_file=ca_file, tls_version=tls_version, timeout=timeout)
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    try:
        answer = post(connection, target, b"", headers, limit=MAX_VALIDATION_ANSWER)
    except (OSError, http.client.HTTPException) as exc:
        return f"{VALIDATION_FAILED} The notification endpoint could not be reached: {exc!r}"
    finally:
        connection.close()
    if time.monotonic() - started > timeout:
        return f"{VALIDATION_FAILED} The notification endpoint did not answer within {timeout} s."
    if answer.status != 200:
        return (
            f"{VALIDATION_FAILED} Notification endpoint must respond with 200 OK to validation "
            f"request (got {answer.status})."
        )
    if answer.content_type.split(";")[0].strip().lower() != "text/plain":
        return f"{VALIDATION_FAILED} The response must have Content-Type text/plain."
    if answer.body != token.encode():
        return f"{VALIDATION_FAILED} Response must exactly match validationToken query parameter."
    return None


class Connections:
    """Kept-alive connections to receivers, per origin and TLS settings; used by one thread
    at a time (the notifier lends them to its delivering threads)."""

    def __init__(self) -> None:
        self._open: dict[tuple[Any, ...], http.client.HTTPConnection] = {}

    def post(
        self, url: str, body: bytes, *, ca_file: str | None, tls_version: str, timeout: float
    ) -> int:
        """The status; raises OSError or HTTPException if no answer came."""
        split = urllib.parse.urlsplit(url)
        key = (split.scheme.lower(), split.hostname, split.port, ca_file, tls_version)
        kept = self._open.pop(key, None)
        if kept is not None:
            if kept.sock is not None:
                kept.sock.settimeout(timeout)
            try:
                return self._exchange(key, kept, split, body)
            except RETRYABLE_ON_KEPT_CONNECTION:
                pass  # the receiver closed the idle connection: once more on a new one
        fresh = open_connection(split, ca_file=ca_file, tls_version=tls_version, timeout=timeout)
        return self._exchange(key, fresh, split, body)

    def _exchange(
        self,
        key: tuple[Any, ...],
        connection: http.client.HTTPConnection,
        url: urllib.parse.SplitResult,
        body: bytes,
    ) -> int:
        try:
            answer = post(connection, url, body, NOTIFICATION_HEADERS)
        except BaseException:
            connection.close()
            raise
        if answer.will_close:
            connection.close()
        else:
            self._open[key] = connection
        return answer.status

    def close(self) -> None:
        for connection in self._open.values():
            connection.close()
        self._open.clear()


# What the notifier sends


@dataclass(frozen=True, slots=True)
class MailChange:
    """A mailbox change as the notifier sees it: plain values, no reference to the mailbox."""

    address: str
    folder_id: str
    message_id: str
    moves: int
    seq: int
    change_type: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST to make: a batch of change notifications or of lifecycle events."""

    url: str
    items: tuple[dict[str, Any], ...]
    tls_version: str
    lifecycle: bool = False


Work = MailChange | Delivery


def change_type_of(change: Change) -> str:
    """A message moved in is `created` and moved out `deleted`: the log records a move as a
    removal from one folder and an insert into the other."""
    if change.removed:
        return "deleted"
    return "updated" if change.properties else "created"


def _etag(message_id: str, seq: int) -> str:
    digest = hashlib.blake2b(f"{message_id}:{seq}".encode(), digest_size=15).digest()
    return 'W/"CQAAABYAAAD' + base64.b64encode(digest).decode() + '"'


def notification_item(
    subscription: Subscription,
    *,
    message_id: str,
    moves: int,
    change_type: str,
    seq: int,
) -> dict[str, Any]:
    """One entry of a notification's `value`, as Graph sends it for an Outlook message."""
    public_id = message_id if subscription.immutable_ids else regular_id(message_id, moves)
    resource = f"Users/{user_id(subscription.address)}/Messages/{public_id}"
    resource_data = {
        "@odata.type": "#Microsoft.Graph.Message",
        "@odata.id": resource,
        **({} if change_type == "deleted" else {"@odata.etag": _etag(message_id, seq)}),
        "id": public_id,
    }
    return {
        "subscriptionId": subscription.id,
        "subscriptionExpirationDateTime": format_time(subscription.expiration),
        "changeType": change_type,
        "resource": resource,
        "resourceData": resource_data,
        "clientState": subscription.client_state,
        "tenantId": tenant_id(subscription.caller.tenant),
    }


def lifecycle_item(subscription: Subscription, event: str) -> dict[str, Any]:
    return {
        "subscriptionId": subscription.id,
        "subscriptionExpirationDateTime": format_time(subscription.expiration),
        "tenantId": tenant_id(subscription.caller.tenant),
        "clientState": subscription.client_state,
        "lifecycleEvent": event,
    }


def batched(
    url: str, items: Sequence[dict[str, Any]], *, tls_version: str, size: int
) -> list[Delivery]:
    size = max(1, size)
    return [
        Delivery(url=url, items=tuple(items[i : i + size]), tls_version=tls_version)
        for i in range(0, len(items), size)
    ]


class Notifier:
    """Queues mailbox changes, bursts and lifecycle events; one background thread plans the
    POSTs (matching subscriptions, batching) and delivers them, on a few threads if the
    server's `notification_concurrency` says so. Reads the server's switches on every batch,
    so tests may change them at any time."""

    def __init__(self, server: SimulatorServer) -> None:
        self._server = server
        self._condition = threading.Condition()
        self._queue: list[Work] = []
        self._pending = 0
        self._paused = False
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._connections: queue.SimpleQueue[Connections] = queue.SimpleQueue()
        self._counter_lock = threading.Lock()
        self._rng = random.Random(0)  # noqa: S311 - shuffled test traffic, not secrets

    # Feeding it

    def mail_changed(self, address: str, folder_id: str, change: Change) -> None:
        """The mailboxes' change listener. Runs under the mailbox lock, so it only queues."""
        if not self._server.subscriptions.watches(address):
            return
        self.enqueue(
            [
                MailChange(
                    address=address, folder_id=folder_id, message_id=change.message_id,
                    moves=change.moves, seq=change.seq, change_type=change_type_of(change),
                )
            ]
        )  # fmt: skip

    def enqueue(self, work: Iterable[Work]) -> None:
        work = list(work)
        with self._condition:
            if self._stopped.is_set() or not work:
                return
            self._queue.extend(work)
            self._pending += len(work)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="graphsim-notifier", daemon=True
                )
                self._thread.start()
            self._condition.notify_all()

    # Control for tests

    def pause(self) -> None:
        """Queue, but send nothing until `resume` (a POST under way still completes)."""
        with self._condition:
            self._paused = True

    def resume(self) -> None:
        with self._condition:
            self._paused = False
            self._condition.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once everything queued has been delivered or given up on; False on timeout
        (always, while paused with work queued)."""
        with self._condition:
            return self._condition.wait_for(lambda: self._pending == 0, timeout)

    def stop(self) -> None:
        self._stopped.set()
        with self._condition:
            self._condition.notify_all()
        while True:
            try:
                self._connections.get_nowait().close()
            except queue.Empty:
                return

    # The thread

    def _run(self) -> None:
        while (work := self._take()) is not None:
            try:
                self._deliver_all(self._plan(work))
            except Exception:
                logger.exception("graphsim notifier: a batch of work failed")
            finally:
                with self._condition:
                    self._pending -= len(work)
                    self._condition.notify_all()

    def _take(self) -> list[Work] | None:
        with self._condition:
            while not self._stopped.is_set() and (self._paused or not self._queue):
                self._condition.wait()
            if self._stopped.is_set():
                return None
            work, self._queue = self._queue, []
            return work

    def _plan(self, work: list[Work]) -> list[Delivery]:
        """Ready deliveries first, then the changes' notifications grouped per endpoint (one
        POST may carry several subscriptions' notifications, as with Graph) and batched."""
        server = self._server
        ready: list[Delivery] = []
        grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for unit in work:
            if isinstance(unit, Delivery):
                ready.append(unit)
                continue
            for subscription in server.subscriptions.matching(
                unit.address, unit.folder_id, unit.change_type
            ):
                item = notification_item(
                    subscription, message_id=unit.message_id, moves=unit.moves,
                    change_type=unit.change_type, seq=unit.seq,
                )  # fmt: skip
                key = (subscription.notification_url, subscription.tls_version)
                grouped.setdefault(key, []).append(item)
        for (url, tls_version), items in grouped.items():
            ready += batched(url, items, tls_version=tls_version,
                             size=server.notification_batch_size)  # fmt: skip
        return self._arranged(ready)

    def _arranged(self, deliveries: list[Delivery]) -> list[Delivery]:
        """The duplicate and shuffle switches: at-least-once delivery in any order."""
        if self._server.duplicate_notifications:
            deliveries = [copy for d in deliveries for copy in ((d,) if d.lifecycle else (d, d))]
        if self._server.shuffle_notifications:
            deliveries = [replace(d, items=self._shuffled(d.items)) for d in deliveries]
            self._rng.shuffle(deliveries)
        return deliveries

    def _shuffled(self, items: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        mixed = list(items)
        self._rng.shuffle(mixed)
        return tuple(mixed)

    def _deliver_all(self, deliveries: list[Delivery]) -> None:
        workers = max(1, self._server.notification_concurrency)
        if workers == 1 or len(deliveries) < 2:
            for delivery in deliveries:
                self._deliver(delivery)
            return
        with ThreadPoolExecutor(workers, thread_name_prefix="graphsim-notify") as pool:
            list(pool.map(self._deliver, deliveries))

    def _deliver(self, delivery: Delivery) -> None:
        """POST with retries after the server's backoff delays; then give up and count."""
        body = json.dumps({"value": list(delivery.items)}).encode()
        for delay in (0.0, *self._server.notification_retry_delays):
            if delay and self._stopped.wait(delay):
                return
            if self._post(delivery, body):
                sent = "lifecycle_events_sent" if delivery.lifecycle else "notifications_sent"
                self._count(sent, len(delivery.items))
                return
        self._count("notifications_dropped", len(delivery.items))

    def _post(self, delivery: Delivery, body: bytes) -> bool:
        server = self._server
        try:
            connections = self._connections.get_nowait()
        except queue.Empty:
            connections = Connections()
        try:
            status = connections.post(
                delivery.url, body, ca_file=server.notification_ca_file,
                tls_version=delivery.tls_version, timeout=server.notification_timeout,
            )  # fmt: skip
        except (OSError, http.client.HTTPException):
            status = None
        finally:
            self._connections.put(connections)
        self._count("notification_posts", 1)
        if status is not None and 200 <= status < 300:
            return True
        self._count("notification_failures", 1)
        return False

    def _count(self, counter: str, amount: int) -> None:
        with self._counter_lock:
            setattr(self._server, counter, getattr(self._server, counter) + amount)


# Test helpers behind the server's methods


def burst_deliveries(
    server: SimulatorServer,
    subscription: Subscription,
    count: int,
    *,
    change_type: str | None = None,
    batch_size: int | None = None,
) -> list[Delivery]:
    """`count` notifications for the subscription's folder, naming its messages in turn (or
    made-up ids if it has none), batched as the server batches."""
    kind = change_type or ("created" if "created" in subscription.change_types
                           else subscription.change_types[0])  # fmt: skip
    mailbox = server.mailboxes[subscription.address.lower()]
    with mailbox.lock:
        messages = [
            (m, mailbox.moves.get(m, 0))
            for m, f in mailbox.location.items()
            if subscription.folder_id in (None, f)
        ]
    if not messages:
        messages = [(f"AAMkburst{n}", 0) for n in range(min(count, 100))]
    items = [
        notification_item(subscription, message_id=m, moves=moves, change_type=kind, seq=n)
        for n, (m, moves) in enumerate(messages[n % len(messages)] for n in range(count))
    ]
    return batched(
        subscription.notification_url, items, tls_version=subscription.tls_version,
        size=batch_size or server.notification_batch_size,
    )  # fmt: skip


def lifecycle_delivery(server: SimulatorServer, subscription_id: str, event: str) -> Delivery:
    """The event for the subscription's lifecycle URL, with the store updated as Graph would:
    `reauthorizationRequired` marks it, `subscriptionRemoved` deletes it."""
    if event not in LIFECYCLE_EVENTS:
        raise ValueError(f"unknown lifecycle event {event!r}; one of {LIFECYCLE_EVENTS}")
    subscription = server.subscriptions.get(subscription_id)
    if subscription.lifecycle_url is None:
        raise ValueError(f"subscription {subscription_id} has no lifecycleNotificationUrl")
    if event == "reauthorizationRequired":
        server.subscriptions.require_reauthorization(subscription_id)
    elif event == "subscriptionRemoved":
        server.subscriptions.remove(subscription_id)
    return Delivery(
        url=subscription.lifecycle_url,
        items=(lifecycle_item(subscription, event),),
        tls_version=subscription.tls_version,
        lifecycle=True,
    )
