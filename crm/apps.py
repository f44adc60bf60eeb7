from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = "Access and system"

    def ready(self) -> None:
        post_migrate.connect(_install_default_schedules, sender=self)


def _install_default_schedules(**kwargs: object) -> None:
    """Every `migrate` makes sure the kernel's periodic tasks exist (admins may edit them)."""
    from crm.schedules import default_schedules
    from crm.services import periodic_tasks_install

    periodic_tasks_install(specs=default_schedules(), using=kwargs.get("using", "default"))
