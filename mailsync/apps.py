from django.apps import AppConfig
from django.db.models.signals import post_migrate


class MailsyncConfig(AppConfig):
    name = "mailsync"
    verbose_name = "Mail"

    def ready(self) -> None:
        from crm.graph import auth, subscriptions
        from mailsync import tasks
        from mailsync.services.delegated import tokens_for_mailbox
        from mailsync.services.sync import SUBSCRIPTION_KIND

        post_migrate.connect(_install_default_schedules, sender=self)
        auth.register_token_resolver(tokens_for_mailbox)
        subscriptions.register(
            SUBSCRIPTION_KIND,
            schedule_round=tasks.schedule_folder_round,
            target_exists=tasks.folder_exists,
        )


def _install_default_schedules(**kwargs: object) -> None:
    """Every `migrate` makes sure the mail sync schedule exists (admins may edit it)."""
    from crm.services import periodic_tasks_install
    from mailsync.schedules import default_schedules

    periodic_tasks_install(specs=default_schedules(), using=kwargs.get("using", "default"))
