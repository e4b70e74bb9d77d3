"""ODataError, and the error bodies of both versions.

v4 (Dataverse, F&O): {"error": {"code": …, "message": …}} (F&O adds "innererror").
v2 (SAP Gateway): {"error": {"code": …, "message": {"lang": …, "value": …}, "innererror": {…}}}.
"""

from __future__ import annotations

from typing import Any


class ODataError(ValueError):
    """A request or an answer that does not follow the protocol; the message says what and where."""


def v4_error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """{"error": {"code", "message", …extra}}."""
    return {"error": {"code": code, "message": message, **extra}}


def v2_error(code: str, message: str, *, lang: str = "en", innererror: dict[str, Any] | None = None) -> dict[str, Any]:
    """SAP Gateway's shape: the message is {"lang", "value"}; innererror carries the details."""
    error: dict[str, Any] = {"code": code, "message": {"lang": lang, "value": message}}
    if innererror is not None:
        error["innererror"] = innererror
    return {"error": error}
