"""Precomputing the pages' cached figures (`cases.tasks.analytics_warm`, every 5 minutes).

The dashboard and the reports define their figures, so their warm-up lives beside them: for
every active agent who signed in within `ANALYTICS_WARM_DAYS`, the figures of the dashboard
and of the report `/reports/` opens with are computed as the page would compute them, at once
(`analytics_inline`). Figures whose change numbers did not move cost a cache read, so a quiet
helpdesk costs next to nothing; a busy one recomputes each agent's figures once per round
instead of making the first viewer after a change wait for them.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from cases.analytics_cache import analytics_inline
from cases.web.dashboard import dashboard_warm
from cases.web.reports import reports_warm
from crm.models import User

logger = logging.getLogger(__name__)


def analytics_warm_recent() -> int:
    """Warm every recently signed-in agent's figures; returns how many agents."""
    now = timezone.now()
    since = now - timedelta(days=settings.ANALYTICS_WARM_DAYS)
    agents = User.objects.filter(is_active=True, last_login__gte=since).order_by("pk")
    count = 0
    with analytics_inline():
        for agent in agents.iterator():
            try:
                dashboard_warm(agent, now=now)
                reports_warm(agent, now=now)
            except Exception:  # one agent's failure must not starve the others
                logger.exception("Warming the analytics of agent %s failed", agent.pk)
                continue
            count += 1
    return count
