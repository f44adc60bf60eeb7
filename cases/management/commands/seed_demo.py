"""Create the admin user, the default SLA configuration and demo data, and print how to log
in. Safe to run again.

It lives in `cases` because demo data spans every app and `cases` may import the layers below.
"""

from __future__ import annotations

import secrets
import time

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from cases.bulkdata import generate_cases
from cases.demo.seed import demo_data_create
from cases.demo.sla import SlaDefaults, sla_defaults_create
from cases.demo.workflows import demo_rules_create
from cases.services.sla import sla_config_changed
from crm import services
from crm.localenv import append_env_setting
from crm.models import User

ADMIN_EMAIL = "admin@example.com"


class Command(BaseCommand):
    help = (
        "Create an admin user, a default business calendar and SLA policy, and demo data "
        "(idempotent), and print the login."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--email", default=ADMIN_EMAIL)
        parser.add_argument(
            "--no-demo-data",
            action="store_true",
            help="Create only the admin user, the Support team and the default SLA configuration.",
        )
        parser.add_argument(
            "--cases",
            type=int,
            default=0,
            metavar="N",
            help="Also generate N more cases with timelines in bulk (benchmark data; "
            "a million takes a few minutes on PostgreSQL).",
        )

    def handle(
        self, *args, email: str, no_demo_data: bool = False, cases: int = 0, **options
    ) -> None:
        if cases < 0:
            raise CommandError("--cases must be zero or more.")
        password = self._admin_password()
        with transaction.atomic():
            admin, created = self._ensure_admin(email, password)
            team = services.team_create(name="Support", email="support@example.com")
        state = "created" if created else "exists"
        self.stdout.write(f"Admin user {state}; demo team: {team.name}.")
        demo_created = False if no_demo_data else self._demo_data(password)
        if cases:
            self._bulk_cases(cases)
        # After the demo data: its history is backdated after the services wrote it, which the
        # SLA clock must not interleave with; the recompute then runs on the finished rows.
        sla = sla_defaults_create()
        self.stdout.write(_sla_summary(sla))
        if sla.changed or demo_created:
            sla_config_changed()  # open cases get their deadlines in the worker
        self.stdout.write(
            self.style.SUCCESS(
                f"Log in at http://127.0.0.1:8000/ as {admin.email} with password {password}"
                + ("" if created else " (unless you changed it)")
            )
        )

    def _demo_data(self, password: str) -> bool:
        """Organizations, customers, agents, cases and tasks, once: `make run` calls this often.
        True when they were created now."""
        summary = demo_data_create(password=password)
        if summary is None:
            self.stdout.write(
                "Demo data exists already (or the database has cases); nothing added."
            )
            return False
        self.stdout.write(
            f"Demo data: {summary.cases} cases, {summary.tasks} tasks, "
            f"{summary.customers} customers in {summary.seconds:.1f} s"
        )
        agents = ", ".join(f"{agent.email} ({agent.team} {agent.role})" for agent in summary.agents)
        self.stdout.write(f"Demo agents (same password as below): {agents}")
        rules = demo_rules_create()
        if rules:
            self.stdout.write(f"Example workflow rules: {rules} (admin → Workflow rules)")
        return True

    def _bulk_cases(self, count: int) -> None:
        started = time.monotonic()
        try:
            written = generate_cases(count)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Bulk data: {written} cases in {time.monotonic() - started:.1f} s")

    def _admin_password(self) -> str:
        """Generated once and kept in the env file, so a second run can print it again."""
        password = getattr(settings, "DEMO_ADMIN_PASSWORD", "")
        if not password:
            password = secrets.token_urlsafe(12)
            append_env_setting(settings.ENV_FILE, "DEMO_ADMIN_PASSWORD", password)
        return password

    def _ensure_admin(self, email: str, password: str) -> tuple[User, bool]:
        admin = User.objects.filter(email__iexact=email).first()
        created = admin is None
        if created:
            admin = User.objects.create_superuser(email=email, password=password)
        EmailAddress.objects.update_or_create(
            user=admin, email=admin.email, defaults={"verified": True, "primary": True}
        )
        return admin, created


def _sla_summary(sla: SlaDefaults) -> str:
    if not sla.changed:
        return "SLA defaults exist already; nothing changed."
    parts = []
    if sla.calendar_created:
        parts.append(f"default business calendar “{sla.calendar.name}” ({sla.calendar.timezone}, "
                     "Mon–Fri 08:00–18:00)")  # fmt: skip
    if sla.holidays_added:
        parts.append(f"{sla.holidays_added} public holidays")
    if sla.policy_created:
        parts.append(f"catch-all SLA policy “{sla.policy.name}”")
    return f"SLA: created {', '.join(parts)}."
