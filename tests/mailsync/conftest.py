"""Fixtures of the mail tests: a simulated Microsoft 365 mailbox and the CRM's view of it."""

from __future__ import annotations

import pytest

from mailsync import services
from tests.cases.factories import TeamFactory, make_agent

ADDRESS = "support@contoso.example"


@pytest.fixture
def team(db):
    return TeamFactory(name="Support")


@pytest.fixture
def agent(team):
    return make_agent(team=team)


@pytest.fixture
def graph(graph_simulator, settings):
    """The simulator with quick retries and small pages (so paging is exercised)."""
    settings.GRAPH_RETRY_BASE_SECONDS = 0.01
    settings.GRAPH_RETRY_MAX_SECONDS = 0.05
    settings.MAIL_DELTA_PAGE_SIZE = 10
    return graph_simulator


@pytest.fixture
def remote(graph):
    """The Exchange side of the shared mailbox."""
    return graph.add_mailbox(ADDRESS)


@pytest.fixture
def mailbox(remote, team):
    """The CRM's side: the shared mailbox connected for the team."""
    return services.mailbox_connect(address=ADDRESS, team=team)


def graph_message(n: int = 1, **overrides) -> dict:
    """A message as Graph returns it: a customer's question to the shared mailbox."""
    message_id = f"<q{n}.{id(overrides)}@nordwind.example>"
    message = {
        "subject": f"Invoice {n} is wrong",
        "bodyPreview": "Hello, the invoice lists two licences",
        "body": {"contentType": "html", "content": "<p>Hello,</p><p>the invoice lists two</p>"},
        "from": {"emailAddress": {"name": "Anna Berg", "address": "Anna.Berg@nordwind.example"}},
        "sender": {"emailAddress": {"name": "Anna Berg", "address": "anna.berg@nordwind.example"}},
        "toRecipients": [{"emailAddress": {"name": "Support", "address": ADDRESS}}],
        "ccRecipients": [{"emailAddress": {"name": "Jon", "address": "jon@nordwind.example"}}],
        "bccRecipients": [],
        "replyTo": [],
        "receivedDateTime": f"2026-11-{10 + n % 10:02d}T09:{n % 60:02d}:00Z",
        "sentDateTime": f"2026-11-{10 + n % 10:02d}T09:{n % 60:02d}:00Z",
        "internetMessageId": message_id,
        "conversationId": f"conv-{n}",
        "importance": "normal",
        "isRead": False,
        "isDraft": False,
        "flag": {"flagStatus": "notFlagged"},
        "categories": [],
        "hasAttachments": False,
        "internetMessageHeaders": [
            {"name": "Message-ID", "value": message_id},
            {"name": "In-Reply-To", "value": "<earlier@contoso.example>"},
            {
                "name": "References",
                "value": "<first@contoso.example>\r\n <earlier@contoso.example>",
            },
            {"name": "X-Mailer", "value": "Outlook"},
        ],
    }
    message.update(overrides)
    return message
