"""WebSocket routes of every app, collected here because ASGI routing is project wiring."""

from django.urls import path

from cases.consumers import LiveConsumer
from crm.consumers import HealthConsumer

websocket_urlpatterns = [
    path("ws/health", HealthConsumer.as_asgi()),
    path("ws/live", LiveConsumer.as_asgi()),
]
