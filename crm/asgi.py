"""ASGI entry point: Django for HTTP, Channels for WebSockets.

Served by uvicorn. Graph's webhooks are answered ahead of Django (`crm.webhook_asgi`: bursts
of a thousand notifications a second). The ActiveSync endpoint is plain HTTP routed through
Django; its long-held Ping requests are async views, so they hold no thread.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs Django set up first
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from crm.routing import websocket_urlpatterns  # noqa: E402
from crm.webhook_asgi import GraphWebhooks  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": GraphWebhooks(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
