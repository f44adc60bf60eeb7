"""A WebSocket that proves the socket path works end to end (server, proxy, channel layer)."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class HealthConsumer(AsyncJsonWebsocketConsumer):
    """Answers every message with a round trip through the channel layer."""

    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        await self.send_json(
            {"status": "ok", "authenticated": bool(user and user.is_authenticated)}
        )

    async def receive_json(self, content: object, **kwargs: object) -> None:
        await self.channel_layer.send(self.channel_name, {"type": "echo", "content": content})

    async def echo(self, event: dict[str, object]) -> None:
        await self.send_json({"echo": event["content"]})
