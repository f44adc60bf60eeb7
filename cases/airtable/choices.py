"""Choices of the Airtable export."""

from __future__ import annotations

from django.db import models


class ExportSource(models.TextChoices):
    """What a column of the Airtable table is filled with: a statistic of the recipient
    (`mailsync.selectors.recipient_stats`) or a field of the customer whose email the
    recipient is, and of that customer's organization (empty when there is none)."""

    ADDRESS = "address", "Recipient address"
    DOMAIN = "domain", "Recipient domain"
    SENT_TO = "sent_to", "Mails sent (To)"
    SENT_CC = "sent_cc", "Mails sent (Cc)"
    SENT_BCC = "sent_bcc", "Mails sent (Bcc)"
    SENT_TOTAL = "sent_total", "Mails sent (all)"
    FIRST_SENT_AT = "first_sent_at", "First mail sent at"
    LAST_SENT_AT = "last_sent_at", "Last mail sent at"
    CUSTOMER_ID = "customer_id", "Customer id"
    CUSTOMER_NAME = "customer_name", "Customer name"
    CUSTOMER_VIP = "customer_vip", "Customer is VIP"
    ORGANIZATION_ID = "organization_id", "Organization id"
    ORGANIZATION_NAME = "organization_name", "Organization name"
    ORGANIZATION_TIER = "organization_tier", "Organization tier"


STAT_SOURCES = frozenset(
    {
        ExportSource.ADDRESS,
        ExportSource.DOMAIN,
        ExportSource.SENT_TO,
        ExportSource.SENT_CC,
        ExportSource.SENT_BCC,
        ExportSource.SENT_TOTAL,
        ExportSource.FIRST_SENT_AT,
        ExportSource.LAST_SENT_AT,
    }
)
# A merge key must tell records apart: one row per recipient, so only the address does.
MERGE_SOURCES = frozenset({ExportSource.ADDRESS})


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
