"""`manage.py connect_mailbox ADDRESS (--team NAME | --owner AGENT_EMAIL) [--local]`."""

from django.core.management.base import BaseCommand, CommandError

from crm.errors import ServiceError
from crm.models import Team, User
from mailsync import services


class Command(BaseCommand):
    help = (
        "Register a mailbox for a team (shared) or an agent (personal): Microsoft 365 by "
        "default, or --local for one served by the CRM's own SMTP listener."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("address")
        owner = parser.add_mutually_exclusive_group(required=True)
        owner.add_argument("--team", help="Name of the team that shares the mailbox.")
        owner.add_argument("--owner", help="Email of the agent whose own mailbox it is.")
        parser.add_argument("--local", action="store_true", help="Hosted by the CRM itself.")
        parser.add_argument("--name", default="", help="Display name.")

    def handle(self, *args, address: str, team: str | None, owner: str | None, local: bool,
               name: str, **options) -> None:  # fmt: skip
        team_obj = owner_obj = None
        if team:
            team_obj = Team.objects.filter(name__iexact=team.strip()).first()
            if team_obj is None:
                raise CommandError(f"No team named “{team}”.")
        else:
            owner_obj = User.objects.filter(email__iexact=owner.strip()).first()
            if owner_obj is None:
                raise CommandError(f"No agent with the address {owner}.")
        try:
            mailbox = services.mailbox_connect(
                address=address, team=team_obj, owner=owner_obj, local=local, display_name=name
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        kind = "local" if local else "Microsoft 365"
        whose = f"team {team_obj}" if team_obj else f"agent {owner_obj.email}"
        self.stdout.write(f"Connected {kind} mailbox {mailbox.address} for {whose}.")
        if not local:
            self.stdout.write(f"Run `manage.py sync_mail {mailbox.address}` for a first round now.")
