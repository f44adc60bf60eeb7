"""Template context every page needs."""

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, object]:
    return {"SITE_NAME": settings.SITE_NAME, "MICROSOFT_ENABLED": settings.MICROSOFT_ENABLED}
