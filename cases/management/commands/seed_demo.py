"""Create the admin user and demo data, and print how to log in. Safe to run again.

It lives in `cases` because demo data spans every app and `cases` may import the layers below.
"""

from __future__ import annotations

import secrets

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from crm import services
from crm.localenv import append_env_setting
from crm.models import User

ADMIN_EMAIL = "admin@example.com"


class Command(BaseCommand):
    help = "Create an admin user and demo data (idempotent) and print the login."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--email", default=ADMIN_EMAIL)

    def handle(self, *args, email: str, **options) -> None:
        password = self._admin_password()
        with transaction.atomic():
            admin, created = self._ensure_admin(email, password)
            team = services.team_create(name="Support", email="support@example.com")
        state = "created" if created else "exists"
        self.stdout.write(f"Admin user {state}; demo team: {team.name}.")
        self.stdout.write(
            self.style.SUCCESS(
                f"Log in at http://127.0.0.1:8000/ as {admin.email} with password {password}"
                + ("" if created else " (unless you changed it)")
            )
        )

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
