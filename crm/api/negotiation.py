"""Content negotiation for endpoints whose `format` parameter is their own."""

from __future__ import annotations

from typing import Any

from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request


class ParameterNamedFormat(BaseContentNegotiation):
    """Always the first renderer (JSON, errors included). `format` is the endpoint's own
    parameter (`json` or `csv`), validated like the others, where DRF would read it as a
    renderer override and answer an unknown value with 404."""

    def select_parser(self, request: Request, parsers: list) -> Any:
        return parsers[0]

    def select_renderer(
        self, request: Request, renderers: list, format_suffix: str | None = None
    ) -> tuple[Any, str]:
        return renderers[0], renderers[0].media_type
