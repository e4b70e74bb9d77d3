"""/api/<route>/ is /api/<route>: the API's routes are slash-less, and a trailing slash is forgiven."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class ApiTrailingSlashMiddleware:
    """Strip one trailing slash under /api/ before the URL is resolved (no redirect: a POST keeps its body)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith("/api/") and path.endswith("/") and len(path) > len("/api/"):
            request.path_info = path[:-1]
        return self.get_response(request)
