"""Agents' own Microsoft 365 mailboxes: connecting one through the authorization code flow, the
delegated tokens its sync uses, and the health of the connection.

The agent signs in at Microsoft and consents once; MSAL's token cache (with the refresh token)
is kept encrypted on the mailbox's `DelegatedGrant`. Every process then keeps the access token
in memory and asks MSAL again five minutes before it expires: MSAL redeems the refresh token
(which Entra ID rotates), under a row lock so two workers never race with the same refresh
token, and the rotated cache is written back.

A refusal for good (`invalid_grant`: revoked, expired, consent withdrawn) marks the mailbox
"reconnect needed": its rounds stop and its owner and the admins see why, until the owner
connects again. Anything else (the identity platform unreachable) is recorded and retried.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msal
import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from crm.db import equals_ignoring_case
from crm.fields import UndecryptableValue
from crm.graph.auth import GraphAuthError, confidential_app, delegated_scopes
from crm.graph.client import GraphClient
from crm.graph.errors import GraphError
from crm.models import User
from mailsync.errors import MailboxError
from mailsync.models import DelegatedGrant, Mailbox
from mailsync.services.health import owner_tell_reconnect
from mailsync.services.mailboxes import mailbox_connect

logger = logging.getLogger(__name__)

# An access token is renewed this long before it expires (MSAL's own margin is the same).
RENEW_MARGIN_SECONDS = 300
# Errors after which only the agent signing in again helps.
FINAL_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required"})
UNDECRYPTABLE = (
    "The stored sign-in cannot be decrypted with FIELD_ENCRYPTION_KEY (was the key replaced "
    "instead of rotated?)."
)


class ReconnectNeeded(GraphAuthError):
    """The mailbox's owner must connect it again (Microsoft refused its refresh token)."""

    code = "mailbox_reconnect_needed"


class ConnectRefused(MailboxError):
    """The sign-in did not give us a mailbox: denied consent, a forged or stale answer, a
    mailbox that belongs to someone else."""

    code = "mailbox_connect_refused"


# --- connecting ------------------------------------------------------------------------------


def connect_begin(*, redirect_uri: str, login_hint: str = "") -> dict[str, Any]:
    """MSAL's authorization code flow (state, PKCE verifier, nonce): the caller keeps it in
    the agent's session until the callback and sends the browser to its `auth_uri`."""
    return confidential_app().initiate_auth_code_flow(
        delegated_scopes(),
        redirect_uri=redirect_uri,
        login_hint=login_hint or None,
        prompt="select_account",
    )


def connect_finish(*, user: User, flow: dict[str, Any], auth_response: dict[str, str]) -> Mailbox:
    """Redeem the code of the callback (MSAL checks the state and sends the PKCE verifier),
    then register the signed-in user's mailbox as the agent's own, or renew its grant."""
    cache = msal.SerializableTokenCache()
    result = _redeem(confidential_app(token_cache=cache), flow, auth_response)
    me = _signed_in_mailbox(result["access_token"])
    address = (me.get("mail") or me.get("userPrincipalName") or "").lower()
    if not address:
        raise ConnectRefused("Microsoft did not tell which mailbox the account has.")
    claims = result.get("id_token_claims") or {}
    with transaction.atomic():
        mailbox = _own_mailbox(user, address, display_name=me.get("displayName") or "")
        DelegatedGrant.objects.update_or_create(
            mailbox=mailbox,
            defaults={
                "username": claims.get("preferred_username") or address,
                "account_id": _home_account_id(cache),
                "tenant_id": claims.get("tid", ""),
                "scopes": delegated_scopes(),
                "token_cache": cache.serialize(),
                "connected_by": user,
                "connected_at": timezone.now(),
                "last_token_at": timezone.now(),
                "refreshed_at": timezone.now(),
                "last_error": "",
                "last_error_at": None,
                "reconnect_needed": False,
            },
        )
        Mailbox.objects.filter(pk=mailbox.pk).update(last_error="", stale_alert_sent_at=None)
        transaction.on_commit(lambda: _sync_soon(mailbox.pk))
    forget_tokens(mailbox.pk)
    return mailbox


def _redeem(
    app: msal.ConfidentialClientApplication, flow: dict[str, Any], auth_response: dict[str, str]
) -> dict[str, Any]:
    if "error" in auth_response:
        raise ConnectRefused(_described(auth_response, "Microsoft did not connect the mailbox"))
    try:
        result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    except ValueError as exc:  # MSAL: the state does not match the flow we started
        raise ConnectRefused(
            "The answer from Microsoft does not belong to the sign-in started here (its state "
            "does not match). Start again from your profile."
        ) from exc
    except requests.RequestException as exc:
        raise ConnectRefused(f"Microsoft's sign-in service could not be reached: {exc}") from exc
    if "access_token" not in result:
        raise ConnectRefused(_described(result, "Microsoft refused the sign-in"))
    return result


def _described(answer: dict[str, Any], prefix: str) -> str:
    detail = answer.get("error_description") or answer.get("error") or "no reason given"
    return f"{prefix}: {detail}"


def _signed_in_mailbox(access_token: str) -> dict[str, Any]:
    """`GET /me`: the mailbox address (`mail`) can differ from the sign-in name."""
    try:
        return GraphClient(tokens=_OneToken(access_token), max_retries=2).get(
            "me?$select=mail,userPrincipalName,displayName"
        )
    except GraphError as exc:
        raise ConnectRefused(f"Microsoft Graph did not show the signed-in mailbox: {exc}") from exc


@dataclass
class _OneToken:
    access_token: str

    def token(self) -> str:
        return self.access_token

    def invalidate(self) -> None:
        """A fresh token that fails is not worth a second try."""


def _own_mailbox(user: User, address: str, *, display_name: str) -> Mailbox:
    existing = (
        Mailbox.objects.select_for_update().filter(equals_ignoring_case("address", address)).first()
    )
    if existing is None:
        return mailbox_connect(address=address, owner=user, display_name=display_name)
    if existing.owner_id != user.pk:
        whose = f"the team {existing.team}" if existing.team_id else "another agent"
        raise ConnectRefused(f"The mailbox {address} is already connected for {whose}.")
    return existing


def _home_account_id(cache: msal.SerializableTokenCache) -> str:
    accounts = list(cache.search(msal.TokenCache.CredentialType.ACCOUNT))
    if not accounts:
        raise ConnectRefused("Microsoft's answer named no account (no id token).")
    return accounts[0]["home_account_id"]


def _sync_soon(mailbox_id: int) -> None:
    from mailsync.tasks import sync_mailbox

    sync_mailbox.delay(mailbox_id)


def grant_disconnect(*, mailbox: Mailbox) -> None:
    """Forget the tokens of an agent's mailbox; the mailbox and its mail stay until removed."""
    DelegatedGrant.objects.filter(mailbox=mailbox).delete()
    forget_tokens(mailbox.pk)


# --- tokens ----------------------------------------------------------------------------------


class DelegatedTokens:
    """Access tokens for one agent's mailbox in this process (GraphClient's token source)."""

    def __init__(self, mailbox_id: int) -> None:
        self.mailbox_id = mailbox_id
        self._cache = msal.SerializableTokenCache()
        self._app: msal.ConfidentialClientApplication | None = None
        self._token = ""
        self._expires_at = 0.0
        self._force_refresh = False
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            if self._token and self._expires_at - time.time() > RENEW_MARGIN_SECONDS:
                return self._token
            return self._acquire(force_refresh=self._force_refresh)

    def invalidate(self) -> None:
        """Graph answered 401: the next token comes from the refresh token, not a cache."""
        with self._lock:
            self._token, self._force_refresh = "", True

    def refresh(self) -> str:
        """Redeem the refresh token now (health checks, keeping an idle grant alive)."""
        with self._lock:
            return self._acquire(force_refresh=True)

    def _acquire(self, *, force_refresh: bool) -> str:
        """From the stored cache, under the grant's row lock (another process may have rotated
        the refresh token a moment ago). Health is recorded in the same transaction, which
        therefore never ends in an exception."""
        with transaction.atomic():
            grant = DelegatedGrant.objects.select_for_update().get(mailbox_id=self.mailbox_id)
            if grant.reconnect_needed:
                result, failure = None, ReconnectNeeded(_reconnect_text(grant))
            else:
                result, failure = self._attempt(grant, force_refresh=force_refresh)
        if failure is not None:
            raise failure
        self._token = result["access_token"]
        self._expires_at = time.time() + float(result.get("expires_in", 0))
        self._force_refresh = False
        return self._token

    def _attempt(
        self, grant: DelegatedGrant, *, force_refresh: bool
    ) -> tuple[dict[str, Any] | None, GraphAuthError | None]:
        if isinstance(grant.token_cache, UndecryptableValue):
            _record_failure(grant, UNDECRYPTABLE, final=True)
            return None, ReconnectNeeded(_reconnect_text(grant))
        self._cache.deserialize(grant.token_cache or "{}")
        try:
            result = self._silent(grant, force_refresh=force_refresh)
        except (requests.RequestException, ValueError, GraphAuthError) as exc:
            error = f"Microsoft's sign-in service could not be reached: {exc}"
            _record_failure(grant, error, final=False)
            return None, GraphAuthError(error)
        if result is None or "access_token" not in result:
            final = result is None or result.get("error") in FINAL_ERRORS
            error = _described(result or {}, "Microsoft refused the stored sign-in")
            _record_failure(grant, error, final=final)
            return None, ReconnectNeeded(_reconnect_text(grant)) if final else GraphAuthError(error)
        _record_success(grant, self._cache, refreshed=result.get("token_source") != "cache")
        return result, None

    def _silent(self, grant: DelegatedGrant, *, force_refresh: bool) -> dict[str, Any] | None:
        if self._app is None:
            self._app = confidential_app(token_cache=self._cache)
        accounts = [
            account
            for account in self._app.get_accounts()
            if account.get("home_account_id") == grant.account_id
        ]
        if not accounts:
            return None
        return self._app.acquire_token_silent_with_error(
            grant.scopes or delegated_scopes(), accounts[0], force_refresh=force_refresh
        )


def _reconnect_text(grant: DelegatedGrant) -> str:
    return (
        f"{grant.mailbox.address} must be connected again by its owner "
        f"({grant.last_error or 'Microsoft refused its sign-in'})."
    )


def _record_success(
    grant: DelegatedGrant, cache: msal.SerializableTokenCache, *, refreshed: bool
) -> None:
    now = timezone.now()
    grant.last_token_at = now
    fields = ["last_token_at"]
    if refreshed:
        grant.refreshed_at = now
        fields.append("refreshed_at")
    if cache.has_state_changed:
        grant.token_cache = cache.serialize()
        cache.has_state_changed = False
        fields.append("token_cache")
    if grant.last_error:
        grant.last_error, grant.last_error_at = "", None
        fields += ["last_error", "last_error_at"]
    grant.save(update_fields=fields)


def _record_failure(grant: DelegatedGrant, error: str, *, final: bool) -> None:
    logger.warning("mail sync: %s: %s", grant.mailbox_id, error)
    grant.last_error, grant.last_error_at = error[:2000], timezone.now()
    grant.reconnect_needed = final
    grant.save(update_fields=["last_error", "last_error_at", "reconnect_needed"])
    if final:
        Mailbox.objects.filter(pk=grant.mailbox_id).update(last_error=_reconnect_text(grant))
        transaction.on_commit(lambda: owner_tell_reconnect(grant=grant), robust=True)


_tokens: dict[tuple[str, int], DelegatedTokens] = {}
_tokens_lock = threading.Lock()


def tokens_for_mailbox(address: str) -> DelegatedTokens | None:
    """The resolver `crm.graph.auth.tokens_for` asks: delegated tokens for an agent's own
    mailbox, None for the others (they use the app's own token)."""
    mailbox_id = (
        DelegatedGrant.objects.filter(equals_ignoring_case("mailbox__address", address))
        .values_list("mailbox_id", flat=True)
        .first()
    )
    if mailbox_id is None:
        return None
    key = (settings.MS_AUTHORITY_HOST, mailbox_id)
    with _tokens_lock:
        if key not in _tokens:
            _tokens[key] = DelegatedTokens(mailbox_id)
        return _tokens[key]


def forget_tokens(mailbox_id: int | None = None) -> None:
    """Drop this process's tokens of a mailbox (after it is connected again), or of all."""
    with _tokens_lock:
        for key in [k for k in _tokens if mailbox_id is None or k[1] == mailbox_id]:
            del _tokens[key]


# --- health ----------------------------------------------------------------------------------


def grant_check(*, mailbox: Mailbox) -> DelegatedGrant:
    """Redeem the refresh token now and return the grant with its recorded health; a refusal
    is recorded there, not raised."""
    tokens = tokens_for_mailbox(mailbox.address)
    if tokens is None:
        raise MailboxError(f"{mailbox.address} is not connected with an agent's own sign-in.")
    try:
        tokens.refresh()
    except GraphAuthError:
        pass
    return DelegatedGrant.objects.select_related("mailbox").get(mailbox=mailbox)


def grants_keep_fresh() -> int:
    """Redeem each working grant's refresh token once every DELEGATED_REFRESH_HOURS: an unused
    refresh token expires, and a revoked one is found before its owner misses mail."""
    due = timezone.now() - timedelta(hours=settings.DELEGATED_REFRESH_HOURS)
    grants = DelegatedGrant.objects.filter(
        reconnect_needed=False, mailbox__sync_enabled=True, refreshed_at__lt=due
    ).select_related("mailbox")
    checked = 0
    for grant in grants:
        grant_check(mailbox=grant.mailbox)
        checked += 1
    return checked
