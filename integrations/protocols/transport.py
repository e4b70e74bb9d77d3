"""The one small interface every connector implements.

A connector owns its transport (sessions, tokens, clients) and classifies every
failure once, in raise_for_response / its own error handling, into
integrations.errors. It is built once per System per process and reused.
"""

from __future__ import annotations

import hashlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import requests

from integrations import errors
from integrations.egress import egress_refusal
from integrations.flow_options import FlowOptions
from integrations.protocols import deadline
from integrations.protocols.governor import governor_for

if TYPE_CHECKING:
    from integrations.models import System


@dataclass(frozen=True)
class DeliveryRequest:
    entity: str  # entity set / service on the target (Flow.target_entity)
    operation: str  # Flow.Operation value
    payload: dict[str, Any]
    key: dict[str, Any]  # alternate key values taken from the payload
    idempotency_key: str
    correlation_id: str = ""
    company: str = ""  # dataAreaId / AIF Company / SAP company code
    etag: str = ""  # If-Match for optimistic concurrency; "" sends none
    options: FlowOptions = field(default_factory=FlowOptions)  # the flow's, typed (integrations.flow_options)
    # What our RecordLink says: True, we wrote this record before; False, never; None, unknown.
    # An upsert may then try the likely write first (create or update) and fall back to the other.
    exists: bool | None = None
    # The record as the target answered it when we last wrote it (RecordLink.target_key, canonical form):
    # what a delete addresses, since a deleted source record no longer carries its fields.
    target_key: str = ""
    flow: str = ""  # the flow's slug: with idempotency_key, what names our reference for a keyless create

    def __post_init__(self) -> None:
        # Callers outside the pipeline (traffic, bench, tests) may hand over a flow's options as stored.
        if not isinstance(self.options, FlowOptions):
            object.__setattr__(self, "options", FlowOptions.parse(self.options or {}))

    @property
    def is_delete(self) -> bool:
        return self.operation == DELETE

    @property
    def reference(self) -> str:
        """The hub's reference of this write, stable across retries: what a keyless create leaves at the target.

        Short enough for the reference fields targets keep (S/4 PurchaseOrderByCustomer: 35 characters).
        """
        digest = hashlib.blake2b(f"{self.flow}:{self.idempotency_key}".encode(), digest_size=10).hexdigest()
        return f"ICB-{digest}".upper()

    @property
    def client_id(self) -> str:
        """A primary key GUID derived from the flow and idempotency key: a retried create names the same row."""
        return str(uuid.uuid5(REFERENCE_NAMESPACE, f"{self.flow}:{self.idempotency_key}"))


DELETE = "delete"  # DeliveryRequest.operation of a Delete event; options.on_delete says what it does
REFERENCE_NAMESPACE = uuid.UUID("6f1f4c52-6a0e-5b8e-9d43-1cb1d6e0a9c1")


@dataclass
class DeliveryResult:
    target_key: str
    etag: str = ""
    created: bool = True
    status_code: int | None = None
    request_summary: str = ""
    response_excerpt: str = ""
    body: dict[str, Any] | None = None


@dataclass
class CheckStep:
    name: str
    ok: bool
    detail: str


@dataclass
class ConnectionReport:
    steps: list[CheckStep] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.steps.append(CheckStep(name, ok, detail))
        return ok

    def summary(self) -> str:
        return "; ".join(f"{'OK' if s.ok else 'FAILED'} {s.name}: {s.detail}" for s in self.steps)


# The one status ladder: what an HTTP status means when the vendor's own codes say nothing more.
LADDER: tuple[tuple[Callable[[int], bool], type[errors.ConnectorError]], ...] = (
    (lambda status: status == 409, errors.DuplicateError),
    (lambda status: status == 412, errors.ConflictError),
    (lambda status: status == 408 or status >= 500, errors.TransientError),
)


def classify_status(
    status: int,
    message: str,
    *,
    summary: str,
    excerpt: str,
    retry_after: str | None = None,
    retry_default: float = 1.0,
    vendor_class: type[errors.ConnectorError] | None = None,
    overrides: Mapping[int, type[errors.ConnectorError]] | None = None,
) -> errors.ConnectorError | None:
    """Classify one HTTP answer (or one $batch part) into the taxonomy; None when it succeeded.

    429 is throttled (never before Retry-After) and 401/403 auth, whatever else the body says. Then
    the vendor's own error code (vendor_class), then its per-status differences (overrides), then
    LADDER; anything else is rejected. A vendor connector passes only what its own codes decide.
    """
    if status < 400:
        return None
    kwargs = {"status_code": status, "response_excerpt": excerpt[:2000], "request_summary": summary}
    if status == 429:
        return errors.ThrottledError(
            message, retry_after=errors.parse_retry_after(retry_after, retry_default), **kwargs
        )
    if status in (401, 403):
        return errors.AuthError(message, **kwargs)
    cls = vendor_class or (overrides or {}).get(status)
    if cls is None:
        cls = next((found for matches, found in LADDER if matches(status)), errors.RejectedError)
    return cls(message, **kwargs)


def summary_of(method: str, url: str) -> str:
    """What an Attempt shows of a request: method and URL without the query (it may carry keys)."""
    return f"{method} {url.split('?', 1)[0]}"


class Connector(ABC):
    kind: ClassVar[str]
    # True where deliver_many sends many records in one call ($batch); the pipeline then batches.
    batch_capable: ClassVar[bool] = False

    def __init__(self, system: System) -> None:
        self.system = system
        self.timeout = system.timeout_seconds
        # Rate, concurrency and Retry-After of the target, shared by every worker (protocols.governor).
        self.governor = governor_for(system)

    @abstractmethod
    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Write one record to the target; raise a classified ConnectorError on failure."""

    def deliver_many(self, requests_: Sequence[DeliveryRequest]) -> list[DeliveryResult | errors.ConnectorError]:
        """Write many records; connectors with a batch API override this."""
        results: list[DeliveryResult | errors.ConnectorError] = []
        for request in requests_:
            try:
                results.append(self.deliver(request))
            except errors.ConnectorError as exc:
                results.append(exc)
        return results

    def fetch(self, *, entity: str, key: dict[str, Any], company: str = "") -> dict[str, Any] | None:
        """Read one record by key (reconciliation, conflicts, truncated events); None if absent."""
        raise errors.RejectedError(f"{self.kind} connector cannot read {entity}")

    def fetch_document(
        self, *, entity: str, key: dict[str, Any], company: str = "", lines: Sequence[str] = (), options: Any = None
    ) -> dict[str, Any] | None:
        """A record with its lines (the list fields named, as the flow wrote them), for reconciliation.

        By default the record as fetch() reads it; a connector whose lines live apart (F&O line entities,
        S/4 navigation properties) overrides this to put them back under the header's field names.
        """
        return self.fetch(entity=entity, key=key, company=company)

    def fetch_event_record(self, *, entity: str, record_id: str) -> dict[str, Any] | None:
        """Read the record an event names by its entity and primary id (read-back of partial events)."""
        return self.fetch(entity=entity, key={f"{entity}id": record_id})

    @abstractmethod
    def check_connection(self) -> ConnectionReport:
        """Token, reachability and permissions, in plain words."""

    def close(self) -> None:  # noqa: B027 - optional hook, most connectors hold nothing to release
        """Release sessions; called when the System changes."""

    def retry_after_remaining(self) -> float:
        """Seconds left of the target's Retry-After pause, for every worker (0 when none)."""
        return self.governor.paused_for()

    def note_throttled(self, failure: errors.ConnectorError) -> None:
        """A 429 the target answered pauses every worker for this target until its Retry-After has passed."""
        if isinstance(failure, errors.ThrottledError) and failure.status_code == 429:
            # Capped as the pipeline caps it: one absurd Retry-After must not stop a target for years.
            self.governor.pause(errors.bounded_retry_after(failure.retry_after))

    def transport_error(self, exc: requests.RequestException, summary: str) -> errors.TransientError:
        """A timeout or a connection that failed: worth a retry, whatever the protocol."""
        if isinstance(exc, deadline.DeadlineExceeded):  # the call's total time, not one read's
            text = f"no answer within {exc.budget:.3g} s" if exc.sent else "no time left before the deadline (not sent)"
        elif isinstance(exc, requests.Timeout):
            text = f"no answer within {self.timeout:g} s"
        else:
            text = f"cannot connect ({type(exc).__name__})"
        return errors.TransientError(f"{self.system.name}: {text}", request_summary=summary)


class HttpConnector(Connector):
    """Base for connectors speaking HTTP: one pooled session, classified transport errors."""

    def __init__(self, system: System) -> None:
        super().__init__(system)
        self.base_url = system.base_url.rstrip("/")
        self.session = requests.Session()
        self._egress_refusals: dict[str, str] = {}  # host → why it may not be called ("" = it may)
        # Proxies from the environment are read once here, not on every request (requests re-reads
        # the environment and ~/.netrc per call otherwise, a measurable cost at thousands of calls a minute).
        self.session.proxies = requests.utils.get_environ_proxies(self.base_url)
        self.session.trust_env = False
        # Every call on this session is bounded in total, and by the delivery's deadline (protocols.deadline).
        deadline.mount(self.session, pool_connections=4, pool_maxsize=16, max_retries=0)

    def close(self) -> None:
        self.session.close()

    def _check_egress(self, url: str, summary: str) -> None:
        """Refuse a host outside ICBRIDGE_EGRESS_ALLOW (or link-local); each host is looked up once."""
        host = urlsplit(url).netloc
        refusal = self._egress_refusals.get(host)
        if refusal is None:
            refusal = self._egress_refusals[host] = egress_refusal(url) or ""
        if refusal:
            raise errors.RejectedError(f"{self.system.name}: {refusal}; nothing was sent", request_summary=summary)

    def send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send one request under the target's governor, answer unclassified.

        Every HTTP connector sends through here. The governor may refuse it unsent (ThrottledError:
        paused by a Retry-After, over the rate, no free slot); connection problems and timeouts become
        TransientError; a 429, as the vendor's raise_for_response classifies it, pauses every worker.
        The call, body included, is over within the System's timeout and the delivery's deadline
        (protocols.deadline): a send never outlives the lease of the message it carries.
        """
        kwargs.setdefault("timeout", self.timeout)
        summary = summary_of(method, url)
        self._check_egress(url, summary)
        left = deadline.remaining()
        if left is not None and left <= 0:
            raise errors.TransientError(
                f"{self.system.name}: the delivery's deadline passed before this call",
                request_summary=f"{summary} (not sent)",
            )
        with self.governor.slot(summary, max_wait=left):
            try:
                response = self.session.request(method, url, **kwargs)
            except (requests.Timeout, requests.ConnectionError) as exc:
                raise self.transport_error(exc, summary) from exc
            if response.status_code == 429:
                # Still holding the slot: the pause is stored before the slot goes to the next sender.
                try:
                    self.raise_for_response(response, summary)
                except errors.ConnectorError as failure:  # the caller classifies it again and raises it
                    self.note_throttled(failure)
        return response

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send one request and classify the answer (raise_for_response)."""
        response = self.send(method, url, **kwargs)
        self.raise_for_response(response, summary_of(method, url))
        return response

    def raise_for_response(self, response: requests.Response, summary: str) -> None:
        """Generic HTTP classification; connectors override it with their vendor's error shapes."""
        if response.status_code >= 400:
            self.raise_for_status(
                response.status_code, response.text, summary, retry_after=response.headers.get("Retry-After")
            )

    def raise_for_status(self, status: int, text: str, summary: str, *, retry_after: str | None) -> None:
        """Classify one HTTP status (also the parts of a batch answer) into the error taxonomy."""
        message = f"{self.system.name} answered {status}: {text[:300]}"
        failure = classify_status(status, message, summary=summary, excerpt=text, retry_after=retry_after)
        if failure:
            raise failure
