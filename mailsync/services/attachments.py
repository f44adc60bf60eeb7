"""Attachment bytes, fetched from Graph on first use and kept in Django's storage.

Sync stores only metadata: most attachments are never opened, and fetching them all would
multiply the initial sync's traffic. The bytes are streamed to a temporary file (a 150 MB
attachment never sits in memory) and then saved; concurrent first uses may both fetch, and
the second simply finds the file saved (the row is locked while the name is written).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import PurePosixPath
from urllib.parse import quote

from django.core.files import File
from django.db import transaction
from django.utils import timezone

from crm.graph.client import GraphClient
from mailsync.errors import MailboxError
from mailsync.models import Attachment

CHUNK = 1024 * 1024
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}")


def storage_name(name: str) -> str:
    """A safe file name of our own for an attachment's bytes (`part.pdf`): the sender's name
    is only ever shown, never used as a path (`../`, control characters, 300 characters)."""
    suffix = PurePosixPath(name.replace("\\", "/")).suffix
    return f"part{suffix.lower() if _EXTENSION.fullmatch(suffix) else ''}"


def attachment_content_ensure(
    *, attachment: Attachment, client: GraphClient | None = None
) -> Attachment:
    """The attachment with its bytes in storage, fetching them from Graph if not yet there."""
    if attachment.content:
        return attachment
    message = attachment.message
    mailbox = message.mailbox
    if not (mailbox.is_m365 and message.graph_id and attachment.graph_id):
        raise MailboxError("This attachment's content is not available.")
    client = client or GraphClient(mailbox=mailbox.address)
    url = (
        f"users/{quote(mailbox.address)}/messages/{quote(message.graph_id)}"
        f"/attachments/{quote(attachment.graph_id)}/$value"
    )
    with tempfile.TemporaryFile() as spool:
        response = client.request(
            "GET", url, stream=True, headers={"Prefer": 'IdType="ImmutableId"'}
        )
        with response:
            for chunk in response.iter_content(CHUNK):
                spool.write(chunk)
        spool.seek(0)
        with transaction.atomic():
            locked = Attachment.objects.select_for_update().get(pk=attachment.pk)
            if not locked.content:
                locked.content.save(storage_name(attachment.name), File(spool), save=False)
                locked.fetched_at = timezone.now()
                locked.save(update_fields=["content", "fetched_at"])
    return locked
