"""Model fields of the kernel: text encrypted at rest.

Tokens and secrets the CRM must use again (an agent's Microsoft 365 refresh token, an Airtable
access token) are stored with Fernet (AES-128-CBC with an HMAC, from `cryptography`), so a copy
of the database or a backup alone does not hand them out.

`FIELD_ENCRYPTION_KEY` may list several keys separated by commas: the first encrypts, all of
them decrypt. To rotate, put a new key first; a row is encrypted with it when next saved, and
the old key can go once every row has been saved again.
"""

from __future__ import annotations

import logging
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

logger = logging.getLogger(__name__)


class UndecryptableValue(str):
    """What a field reads when none of the configured keys opens the stored value (the key
    was changed without keeping the old one): empty, so callers treat the secret as missing
    and ask for it again, yet distinguishable for a clear message. Saving the row writes the
    stored value back unchanged, so restoring the old key recovers it."""

    ciphertext: str

    def __new__(cls, ciphertext: str) -> UndecryptableValue:
        value = super().__new__(cls, "")
        value.ciphertext = ciphertext
        return value


@cache
def _fernet(keys: str) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.strip()) for key in keys.split(",") if key.strip()])
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"FIELD_ENCRYPTION_KEY must be one or more Fernet keys separated by commas: {exc}"
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(settings.FIELD_ENCRYPTION_KEY)


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """The plain text, or an empty `UndecryptableValue` when no configured key opens it."""
    try:
        return fernet().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError):
        logger.error("An encrypted value could not be decrypted with FIELD_ENCRYPTION_KEY.")
        return UndecryptableValue(token)


class EncryptedTextField(models.TextField):
    """Text stored encrypted; reads decrypt, writes encrypt. Empty stays empty (nothing to
    hide, and "not set" stays visible). Not searchable or orderable by content, by design."""

    def from_db_value(
        self, value: str | None, expression: object, connection: object
    ) -> str | None:
        return decrypt(value) if value else value

    def get_prep_value(self, value: object) -> object:
        value = super().get_prep_value(value)
        if isinstance(value, UndecryptableValue):
            return value.ciphertext
        return encrypt(value) if value else value
