"""Placeholder for the Exchange ActiveSync endpoint until the ActiveSync issues fill it.

The path is reserved now so that proxies, the URL map and device profiles can point at it.
It answers in HTTP's own terms: 501 says "not implemented yet", not a server fault.
"""

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def endpoint(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(
        "Exchange ActiveSync is not available on this server yet.\n",
        status=501,
        content_type="text/plain",
    )
    response["Cache-Control"] = "private"
    return response
