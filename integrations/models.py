"""The records of the hub: systems, company links, flows, mappings, messages.

Model methods are small and make no network calls; the logic lives in services.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from encrypted_fields.fields import EncryptedTextField

from integrations.flow_options import FlowOptions, options_problems, parse_options_json
from integrations.flow_schedule import schedule_problem
from integrations.kinds import KINDS
from integrations.model_bases import AppendOnlyModel, PausableModel, TimeStampedModel


class System(PausableModel):
    """One external endpoint that icbridge reads from or writes to."""

    # One member per registered kind (integrations.kinds): System.Kind.FINOPS == "finops".
    Kind = models.TextChoices("Kind", [(kind.upper(), (kind, label)) for kind, label in KINDS.items()])

    class AuthType(models.TextChoices):
        NONE = "none", "None"
        BASIC = "basic", "Basic (user name + password)"
        CLIENT_CREDENTIALS = "client_credentials", "OAuth2 client credentials"
        NTLM = "ntlm", "Windows (NTLM: DOMAIN\\user + password)"
        USER_PASSWORD = "user_password", "Azure AD user token (service account; App Proxy)"

    # Where and as whom the hub connects, then how hard it may push: listed, in this order, by the
    # console form, the API and the templates, each adding its own (the secret, settings, timestamps).
    CONNECTION_FIELDS = ("kind", "base_url", "auth_type", "auth_url", "client_id")
    LIMIT_FIELDS = ("timeout_seconds", "rate_limit_per_second", "max_concurrency", "batch_size")

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=50, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    base_url = models.URLField(max_length=500, help_text="Root URL of the service, e.g. https://org.crm4.dynamics.com")
    auth_type = models.CharField(max_length=30, choices=AuthType.choices, default=AuthType.NONE)
    auth_url = models.URLField(
        max_length=500, blank=True, help_text="OAuth2 authority (Azure AD tenant URL) or token endpoint."
    )
    client_id = models.CharField(max_length=200, blank=True, help_text="OAuth2 client id, or the basic-auth user.")
    secret = EncryptedTextField(blank=True, null=True, help_text="Client secret or password; encrypted at rest.")
    scope = models.CharField(
        max_length=500, blank=True, help_text="OAuth2 scope, e.g. https://org.crm.dynamics.com/.default"
    )
    settings = models.JSONField(default=dict, blank=True, help_text="Kind-specific settings (deep links, API paths…).")
    timeout_seconds = models.FloatField(default=30.0)
    rate_limit_per_second = models.FloatField(null=True, blank=True, help_text="Empty: no client-side limit.")
    max_concurrency = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Requests in flight at once to this target, from every worker together. Empty: no limit.",
    )
    batch_size = models.PositiveIntegerField(default=100)
    paused_at = models.DateTimeField(
        null=True, blank=True, help_text="Paused: events to and from it are accepted and held until resumed."
    )

    def __str__(self) -> str:
        return self.name

    @property
    def secret_hint(self) -> str:
        """The secret as an operator may see it: set or not, never the value."""
        return "•••••• (set)" if self.secret else "(not set)"


class CompanyLink(TimeStampedModel):
    """A legal entity on one system paired with one on another (DK01@AX ↔ SE01@F&O)."""

    name = models.CharField(max_length=100, unique=True)
    system_a = models.ForeignKey(System, on_delete=models.PROTECT, related_name="company_links_a")
    company_a = models.CharField(max_length=20, help_text="Legal entity / dataAreaId / company code on system A.")
    customer_in_a_for_b = models.CharField(
        max_length=40, blank=True, help_text="Customer account company A uses for B."
    )
    vendor_in_a_for_b = models.CharField(max_length=40, blank=True, help_text="Vendor account company A uses for B.")
    system_b = models.ForeignKey(System, on_delete=models.PROTECT, related_name="company_links_b")
    company_b = models.CharField(max_length=20)
    customer_in_b_for_a = models.CharField(
        max_length=40, blank=True, help_text="Customer account company B uses for A."
    )
    vendor_in_b_for_a = models.CharField(max_length=40, blank=True, help_text="Vendor account company B uses for A.")
    currency = models.CharField(max_length=3, blank=True)
    defaults = models.JSONField(default=dict, blank=True, help_text="Extra constants for mappings (site, warehouse…).")

    def __str__(self) -> str:
        return f"{self.company_a}@{self.system_a} ↔ {self.company_b}@{self.system_b}"

    def context_for(self, source: System) -> dict[str, Any]:
        """The values a mapping sees, seen from the side that sends."""
        a_sends = source.pk == self.system_a_id
        values = {
            "source_company": self.company_a if a_sends else self.company_b,
            "target_company": self.company_b if a_sends else self.company_a,
            # Accounts on the receiving side that stand for the sending company, and back.
            "target_customer_for_source": self.customer_in_b_for_a if a_sends else self.customer_in_a_for_b,
            "target_vendor_for_source": self.vendor_in_b_for_a if a_sends else self.vendor_in_a_for_b,
            "source_customer_for_target": self.customer_in_a_for_b if a_sends else self.customer_in_b_for_a,
            "source_vendor_for_target": self.vendor_in_a_for_b if a_sends else self.vendor_in_b_for_a,
            "currency": self.currency,
        }
        return {**self.defaults, **values}


def default_retry_policy() -> dict[str, Any]:
    # Delay in seconds from the given attempt on: attempts 1-2 wait 10 s, 3-4 wait 60 s, 5+ wait 600 s.
    return {"max_attempts": 8, "backoff": {"1": 10, "3": 60, "5": 600}, "jitter": 0.2}


class Flow(PausableModel):
    """One directed exchange of one entity from a source system to a target system."""

    class Trigger(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        BUSINESS_EVENT = "business_event", "Business event"
        POLL = "poll", "Poll"
        SCHEDULE = "schedule", "Schedule"

    class Operation(models.TextChoices):
        UPSERT = "upsert", "Upsert by alternate key"
        CREATE = "create", "Create"
        UPDATE = "update", "Update"
        ACTION = "action", "Call an operation / service"

    class Master(models.TextChoices):
        SOURCE = "source", "Source system owns the record"
        TARGET = "target", "Target system owns the record"

    class ConflictPolicy(models.TextChoices):
        MASTER_WINS = "master_wins", "Master wins"
        PARK = "park", "Park as conflict for an operator"

    name = models.CharField(max_length=150)
    slug = models.SlugField(max_length=80, unique=True)
    entity = models.CharField(max_length=60, help_text="Business entity, e.g. salesorder, account.")
    source = models.ForeignKey(System, on_delete=models.PROTECT, related_name="flows_out")
    target = models.ForeignKey(System, on_delete=models.PROTECT, related_name="flows_in")
    company_link = models.ForeignKey(CompanyLink, on_delete=models.PROTECT, null=True, blank=True, related_name="flows")
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.WEBHOOK)
    schedule = models.ForeignKey(  # when a "schedule" flow runs; its beat task: integrations.polling.schedules
        "django_celery_beat.CrontabSchedule", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    target_entity = models.CharField(max_length=120, help_text="Entity set / service the target exposes.")
    target_operation = models.CharField(max_length=20, choices=Operation.choices, default=Operation.UPSERT)
    target_key_fields = models.JSONField(
        default=list, blank=True, help_text="Fields of the mapped payload that form the target's alternate key."
    )
    mapping_spec = models.JSONField(default=dict, blank=True)
    mapping_version = models.PositiveIntegerField(default=1)
    master = models.CharField(max_length=10, choices=Master.choices, default=Master.SOURCE)
    conflict_policy = models.CharField(
        max_length=20, choices=ConflictPolicy.choices, default=ConflictPolicy.MASTER_WINS
    )
    retry_policy = models.JSONField(default=default_retry_policy, blank=True)
    options = models.JSONField(
        default=dict, blank=True, help_text="The flow's options (docs/flow-options.md); validated on save."
    )
    paused_at = models.DateTimeField(
        null=True, blank=True, help_text="Paused: events are accepted (202) and held until resumed."
    )

    def __str__(self) -> str:
        return f"{self.source} → {self.target} {self.entity}"

    @property
    def is_held(self) -> bool:
        """Paused itself, or its source or target is: its messages wait (needs source/target loaded)."""
        return bool(self.paused_at or self.source.paused_at or self.target.paused_at)

    @property
    def opts(self) -> FlowOptions:
        """The options, typed (integrations.flow_options); FlowOptionsError naming the key if they do not fit.

        Parsed once per value (and per process, see parse_options_json): the parse is kept with the JSON
        it read, so assigning or editing options in place is seen on the next read.
        """
        # Compared as JSON text, not ==: 1 == True, yet they are different options.
        seen = json.dumps(self.options, default=str)
        cached = self.__dict__.get("_opts_cache")
        if cached is not None and cached[0] == seen:
            return cached[1]
        parsed = parse_options_json(seen, f"flow {self.slug}")
        self.__dict__["_opts_cache"] = (seen, parsed)
        return parsed

    def clean(self) -> None:
        super().clean()
        if problems := options_problems(self.options):
            raise ValidationError({"options": problems})
        if problem := schedule_problem(trigger=self.trigger, has_schedule=self.schedule_id is not None):
            raise ValidationError({"schedule": problem})
        if (self.options or {}).get("listing") and self.trigger != self.Trigger.BUSINESS_EVENT:
            # A poll flow lists what its poll reads (options.poll), a webhook flow its table.
            raise ValidationError({"options": ["options.listing: only a business_event flow names its listing"]})


class MappingVersion(models.Model):
    """Every saved mapping spec of a flow, kept so a message can say which one it used."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="mapping_versions")
    version = models.PositiveIntegerField()
    spec = models.JSONField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    comment = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["flow", "-version"]
        constraints = [models.UniqueConstraint(fields=["flow", "version"], name="mapping_version_unique_per_flow")]

    def __str__(self) -> str:
        return f"{self.flow.slug} v{self.version}"


class ValueMap(TimeStampedModel):
    """A lookup table used by mappings, e.g. D365 unit of measure → S/4 BaseUnit."""

    name = models.SlugField(max_length=80, unique=True)
    description = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return self.name

    def as_dict(self) -> dict[str, str]:
        return dict(self.entries.values_list("source_value", "target_value"))


class ValueMapEntry(models.Model):
    value_map = models.ForeignKey(ValueMap, on_delete=models.CASCADE, related_name="entries")
    source_value = models.CharField(max_length=200)
    target_value = models.CharField(max_length=200)

    class Meta:
        ordering = ["value_map", "source_value"]
        constraints = [
            models.UniqueConstraint(fields=["value_map", "source_value"], name="value_map_entry_unique_source")
        ]

    def __str__(self) -> str:
        return f"{self.source_value} → {self.target_value}"


class Message(TimeStampedModel):
    """One business event carried by one flow; the outbox row, written once before anything is queued."""

    class Status(models.TextChoices):  # labelled by name: "Received"…
        RECEIVED = "received"
        TRANSFORMED = "transformed"
        DELIVERING = "delivering"
        DELIVERED = "delivered"
        RETRYING = "retrying"
        FAILED = "failed"
        DEAD = "dead"
        SKIPPED = "skipped"
        CONFLICT = "conflict"
        DISCARDED = "discarded"

    # Statuses a worker may claim for delivery.
    DELIVERABLE = (Status.RECEIVED, Status.TRANSFORMED, Status.RETRYING)
    NEEDS_ATTENTION = (Status.FAILED, Status.DEAD, Status.CONFLICT)
    TERMINAL = (Status.DELIVERED, Status.SKIPPED, Status.DISCARDED)

    flow = models.ForeignKey(Flow, on_delete=models.PROTECT, related_name="messages")
    idempotency_key = models.CharField(max_length=255)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    payload_in = models.JSONField(help_text="The event as received; never changed after ingest.")
    payload_fetched = models.JSONField(
        null=True,
        blank=True,
        help_text="What the source or a read-back added before mapping (top-level keys over payload_in).",
    )
    payload_out = models.JSONField(null=True, blank=True)
    headers = models.JSONField(default=dict, blank=True, help_text="Event metadata from the sender.")
    mapping_version = models.PositiveIntegerField(null=True, blank=True)
    source_record_key = models.CharField(max_length=255, blank=True, db_index=True)
    # Comparable version of the source record (row version or event time in µs): never go backwards.
    source_version = models.BigIntegerField(null=True, blank=True)
    target_record_key = models.CharField(max_length=255, blank=True, db_index=True)
    correlation_id = models.CharField(max_length=100, blank=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When a task was last queued for it.")
    lease_expires_at = models.DateTimeField(null=True, blank=True, help_text="A delivering worker's claim ends here.")
    force_overwrite = models.BooleanField(default=False, help_text="Deliver without If-Match (operator chose source).")
    target_snapshot = models.JSONField(
        null=True, blank=True, help_text="The target's version of the record when a conflict was found."
    )
    last_error_class = models.CharField(max_length=120, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    replay_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replays")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["flow", "idempotency_key"], name="message_unique_key_per_flow"),
        ]
        indexes = [
            # Read by the sweeper: only rows that can still be delivered.
            models.Index(
                fields=["next_attempt_at"],
                name="message_due",
                condition=Q(status__in=["received", "transformed", "retrying"]),
            ),
            # Read by the sweeper: claims a killed worker left behind.
            models.Index(fields=["lease_expires_at"], name="message_leased", condition=Q(status="delivering")),
            models.Index(fields=["status", "-created_at"], name="message_status_recent"),
            models.Index(fields=["flow", "source_record_key"], name="message_flow_record"),
        ]

    def __str__(self) -> str:
        return f"{self.flow} {self.source_record_key or self.idempotency_key}"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL


class Attempt(AppendOnlyModel):
    """One delivery try of a message. Append-only: written once, with its outcome."""

    class Outcome(models.TextChoices):
        DELIVERED = "delivered", "Delivered"
        RETRY = "retry", "Will retry"
        DEAD = "dead", "Dead (attempts exhausted)"
        FAILED = "failed", "Failed (no retry)"
        CONFLICT = "conflict", "Conflict"
        DUPLICATE = "duplicate", "Already at target"
        INTERRUPTED = "interrupted", "Interrupted (worker lost)"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempt_set")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    request_summary = models.TextField(blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error_class = models.CharField(max_length=120, blank=True)
    error_text = models.TextField(blank=True)

    class Meta:
        ordering = ["message", "started_at"]

    def __str__(self) -> str:
        return f"attempt {self.number} of message {self.message_id}: {self.outcome}"


class RecordLink(TimeStampedModel):
    """Cross-reference of a source record to its target record, as last synced by a flow."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="record_links")
    source_key = models.CharField(max_length=255)
    target_key = models.CharField(max_length=255, blank=True)
    source_version = models.BigIntegerField(null=True, blank=True)
    target_etag = models.CharField(max_length=200, blank=True)
    content_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the payload last written.")
    correlation_id = models.CharField(max_length=100, blank=True, db_index=True)
    last_message = models.ForeignKey(Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["flow", "source_key"], name="record_link_unique_source")]
        indexes = [models.Index(fields=["flow", "target_key"], name="record_link_target")]

    def __str__(self) -> str:
        return f"{self.flow.slug}: {self.source_key} → {self.target_key}"


class AuditEntry(AppendOnlyModel):
    """One operator action. Read-only once written."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    actor_name = models.CharField(max_length=150, help_text="Kept when the user is deleted.")
    action = models.CharField(max_length=40, db_index=True)
    object_type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=64)
    message = models.ForeignKey(Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit")
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        reason = f": {self.reason}" if self.reason else ""
        return f"{self.action} {self.object_type} {self.object_id} by {self.actor_name}{reason}"


class InboundEndpoint(TimeStampedModel):
    """How events reach the hub for one flow (or one system): who may send, and where an event's id is.

    Read by integrations.api.webhooks on every inbound request; one row per flow or per system.
    """

    class AuthType(models.TextChoices):
        NONE = "none", "None (sandbox only)"
        HEADER = "header", "Shared secret header (Dataverse HttpHeader)"
        QUERY_KEY = "query_key", "Query key (Dataverse WebhookKey ?code=)"
        HMAC = "hmac", "HMAC-SHA256 signature with timestamp"
        BASIC = "basic", "Basic (user name + password)"
        BEARER = "bearer", "OAuth2 bearer JWT"

    flow = models.OneToOneField(Flow, on_delete=models.CASCADE, null=True, blank=True, related_name="inbound")
    system = models.OneToOneField(System, on_delete=models.CASCADE, null=True, blank=True, related_name="inbound")
    auth_type = models.CharField(max_length=20, choices=AuthType.choices, default=AuthType.HEADER)
    # header: the header carrying the secret; hmac: the signature header; query_key: the query parameter.
    credential_name = models.CharField(
        max_length=100, blank=True, help_text="Header or query parameter name; empty: the mode's default."
    )
    username = models.CharField(max_length=150, blank=True, help_text="Basic auth user name.")
    secret = EncryptedTextField(
        blank=True, null=True, help_text="Shared secret, HMAC key, password or HS256 key; encrypted at rest."
    )
    timestamp_tolerance_seconds = models.PositiveIntegerField(default=300, help_text="HMAC: accepted clock skew.")
    jwt_issuer = models.CharField(max_length=300, blank=True, help_text="Bearer: expected iss claim.")
    jwt_audience = models.CharField(max_length=300, blank=True, help_text="Bearer: expected aud claim.")
    jwks_url = models.URLField(max_length=500, blank=True, help_text="Bearer: JWKS of the issuer (RS256).")
    id_pointer = models.CharField(
        max_length=200, blank=True, help_text="Generic JSON: JSON pointer of the event id, e.g. /order/id."
    )
    id_header = models.CharField(max_length=100, blank=True, help_text="Generic JSON: header holding the event id.")
    record_key_pointer = models.CharField(
        max_length=200,
        blank=True,
        help_text="JSON pointer of the source record key, e.g. /SalesOrderNumber; several, comma-separated, make a "
        "composite key joined by | (/SalesOrderNumber,/HoldCode → SO-1|Credit).",
    )
    version_pointer = models.CharField(
        max_length=200, blank=True, help_text="Generic JSON: JSON pointer of a comparable record version."
    )
    allowed_origins = models.JSONField(
        default=list, blank=True, help_text="CloudEvents webhook handshake: origins allowed; empty allows any."
    )
    max_body_bytes = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the global limit.")
    throttle_rate = models.CharField(
        max_length=20, blank=True, help_text="Requests allowed, e.g. 100/s or 5000/min; empty: the global rate."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(flow__isnull=False, system__isnull=True) | Q(flow__isnull=True, system__isnull=False),
                name="inbound_endpoint_flow_or_system",
            )
        ]

    def __str__(self) -> str:
        owner = f"flow {self.flow}" if self.flow_id else f"system {self.system}"
        return f"inbound {self.get_auth_type_display()} for {owner}"

    def clean(self) -> None:
        super().clean()
        if self.record_key_pointer and any(not part.strip() for part in self.record_key_pointer.split(",")):
            raise ValidationError(
                {
                    "record_key_pointer": "Name each key field's JSON pointer, separated by commas (/A,/B); "
                    f"'{self.record_key_pointer}' has an empty one."
                }  # fmt: skip
            )


class AxPollCursor(models.Model):
    """Where the AX 2012 poller of one flow stands: getChangedKeys asks for changes since changed_since."""

    flow = models.OneToOneField(Flow, on_delete=models.CASCADE, related_name="ax_poll_cursor")
    changed_since = models.DateTimeField(null=True, blank=True, help_text="Empty: the first poll reads everything.")
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_keys = models.PositiveIntegerField(default=0, help_text="Changed keys the last poll found.")
    last_error = models.TextField(blank=True)
    polling_until = models.DateTimeField(
        null=True, blank=True, help_text="A poll holds the cursor until then (integrations.polling.cursors)."
    )
    delta_link = models.TextField(
        blank=True, help_text="Where a change-tracking source (Dataverse) resumes: its @odata.deltaLink."
    )

    def __str__(self) -> str:
        return f"AX poll cursor of {self.flow}: since {self.changed_since or 'the beginning'}"


# Kept in its own module for size; imported here so Django registers it with the app.
from integrations.load_models import LoadRun  # noqa: E402, F401
