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
        self.retry_after = bounded_retry_after(retry_after)


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


class CallerError(Exception):
    """A request the hub cannot serve, in words for its caller: the text, the input field at fault, an HTTP status."""

    default_status = 400

    def __init__(self, text: str, *, field: str | None = None, status: int | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.field = field
        self.status = self.default_status if status is None else status


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


def retry_after_cap() -> float:
    """The longest Retry-After the hub honours (ICBRIDGE_RETRY_AFTER_MAX_SECONDS, default 1 h)."""
    from django.conf import settings

    return float(getattr(settings, "ICBRIDGE_RETRY_AFTER_MAX_SECONDS", 3600.0))


def bounded_retry_after(seconds: float) -> float:
    """A server's wait, as the hub honours it: from 0 up to the cap (NaN and negatives are 0, 1e12 is the cap)."""
    try:
        value = float(seconds)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    if value != value or value <= 0:  # NaN, or nothing to wait
        return 0.0
    return min(value, retry_after_cap())


def parse_retry_after(value: str | None, default: float = 1.0) -> float:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), at most retry_after_cap().

    A target cannot park a message for years, nor crash the worker with a number no date can hold.
    """
    if not value:
        return default
    try:
        return bounded_retry_after(float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    from django.utils import timezone

    try:
        when = parsedate_to_datetime(value)
        return bounded_retry_after((when - timezone.now()).total_seconds())
    except (TypeError, ValueError, OverflowError, IndexError):
        return default


# What waiting may heal: a source or target that cannot answer now, a database or Redis hiccup. Every
# other failure of an unexpected kind is a property of the message (or the configuration) and is
# rejected: retrying it would fail the same way, for ever.
def is_transient(exc: BaseException) -> bool:
    """Whether an error that is none of the taxonomy's is worth a retry (see above); ours say it themselves."""
    if isinstance(exc, ConnectorError):
        return exc.retryable
    if isinstance(exc, MappingError):
        return False
    import requests
    from django import db
    from redis import RedisError

    return isinstance(exc, OSError | requests.RequestException | RedisError | db.OperationalError | db.InterfaceError)
