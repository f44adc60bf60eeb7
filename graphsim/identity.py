"""The simulated Microsoft identity platform: apps, test users, codes, tokens and their errors.

Two flows, as MSAL drives them against Microsoft Entra ID:

- client credentials (app-only tokens for the CRM's shared mailboxes);
- the authorization code flow with PKCE for an agent's own mailbox: `authorize` stands in for
  the sign-in and consent pages (a test user is "signed in" with `IdentityState.sign_in`, and
  consent can be denied with `deny_consent`), the token endpoint redeems the code once for an
  access token, a rotating refresh token and an RS256-signed id token whose key is published at
  the discovery document's `jwks_uri`.

Access tokens stay opaque (`sim.` + random): Graph's routes look them up here, and a delegated
one carries its user, so `/me` and the 403 on other mailboxes work. Errors have Azure AD's shape
(`error`, `error_description` starting with the AADSTS code, `error_codes`, ...), because the
CRM maps them to "reconnect needed" and similar states.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from graphsim.subscriptions import DEFAULT_TENANT, Caller, tenant_id, user_id

TOKEN_LIFETIME_SECONDS = 3599
CODE_LIFETIME_SECONDS = 600
ID_TOKEN_LIFETIME_SECONDS = 3600
# Scopes about the user's sign-in rather than a resource; MSAL adds the first three itself.
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
# How many refresh tokens of one chain (one sign-in) are accepted: the newest and the one
# before it, so a client that lost the answer to a refresh can still retry once.
LIVE_REFRESH_TOKENS = 2


class AADError(Exception):
    """A refusal in Azure AD's shape; the token endpoint answers it as JSON, `authorize` as a
    redirect (or an error page when it cannot redirect)."""

    def __init__(self, error: str, code: str, description: str, status: int = 400) -> None:
        super().__init__(f"{code}: {description}")
        self.error = error
        self.code = code
        self.description = description
        self.status = status

    def body(self) -> dict[str, Any]:
        return aad_error(self.error, self.code, self.description)


def aad_error(error: str, code: str, description: str) -> dict[str, Any]:
    """Azure AD's error body: the description starts with the AADSTS code and ends with the
    trace and correlation ids and timestamp, as the real one does."""
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    number = int(code.removeprefix("AADSTS"))
    return {
        "error": error,
        "error_description": f"{code}: {description} Trace ID: {trace} "
        f"Correlation ID: {correlation} Timestamp: {stamp}",
        "error_codes": [number],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={number}",
    }


@dataclass(frozen=True)
class TestUser:
    """A user who can sign in; `oid` is the same id Graph uses for the user in
    `/users/{id}` and in notifications, so ids agree everywhere."""

    __test__ = False  # not a pytest test class, despite the name

    email: str
    tenant: str
    password: str | None = None
    display_name: str = ""

    @property
    def oid(self) -> str:
        return user_id(self.email)

    @property
    def tid(self) -> str:
        return tenant_id(self.tenant)

    def resource(self) -> dict[str, Any]:
        """The user as Graph's `/me` or `/users/{id}` returns it."""
        return {
            "id": self.oid,
            "displayName": self.display_name,
            "mail": self.email,
            "userPrincipalName": self.email,
        }


@dataclass
class AuthorizationCode:
    """What the sign-in granted, waiting to be redeemed once by the same app."""

    tenant: str
    client_id: str
    redirect_uri: str | None
    user: str
    scopes: tuple[str, ...]
    nonce: str | None
    code_challenge: str
    auth_time: int
    expires_at: float
    redeemed: bool = False


@dataclass
class RefreshGrant:
    """One refresh token; `chain` ties the tokens of one sign-in together for rotation."""

    tenant: str
    client_id: str
    user: str
    scopes: tuple[str, ...]
    chain: str
    auth_time: int
    state: str = "live"  # "live", "superseded", "revoked" or "expired"


@dataclass
class IdentityState:
    """Registered apps per tenant (secret and redirect URIs), test users and who is signed in,
    the access tokens handed out (token -> expiry) with the tenant and app each was issued to
    (subscriptions record them) and, for delegated tokens, their user; authorization codes and
    refresh tokens. `authorize_requests` keeps each authorize request's query for tests;
    `grant_counts` counts successful token requests by grant type."""

    apps: dict[tuple[str, str], str] = field(default_factory=dict)
    redirect_uris: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    callers: dict[str, Caller] = field(default_factory=dict)
    delegated: dict[str, str] = field(default_factory=dict)
    token_requests: int = 0
    users: dict[str, TestUser] = field(default_factory=dict)
    signed_in: str | None = None
    deny_consent: bool = False
    codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshGrant] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    grant_counts: Counter[str] = field(default_factory=Counter)
    user_added: Callable[[TestUser], None] | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    _signing_key: rsa.RSAPrivateKey | None = None

    # Apps and users

    def register_app(
        self, *, tenant: str, client_id: str, secret: str, redirect_uris: list[str] | None = None
    ) -> None:
        """An app registration; `redirect_uris` are the web redirect URIs the authorization
        code flow may return to (exact matches, as Entra ID compares them)."""
        self.apps[(tenant, client_id)] = secret
        if redirect_uris is not None:
            self.redirect_uris[(tenant, client_id)] = tuple(redirect_uris)

    def add_user(
        self,
        email: str,
        password: str | None = None,
        *,
        tenant: str = DEFAULT_TENANT,
        display_name: str | None = None,
    ) -> TestUser:
        """A user of the tenant whose mailbox is `email` (the server creates the mailbox if
        it does not exist yet)."""
        user = TestUser(
            email=email.lower(),
            tenant=tenant,
            password=password,
            display_name=display_name or email.partition("@")[0].replace(".", " ").title(),
        )
        self.users[user.email] = user
        if self.user_added is not None:
            self.user_added(user)
        return user

    def sign_in(self, email: str, password: str | None = None) -> TestUser:
        """From now on the authorize endpoint acts for this user (there is no login page)."""
        user = self.users.get(email.lower())
        if user is None:
            raise KeyError(f"No test user {email}; add it with add_user().")
        if user.password is not None and password is not None and password != user.password:
            raise ValueError(f"Wrong password for {email}.")
        self.signed_in = user.email
        return user

    def sign_out(self) -> None:
        self.signed_in = None

    # Access tokens

    def issue_token(
        self, *, tenant: str = DEFAULT_TENANT, client_id: str = "", user: str | None = None
    ) -> str:
        """An access token for the app, or for the app acting as `user` (delegated)."""
        token = "sim." + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.time() + TOKEN_LIFETIME_SECONDS
            self.callers[token] = Caller(tenant=tenant, client_id=client_id)
            if user is not None:
                self.delegated[token] = user.lower()
            self.token_requests += 1
        return token

    def caller(self, authorization: str) -> Caller:
        """Who an `Authorization: Bearer ...` header belongs to."""
        return self.callers.get(authorization.partition(" ")[2], Caller())

    def delegated_user(self, authorization: str) -> str | None:
        """The user a delegated token acts for; None for app-only tokens."""
        return self.delegated.get(authorization.partition(" ")[2])

    def token_valid(self, token: str) -> bool:
        return self.tokens.get(token, 0) > time.time()

    def expire_all_tokens(self) -> None:
        """As if every token's hour had passed: Graph answers 401 until a new one is fetched."""
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    # Codes and refresh tokens, for tests

    def revoke_refresh_tokens(self, email: str) -> int:
        """As an admin's "revoke sessions" or a password reset: every refresh token of the user
        fails with invalid_grant (AADSTS50173). Access tokens live on until they expire, as in
        Entra ID. Returns how many live tokens were revoked."""
        return self._end_refresh_tokens(email, "revoked")

    def expire_refresh_tokens(self, email: str) -> int:
        """As if the user's refresh tokens had gone unused too long (AADSTS700082)."""
        return self._end_refresh_tokens(email, "expired")

    def _end_refresh_tokens(self, email: str, state: str) -> int:
        with self.lock:
            grants = [g for g in self.refresh_tokens.values() if g.user == email.lower()]
            live = [g for g in grants if g.state in ("live", "superseded")]
            for grant in live:
                grant.state = state
            return len(live)

    def expire_authorization_codes(self) -> None:
        """As if ten minutes had passed since each code was issued (AADSTS70008)."""
        with self.lock:
            for code in self.codes.values():
                code.expires_at = 0.0

    # Signing

    @property
    def signing_key(self) -> rsa.RSAPrivateKey:
        """Made on first use: most simulator runs never sign anything."""
        with self.lock:
            if self._signing_key is None:
                self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return self._signing_key

    @property
    def key_id(self) -> str:
        numbers = self.signing_key.public_key().public_numbers()
        return _b64url(hashlib.sha256(_int_bytes(numbers.n)).digest())[:27]


# Authorize endpoint


@dataclass(frozen=True)
class AuthorizeAnswer:
    """A 302 to the app's redirect URI (`response_mode=query`, the default), a page whose form
    the browser POSTs to it (`response_mode=form_post`, which MSAL recommends), or an error
    page when the request names no redirect URI the app registered (Entra ID never sends
    anything to an unknown address)."""

    status: int
    location: str | None = None
    page: str = ""


def authorize(identity: IdentityState, tenant: str, query: Mapping[str, str]) -> AuthorizeAnswer:
    """`GET /{tenant}/oauth2/v2.0/authorize`: the sign-in and consent pages, decided by the
    signed-in test user and `deny_consent` instead of a person."""
    identity.authorize_requests.append(dict(query))
    try:
        redirect_uri = _checked_redirect_uri(identity, tenant, query)
    except AADError as exc:
        return AuthorizeAnswer(exc.status, page=_error_page(exc))
    try:
        code = _grant_code(identity, tenant, query)
    except AADError as exc:
        params = {"error": exc.error, "error_description": f"{exc.code}: {exc.description}"}
    else:
        params = {"code": code, "session_state": str(uuid.uuid4())}
    if "state" in query:
        params["state"] = query["state"]
    if query.get("response_mode") == "form_post":
        return AuthorizeAnswer(200, page=_form_post_page(redirect_uri, params))
    return AuthorizeAnswer(302, _with_query(redirect_uri, params))


def _checked_redirect_uri(identity: IdentityState, tenant: str, query: Mapping[str, str]) -> str:
    client_id = query.get("client_id", "")
    if (tenant, client_id) not in identity.apps:
        raise AADError(
            "unauthorized_client", "AADSTS700016",
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant}'.",
        )  # fmt: skip
    registered = identity.redirect_uris.get((tenant, client_id), ())
    redirect_uri = query.get("redirect_uri") or (registered[0] if registered else "")
    if redirect_uri not in registered:
        raise AADError(
            "invalid_request", "AADSTS50011",
            f"The redirect URI '{redirect_uri}' specified in the request does not match the "
            f"redirect URIs configured for the application '{client_id}'.",
        )  # fmt: skip
    return redirect_uri


def _grant_code(identity: IdentityState, tenant: str, query: Mapping[str, str]) -> str:
    """Check the request as Entra ID does once it can redirect, then sign in and consent."""
    _check_authorize_parameters(query)
    user = _signed_in_user(identity, tenant, query.get("prompt"))
    if identity.deny_consent:
        raise AADError(
            "access_denied", "AADSTS65004", "User declined to consent to access the app."
        )
    code = "sim.code." + secrets.token_urlsafe(32)
    with identity.lock:
        identity.codes[code] = AuthorizationCode(
            tenant=tenant,
            client_id=query["client_id"],
            redirect_uri=query.get("redirect_uri"),
            user=user.email,
            scopes=tuple(query["scope"].split()),
            nonce=query.get("nonce"),
            code_challenge=query["code_challenge"],
            auth_time=int(time.time()),
            expires_at=time.time() + CODE_LIFETIME_SECONDS,
        )
    return code


def _check_authorize_parameters(query: Mapping[str, str]) -> None:
    response_type = query.get("response_type", "")
    if response_type != "code":
        raise AADError(
            "unsupported_response_type", "AADSTS700054",
            f"response_type '{response_type}' is not enabled for the application.",
        )  # fmt: skip
    if not query.get("scope", "").strip():
        raise AADError(
            "invalid_request", "AADSTS900144",
            "The request body must contain the following parameter: 'scope'.",
        )  # fmt: skip
    if not query.get("code_challenge"):
        raise AADError(
            "invalid_request", "AADSTS9002325",
            "Proof Key for Code Exchange is required for this application.",
        )  # fmt: skip
    if query.get("code_challenge_method") != "S256":
        raise AADError(
            "invalid_request", "AADSTS501491",
            "The code_challenge_method must be 'S256' in the simulator.",
        )  # fmt: skip


def _signed_in_user(identity: IdentityState, tenant: str, prompt: str | None) -> TestUser:
    user = identity.users.get(identity.signed_in or "")
    if user is None:
        if prompt == "none":
            raise AADError(
                "login_required", "AADSTS50058",
                "A silent sign-in request was sent but no user is signed in.",
            )  # fmt: skip
        raise AADError(
            "access_denied", "AADSTS50058",
            "No user signed in: the simulator has no signed-in test user (sign_in()).",
        )  # fmt: skip
    if user.tenant != tenant:
        raise AADError(
            "access_denied", "AADSTS50020",
            f"User account '{user.email}' from identity provider does not exist in tenant "
            f"'{tenant}'.",
        )  # fmt: skip
    return user


def _with_query(url: str, params: dict[str, str]) -> str:
    separator = "&" if urllib.parse.urlsplit(url).query else "?"
    return url + separator + urllib.parse.urlencode(params)


def _form_post_page(action: str, params: dict[str, str]) -> str:
    """Entra ID's form_post answer: a form of hidden fields that a script submits at once."""
    fields = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}" />'
        for k, v in params.items()
    )
    return (
        "<html><head><title>Working...</title></head><body>"
        f'<form method="POST" name="hiddenform" action="{html.escape(action)}">{fields}'
        "<noscript><p>Script is disabled. Click Submit to continue.</p>"
        '<input type="submit" value="Submit" /></noscript></form>'
        "<script>document.forms[0].submit();</script></body></html>"
    )


def parse_form_post(page: str) -> tuple[str, dict[str, str]]:
    """(action, fields) of a form_post page: what a browser would POST where; for tests."""
    action = re.search(r'<form [^>]*action="([^"]*)"', page)
    fields = re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)"', page)
    if action is None:
        raise ValueError("Not a form_post page.")
    unescaped = {html.unescape(k): html.unescape(v) for k, v in fields}
    return html.unescape(action.group(1)), unescaped


def _error_page(error: AADError) -> str:
    """The sign-in page's error text, which a person would read; not a redirect."""
    escaped = html.escape(f"{error.code}: {error.description}")
    heading = "Sorry, but we're having trouble signing you in."
    return f"<!DOCTYPE html><html><body><h1>{heading}</h1><p id='error'>{escaped}</p></body></html>"


# Token endpoint


@dataclass(frozen=True)
class TokenContext:
    """Where the token endpoint was called: the issuer goes into id tokens."""

    tenant: str
    issuer: str


def token_response(
    identity: IdentityState, context: TokenContext, form: Mapping[str, str]
) -> tuple[int, dict[str, Any]]:
    """`POST /{tenant}/oauth2/v2.0/token` for the three grants, with Azure AD's errors."""
    grant_type = form.get("grant_type", "")
    grants = {
        "client_credentials": _client_credentials,
        "authorization_code": _authorization_code,
        "refresh_token": _refresh_token,
    }
    if grant_type not in grants:
        return 400, aad_error("unsupported_grant_type", "AADSTS70003", "Grant not supported.")
    try:
        _check_client(identity, context.tenant, form)
        answer = grants[grant_type](identity, context, form)
    except AADError as exc:
        return exc.status, exc.body()
    with identity.lock:
        identity.grant_counts[grant_type] += 1
    return 200, answer


def _check_client(identity: IdentityState, tenant: str, form: Mapping[str, str]) -> None:
    secret = identity.apps.get((tenant, form.get("client_id", "")))
    if secret is None:
        raise AADError(
            "unauthorized_client", "AADSTS700016", "Application not found in the tenant."
        )
    if not secrets.compare_digest(secret, form.get("client_secret", "")):
        raise AADError("invalid_client", "AADSTS7000215", "Invalid client secret.", status=401)


def _client_credentials(
    identity: IdentityState, context: TokenContext, form: Mapping[str, str]
) -> dict[str, Any]:
    if not form.get("scope", "").endswith("/.default"):
        raise AADError("invalid_scope", "AADSTS1002012", "Scope must be /.default.")
    token = identity.issue_token(tenant=context.tenant, client_id=form.get("client_id", ""))
    return {
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECONDS,
        "ext_expires_in": TOKEN_LIFETIME_SECONDS,
        "access_token": token,
    }


def _authorization_code(
    identity: IdentityState, context: TokenContext, form: Mapping[str, str]
) -> dict[str, Any]:
    """Redeem a code once, for the app and redirect URI it was issued to, with the verifier
    whose S256 hash is the challenge; a redeemed code stays refused."""
    with identity.lock:
        code = _redeemable_code(identity, context.tenant, form)
        _check_verifier(code, form.get("code_verifier"))
        code.redeemed = True
    user = identity.users[code.user]
    scopes = _narrowed_scopes(code.scopes, form.get("scope"))
    chain = secrets.token_urlsafe(8)
    return _user_tokens(
        identity, context, form, user, scopes,
        chain=chain, auth_time=code.auth_time, nonce=code.nonce,
    )  # fmt: skip


def _redeemable_code(
    identity: IdentityState, tenant: str, form: Mapping[str, str]
) -> AuthorizationCode:
    code = identity.codes.get(form.get("code", ""))
    if code is None or code.tenant != tenant or code.client_id != form.get("client_id"):
        raise AADError(
            "invalid_grant", "AADSTS70000", "The provided value for the 'code' parameter is not "
            "valid.",
        )  # fmt: skip
    if code.redeemed:
        raise AADError(
            "invalid_grant", "AADSTS54005", "OAuth2 Authorization code was already redeemed, "
            "please retry with a new valid code or use an existing refresh token.",
        )  # fmt: skip
    if code.expires_at <= time.time():
        raise AADError(
            "invalid_grant", "AADSTS70008", "The provided authorization code or refresh token "
            "has expired due to inactivity. Send a new interactive authorization request for "
            "this user and resource.",
        )  # fmt: skip
    if form.get("redirect_uri") != code.redirect_uri:
        raise AADError(
            "invalid_grant", "AADSTS70000", "The provided value for the 'redirect_uri' is not "
            "valid. The value must exactly match the redirect URI used to obtain the "
            "authorization code.",
        )  # fmt: skip
    return code


def _check_verifier(code: AuthorizationCode, verifier: str | None) -> None:
    if not verifier:
        raise AADError(
            "invalid_request", "AADSTS900144",
            "The request body must contain the following parameter: 'code_verifier'.",
        )  # fmt: skip
    if not secrets.compare_digest(pkce_challenge(verifier), code.code_challenge):
        raise AADError(
            "invalid_grant", "AADSTS50148",
            "The code_verifier does not match the code_challenge supplied in the "
            "authorization request for PKCE.",
        )  # fmt: skip


def pkce_challenge(verifier: str) -> str:
    """RFC 7636's S256: base64url(sha256(verifier)) without padding."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _refresh_token(
    identity: IdentityState, context: TokenContext, form: Mapping[str, str]
) -> dict[str, Any]:
    """A new access token and a rotated refresh token; the chain's two newest stay valid."""
    with identity.lock:
        grant = _usable_refresh_grant(identity, context.tenant, form)
        scopes = _narrowed_scopes(grant.scopes, form.get("scope"))
    user = identity.users[grant.user]
    return _user_tokens(
        identity, context, form, user, scopes, chain=grant.chain, auth_time=grant.auth_time
    )


def _usable_refresh_grant(
    identity: IdentityState, tenant: str, form: Mapping[str, str]
) -> RefreshGrant:
    grant = identity.refresh_tokens.get(form.get("refresh_token", ""))
    if grant is None or grant.tenant != tenant or grant.client_id != form.get("client_id"):
        raise AADError(
            "invalid_grant", "AADSTS9002313", "Invalid request. Request is malformed or invalid."
        )
    if grant.state == "revoked":
        raise AADError(
            "invalid_grant", "AADSTS50173", "The provided grant has expired due to it being "
            "revoked, a fresh auth token is needed. The user might have changed or reset their "
            "password.",
        )  # fmt: skip
    if grant.state == "expired":
        raise AADError(
            "invalid_grant", "AADSTS700082", "The refresh token has expired due to inactivity.",
        )  # fmt: skip
    if grant.state == "superseded":
        raise AADError(
            "invalid_grant", "AADSTS70008", "The provided authorization code or refresh token "
            "has expired due to inactivity. Send a new interactive authorization request for "
            "this user and resource.",
        )  # fmt: skip
    return grant


def _narrowed_scopes(granted: tuple[str, ...], requested: str | None) -> tuple[str, ...]:
    """The token's scopes: what the request asks for, which must have been consented to.
    Graph's scopes match with or without the resource prefix, in any case."""
    if not requested:
        return granted
    wanted = tuple(requested.split())
    consented = {_scope_key(s) for s in granted}
    missing = [s for s in wanted if s not in OIDC_SCOPES and _scope_key(s) not in consented]
    if missing:
        raise AADError(
            "invalid_grant", "AADSTS65001",
            f"The user or administrator has not consented to use the application for the "
            f"scopes {' '.join(missing)}. Send an interactive authorization request.",
        )  # fmt: skip
    return wanted


def _scope_key(scope: str) -> str:
    """`https://graph.microsoft.com/Mail.Read` and `mail.read` are the same scope."""
    return scope.rpartition("/")[2].lower() if "://" in scope else scope.lower()


def _user_tokens(
    identity: IdentityState,
    context: TokenContext,
    form: Mapping[str, str],
    user: TestUser,
    scopes: tuple[str, ...],
    *,
    chain: str,
    auth_time: int,
    nonce: str | None = None,
) -> dict[str, Any]:
    """Entra ID's answer to a user grant: no refresh token without `offline_access`, no id
    token without `openid`, `client_info` when MSAL asks for it (`client_info=1`)."""
    client_id = form["client_id"]
    answer: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join(s for s in scopes if s != "offline_access"),
        "expires_in": TOKEN_LIFETIME_SECONDS,
        "ext_expires_in": TOKEN_LIFETIME_SECONDS,
        "access_token": identity.issue_token(
            tenant=context.tenant, client_id=client_id, user=user.email
        ),
    }
    if "offline_access" in scopes:
        answer["refresh_token"] = _rotate_refresh_token(
            identity, context.tenant, client_id, user, scopes, chain=chain, auth_time=auth_time
        )
    if "openid" in scopes:
        claims = id_token_claims(
            user, client_id=client_id, issuer=context.issuer, nonce=nonce, auth_time=auth_time,
            email="email" in scopes,
        )  # fmt: skip
        answer["id_token"] = sign_jwt(identity, claims)
    if form.get("client_info") == "1":
        answer["client_info"] = _b64url(json.dumps({"uid": user.oid, "utid": user.tid}).encode())
    return answer


def _rotate_refresh_token(
    identity: IdentityState,
    tenant: str,
    client_id: str,
    user: TestUser,
    scopes: tuple[str, ...],
    *,
    chain: str,
    auth_time: int,
) -> str:
    token = "sim.rt." + secrets.token_urlsafe(32)
    with identity.lock:
        identity.refresh_tokens[token] = RefreshGrant(
            tenant=tenant, client_id=client_id, user=user.email, scopes=scopes, chain=chain,
            auth_time=auth_time,
        )  # fmt: skip
        grants = identity.refresh_tokens.values()
        live = [g for g in grants if g.chain == chain and g.state == "live"]
        for grant in live[:-LIVE_REFRESH_TOKENS]:  # dicts keep insertion order: oldest first
            grant.state = "superseded"
    return token


# ID tokens


def id_token_claims(
    user: TestUser,
    *,
    client_id: str,
    issuer: str,
    nonce: str | None = None,
    auth_time: int | None = None,
    email: bool = False,
) -> dict[str, Any]:
    """The v2.0 id token's claims that MSAL and the CRM read (`preferred_username`, `oid`,
    `tid`, `nonce`...), with Entra ID's names and lifetimes."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": client_id,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + ID_TOKEN_LIFETIME_SECONDS,
        "name": user.display_name,
        "oid": user.oid,
        "preferred_username": user.email,
        "rh": "0.sim",
        "sub": _b64url(hashlib.sha256(f"{user.oid}:{client_id}".encode()).digest())[:43],
        "tid": user.tid,
        "uti": secrets.token_urlsafe(16),
        "ver": "2.0",
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if auth_time is not None:
        claims["auth_time"] = auth_time
    if email:
        claims["email"] = user.email
    return claims


def sign_jwt(identity: IdentityState, claims: Mapping[str, Any]) -> str:
    """RS256 with the key `jwks` publishes."""
    header = {"typ": "JWT", "alg": "RS256", "kid": identity.key_id}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = identity.signing_key.sign(
        signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{signing_input}.{_b64url(signature)}"


def jwks(identity: IdentityState, issuer: str) -> dict[str, Any]:
    """`GET /{tenant}/discovery/v2.0/keys`: the id token signing key as a JWK set."""
    numbers = identity.signing_key.public_key().public_numbers()
    key = {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": identity.key_id,
        "n": _b64url(_int_bytes(numbers.n)),
        "e": _b64url(_int_bytes(numbers.e)),
        "issuer": issuer,
    }
    return {"keys": [key]}


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
