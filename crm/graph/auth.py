"""App-only access tokens for Microsoft Graph through MSAL's confidential client.

The traps DESIGN.md lists are handled here, once:

- the authority host is a setting (national clouds, the simulator), so instance discovery is
  off when it is not Microsoft's;
- `requests` lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override MSAL's `verify=`, so MSAL gets
  its own session with `trust_env=False`;
- `verify=<file>` replaces the system CAs, so MS_CA_BUNDLE is appended to them in one bundle;
- one MSAL app per process and credentials (it caches tokens); `invalidate()` after a 401
  drops the cached token so the next call fetches a new one.

Agents' own mailboxes use delegated tokens instead (the authorization code flow); the mail app
keeps those and registers a resolver here, so `GraphClient(mailbox=...)` picks the right kind
of token for every mailbox without its callers knowing (`tokens_for`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import certifi
import msal
import requests
from django.conf import settings

from crm.errors import ServiceError

MICROSOFT_AUTHORITY_HOST = "https://login.microsoftonline.com"
SYSTEM_CA_FILE = Path("/etc/ssl/certs/ca-certificates.crt")


class GraphAuthError(ServiceError):
    """The identity platform refused (wrong secret, unknown app) or could not be reached."""

    code = "graph_auth_failed"


class Tokens(Protocol):
    """What GraphClient needs of a token source: app-only or delegated."""

    def token(self) -> str: ...

    def invalidate(self) -> None: ...


def microsoft_configured() -> bool:
    """Whether an app registration is configured (MS_TENANT_ID, MS_CLIENT_ID, MS_CLIENT_SECRET)."""
    return bool(settings.MS_TENANT_ID and settings.MS_CLIENT_ID and settings.MS_CLIENT_SECRET)


def graph_scope(permission: str = ".default") -> str:
    """`https://graph.microsoft.com/.default` (or a named permission such as `Mail.Send`) for
    the configured Graph host."""
    parts = urlsplit(settings.GRAPH_API_URL)
    return f"{parts.scheme}://{parts.netloc}/{permission}"


def delegated_scopes() -> list[str]:
    """The permissions an agent consents to for their own mailbox (MS_DELEGATED_SCOPES);
    MSAL adds openid, profile and offline_access (the refresh token) itself."""
    return [graph_scope(name) for name in settings.MS_DELEGATED_SCOPES]


def confidential_app(
    *,
    tenant: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    token_cache: msal.TokenCache | None = None,
) -> msal.ConfidentialClientApplication:
    """An MSAL app for an app registration (default: the MS_* settings), with the session and
    discovery settings above. MSAL reads the tenant's OpenID configuration right away."""
    tenant = tenant or settings.MS_TENANT_ID
    client_id = client_id or settings.MS_CLIENT_ID
    client_secret = client_secret or settings.MS_CLIENT_SECRET
    if not (tenant and client_id and client_secret):
        raise GraphAuthError("Microsoft 365 is not configured: set MS_TENANT_ID, MS_CLIENT_ID "
                             "and MS_CLIENT_SECRET.")  # fmt: skip
    session = requests.Session()
    session.trust_env = False
    session.verify = trusted_ca_bundle()
    authority_host = settings.MS_AUTHORITY_HOST.rstrip("/")
    try:
        return msal.ConfidentialClientApplication(
            client_id,
            client_credential=client_secret,
            authority=f"{authority_host}/{tenant}",
            http_client=session,
            instance_discovery=authority_host == MICROSOFT_AUTHORITY_HOST,
            timeout=settings.GRAPH_TIMEOUT_SECONDS,
            token_cache=token_cache,
        )
    except (requests.RequestException, ValueError) as exc:
        raise GraphAuthError(f"The identity platform could not be reached: {exc}") from exc


def trusted_ca_bundle() -> str | bool:
    """The system CAs plus MS_CA_BUNDLE in one file, or True (the defaults) without extras."""
    extra = settings.MS_CA_BUNDLE
    if not extra:
        return True
    system = SYSTEM_CA_FILE if SYSTEM_CA_FILE.exists() else Path(certifi.where())
    combined = system.read_bytes() + b"\n" + Path(extra).read_bytes()
    target = Path(settings.VAR_DIR) / f"ms-ca-{hashlib.sha256(combined).hexdigest()[:16]}.pem"
    if not target.exists():
        target.write_bytes(combined)
    return str(target)


class TokenProvider:
    """Fetches and caches app-only tokens for one tenant and app registration."""

    def __init__(self, *, tenant: str, client_id: str, client_secret: str) -> None:
        self._app = confidential_app(
            tenant=tenant, client_id=client_id, client_secret=client_secret
        )
        self._scopes = [graph_scope()]

    def token(self) -> str:
        try:
            result = self._app.acquire_token_for_client(scopes=self._scopes)
        except (requests.RequestException, ValueError) as exc:
            raise GraphAuthError(f"The identity platform could not be reached: {exc}") from exc
        if "access_token" not in result:
            description = result.get("error_description") or result.get("error") or "no token"
            raise GraphAuthError(f"Token request refused: {description}")
        return result["access_token"]

    def invalidate(self) -> None:
        """Forget the cached token (Graph answered 401): the next `token()` fetches anew."""
        self._app.remove_tokens_for_client()


_providers: dict[tuple[str, str, str, str], TokenProvider] = {}
_providers_lock = threading.Lock()


def token_provider(
    *, tenant: str | None = None, client_id: str | None = None, client_secret: str | None = None
) -> TokenProvider:
    """The process's provider for these credentials (default: the MS_* settings)."""
    tenant = tenant or settings.MS_TENANT_ID
    client_id = client_id or settings.MS_CLIENT_ID
    client_secret = client_secret or settings.MS_CLIENT_SECRET
    key = (settings.MS_AUTHORITY_HOST, tenant, client_id, client_secret)
    with _providers_lock:
        if key not in _providers:
            _providers[key] = TokenProvider(
                tenant=tenant, client_id=client_id, client_secret=client_secret
            )
        return _providers[key]


def forget_providers() -> None:
    """Drop every cached provider (after credentials or endpoints change, and in tests)."""
    with _providers_lock:
        _providers.clear()


# --- which tokens for which mailbox ------------------------------------------------------------

TokenResolver = Callable[[str], "Tokens | None"]
_resolvers: list[TokenResolver] = []


def register_token_resolver(resolver: TokenResolver) -> None:
    """An app that knows mailboxes with their own (delegated) tokens answers for them; None
    means "not mine", and the app-only provider serves."""
    if resolver not in _resolvers:
        _resolvers.append(resolver)


def tokens_for(mailbox: str | None) -> Tokens:
    """The token source for requests about this mailbox (app-only without one)."""
    if mailbox:
        for resolver in _resolvers:
            tokens = resolver(mailbox)
            if tokens is not None:
                return tokens
    return token_provider()
