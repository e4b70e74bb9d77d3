"""OpenAPI schema hooks."""

from __future__ import annotations

from typing import Any


def api_paths_only(endpoints: list[tuple[str, str, str, Any]], **kwargs: Any) -> list[tuple[str, str, str, Any]]:
    """Keep the hub's API (/api/...); the sandbox emulators imitate other vendors' APIs and are not ours to publish."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/")]
