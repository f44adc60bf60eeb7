"""`manage.py createagent EMAIL --password PASSWORD --team NAME [--role agent|lead|admin]`."""

from django.core.management.base import BaseCommand, CommandError

from crm import services
from crm.choices import Role


class Command(BaseCommand):
    help = (
        "Create or update an agent who can sign in at once (verified address, MFA optional), "
        "creating the team if it is new."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument("--password", help="Set (or reset) the password.")
        parser.add_argument("--team", help="Team (queue) to join; created if new.")
        parser.add_argument("--role", choices=Role.values, default=Role.AGENT)
        parser.add_argument("--first-name", default="")
        parser.add_argument("--last-name", default="")

    def handle(
        self,
        *args,
        email: str,
        password: str | None,
        team: str | None,
        role: str,
        first_name: str,
        last_name: str,
        **options,
    ) -> None:
        if "@" not in email:
            raise CommandError(f"“{email}” is not an email address.")
        team_obj = services.team_create(name=team.strip()) if team else None
        try:
            user, created = services.agent_upsert(
                email=email,
                password=password,
                team=team_obj,
                role=role,
                first_name=first_name,
                last_name=last_name,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if created and not password:
            self.stderr.write("No --password given: the agent must use password reset to sign in.")
        where = f" in team {team_obj}" if team_obj else ""
        self.stdout.write(f"{'Created' if created else 'Updated'} {role} {user.email}{where}.")
