"""Create an API key for a user: `manage.py api_token EMAIL --name NAME`."""

from django.core.management.base import BaseCommand, CommandError

from crm import services
from crm.models import User


class Command(BaseCommand):
    help = "Create an API key for an existing user and print it (it is not stored in clear)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument("--name", default="cli")

    def handle(self, *args, email: str, name: str, **options) -> None:
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user with email {email}.")
        _, key = services.api_token_create(user=user, name=name)
        self.stdout.write(key)
