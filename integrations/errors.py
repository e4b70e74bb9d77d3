"""The error taxonomy, in one place. Connectors raise these; the pipeline reads them.

transient  timeouts, 5xx, connection errors               → retry with backoff
throttled  429 / Retry-After                               → retry, never before Retry-After
auth       401/403 after one token refresh                 → failed, operator fixes credentials
rejected   the target refused the data (validation)        → failed, no retry
duplicate  the record is already there                     → delivered, linked to the existing record
conflict   ETag / version mismatch                         → flow's conflict policy
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every classified error; carries what the operator needs to see."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        response_excerpt: str = "",
        request_summary: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.response_excerpt = response_excerpt[:2000]
        self.request_summary = request_summary


class TransientError(ConnectorError):
    retryable = True


class ThrottledError(TransientError):
    def __init__(self, message: str, *, retry_after: float, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = max(0.0, float(retry_after))


class AuthError(ConnectorError):
    pass


class RejectedError(ConnectorError):
    pass


class DuplicateError(ConnectorError):
    def __init__(self, message: str, *, existing_key: str = "", **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.existing_key = existing_key


class ConflictError(ConnectorError):
    def __init__(self, message: str, *, current: dict | None = None, current_etag: str = "", **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.current = current
        self.current_etag = current_etag

    def with_current(self, current: dict | None) -> ConflictError:
        """The same conflict with the target's current record (and its @odata.etag) attached."""
        return ConflictError(
            self.message,
            current=current,
            current_etag=str((current or {}).get("@odata.etag", "")),
            status_code=self.status_code,
            response_excerpt=self.response_excerpt,
            request_summary=self.request_summary,
        )


class MappingError(Exception):
    """A transform failed: says which target field, source path and value."""

    def __init__(self, message: str, *, field: str = "", path: str = "", value: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.path = path
        self.value = value


def error_class_name(exc: BaseException) -> str:
    """module.Class, as stored on Message.last_error_class and Attempt.error_class."""
    cls = type(exc)
    module = cls.__module__.removeprefix("integrations.")
    return f"{module}.{cls.__qualname__}"


def parse_retry_after(value: str | None, default: float = 1.0) -> float:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    from django.utils import timezone

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, (when - timezone.now()).total_seconds())
