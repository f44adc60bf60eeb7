from __future__ import annotations

from collections.abc import Mapping

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_migrate

VIEW, ADD, CHANGE = "view", "add", "change"
WORK = (VIEW, ADD, CHANGE)

# What a lead needs in the restricted admin on this app's models; the admin's querysets narrow
# it to their teams' cases. Deleting stays with admins; the timeline is read-only for everyone.
LEAD_PERMISSIONS: Mapping[str, tuple[str, ...]] = {
    "case": WORK,
    "task": WORK,
    "casenote": WORK,
    "checklistitem": WORK,
    "customer": WORK,
    "customeremail": WORK,
    "customerphone": WORK,
    "organization": WORK,
    "organizationdomain": WORK,
    "tag": WORK,
    "caselink": WORK,
    "timelineevent": (VIEW,),
    "cannedresponse": WORK,
}


class CasesConfig(AppConfig):
    name = "cases"
    verbose_name = "Cases"

    def ready(self) -> None:
        from cases import signals  # noqa: F401 - connects the SLA notification receiver

        post_migrate.connect(_grant_lead_permissions, sender=self)
        post_migrate.connect(_install_default_schedules, sender=self)
        from mailsync.signals import message_ingested

        message_ingested.connect(_enqueue_intake, dispatch_uid="cases.intake")
        import cases.mail_filters  # noqa: F401 - registers the mail list's `case:` filter


def _enqueue_intake(*, message_id: int, **kwargs: object) -> None:
    """The mail app stored a new message (and committed): intake runs in the worker."""
    from cases.tasks import intake_message

    intake_message.delay(message_id)


def _grant_lead_permissions(sender: AppConfig, **kwargs: object) -> None:
    from crm.apps import leads_group_grant

    leads_group_grant(
        app_config=sender,
        grants=LEAD_PERMISSIONS,
        using=kwargs.get("using", "default"),
        apps=kwargs.get("apps", global_apps),
    )


def _install_default_schedules(**kwargs: object) -> None:
    """Every `migrate` makes sure the SLA tick exists (admins may edit it)."""
    from cases.schedules import default_schedules
    from crm.services import periodic_tasks_install

    periodic_tasks_install(specs=default_schedules(), using=kwargs.get("using", "default"))
