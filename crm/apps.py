from __future__ import annotations

from collections.abc import Mapping

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_migrate

VIEW, ADD, CHANGE, DELETE = "view", "add", "change", "delete"

# What a lead needs in the restricted admin on this app's models; the admin's querysets narrow
# it to the teams they lead.
LEAD_PERMISSIONS: Mapping[str, tuple[str, ...]] = {
    "team": (VIEW,),
    "teammembership": (VIEW, ADD, CHANGE, DELETE),
    "agentprofile": (VIEW, CHANGE),
    "user": (VIEW,),
}


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = "Access and system"

    def ready(self) -> None:
        post_migrate.connect(_install_default_schedules, sender=self)
        post_migrate.connect(_grant_lead_permissions, sender=self)


def _install_default_schedules(**kwargs: object) -> None:
    """Every `migrate` makes sure the kernel's periodic tasks exist (admins may edit them)."""
    from crm.schedules import default_schedules
    from crm.services import periodic_tasks_install

    periodic_tasks_install(specs=default_schedules(), using=kwargs.get("using", "default"))


def _grant_lead_permissions(sender: AppConfig, **kwargs: object) -> None:
    leads_group_grant(
        app_config=sender,
        grants=LEAD_PERMISSIONS,
        using=kwargs.get("using", "default"),
        apps=kwargs.get("apps", global_apps),
    )


def leads_group_grant(
    *,
    app_config: AppConfig,
    grants: Mapping[str, tuple[str, ...]],
    using: str = "default",
    apps=global_apps,
) -> None:
    """Make sure the "Leads" group exists and holds `grants` ({model: actions}) on the app.

    Runs in `post_migrate`, possibly before contrib.auth's own handler created this app's
    permissions, so it creates them first. Permissions are added, never removed: an admin may
    give leads more. Models the migrated state does not have yet are skipped.
    """
    from django.contrib.auth.management import create_permissions

    from crm.services import LEADS_GROUP

    create_permissions(app_config, verbosity=0, using=using, apps=apps)
    try:
        group_model = apps.get_model("auth", "Group")
        permission_model = apps.get_model("auth", "Permission")
    except LookupError:
        return
    codenames = [f"{action}_{model}" for model, actions in grants.items() for action in actions]
    permissions = permission_model.objects.using(using).filter(
        content_type__app_label=app_config.label, codename__in=codenames
    )
    group, _ = group_model.objects.using(using).get_or_create(name=LEADS_GROUP)
    group.permissions.add(*permissions)
