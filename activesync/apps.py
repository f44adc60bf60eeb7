from django.apps import AppConfig


class ActivesyncConfig(AppConfig):
    name = "activesync"
    verbose_name = "ActiveSync"
