"""Console pages for Messages: the list (what needs attention first), the detail page and its actions.

Operators land on what needs attention (failed, dead, conflict, and retrying past the threshold of
integrations.selectors.overview). Every action asks for a reason and calls the same operator services
as the API, which write the audit rows. Changing a message needs integrations.change_message (the
operator role); the auditor's view permission shows everything and offers no action. Attempts, the
audit log and record links are in integrations.admin.records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html

from integrations.admin.common import (  # noqa: F401 - EstimatedCountPaginator is imported from here too
    EstimatedCountPaginator,
    NeedsAttentionFilter,
    ReasonForm,
    ReplayForm,
    ResolveForm,
    _payload,
    ago,
    link_to_message,
    pretty_json,
)
from integrations.models import AuditEntry, MappingVersion, Message, RecordLink
from integrations.pipeline import operator
from integrations.selectors import chains
from integrations.selectors.conflicts import conflict_diff
from integrations.selectors.search import messages_search

Status = Message.Status
BULK_BATCH = 500
# "Retry all matching" leaves finished messages alone unless asked: a skipped echo or a delivered
# message retried is work done twice, or a write the target did not need.
FINAL = (Status.SKIPPED,)
ERROR_CHARS = 90


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "status_badge",
        "flow_name",
        "record",
        "attempts",
        "received",
        "last_error_short",
    )
    list_display_links = ("id", "status_badge")
    list_filter = (NeedsAttentionFilter, "status", "flow", "flow__target", "flow__source", "created_at")
    list_select_related = ("flow__source", "flow__target")
    # The search is integrations.selectors.search (get_search_results): exact keys, or a business
    # document number anywhere in the payloads, read through trigram indexes on PostgreSQL.
    search_fields = ("=correlation_id",)
    search_help_text = (
        "An order, customer or invoice number (found in the payloads), or an exact correlation id, "
        "record id or idempotency key."
    )
    # No COUNT(*) of the whole table on every page, no per-filter facet counts, and no date
    # hierarchy (its DISTINCT over dates scans the table): the created_at filter is cheap instead.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    list_per_page = 50
    ordering = ("-created_at",)
    change_form_template = "admin/integrations/message/change_form.html"
    change_list_template = "admin/integrations/message/change_list.html"
    readonly_fields = (
        "flow",
        "status_badge",
        "idempotency_key",
        "correlation_link",
        "source_record_key",
        "source_version",
        "target_record_key",
        "mapping_version_link",
        "attempts",
        "next_attempt_at",
        "last_error_class",
        "last_error",
        "created_at",
        "delivered_at",
        "replay_of_link",
        "replays_links",
        "payload_in_pretty",
        "payload_fetched_pretty",
        "payload_out_pretty",
        "headers_pretty",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("flow", "status_badge"),
                    ("idempotency_key", "correlation_link"),
                    ("source_record_key", "source_version", "target_record_key"),
                    ("mapping_version_link", "attempts", "next_attempt_at"),
                    ("created_at", "delivered_at"),
                    ("replay_of_link", "replays_links"),
                )
            },
        ),
        ("Last error", {"fields": ("last_error_class", "last_error")}),
        (
            "Payloads",
            {"fields": (("payload_in_pretty", "payload_fetched_pretty"), "payload_out_pretty", "headers_pretty")},
        ),
    )
    actions = ["retry_selected", "discard_selected"]

    # --- columns -------------------------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Message) -> str:
        return format_html("<span class='icb-badge {}'>{}</span>", obj.status, obj.get_status_display())

    @admin.display(description="flow", ordering="flow__name")
    def flow_name(self, obj: Message) -> str:
        return format_html("<span class='icb-flow' title='{}'>{}</span>", str(obj.flow), obj.flow.name)

    @admin.display(description="record", ordering="source_record_key")
    def record(self, obj: Message) -> str:
        key = obj.source_record_key or obj.target_record_key
        return format_html("<span class='icb-key' title='{}'>{}</span>", key, key) if key else "—"

    @admin.display(description="received", ordering="created_at")
    def received(self, obj: Message) -> str:
        return ago(obj.created_at)

    @admin.display(description="last error")
    def last_error_short(self, obj: Message) -> str:
        if not obj.last_error_class and not obj.last_error:
            return ""
        # One line, cut by CSS and here: the whole text is on the detail page.
        short_class = obj.last_error_class.rsplit(".", 1)[-1]
        text = obj.last_error[:ERROR_CHARS] + ("…" if len(obj.last_error) > ERROR_CHARS else "")
        return format_html("<span class='icb-error'><code>{}</code> {}</span>", short_class, text)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Message], search_term: str
    ) -> tuple[QuerySet[Message], bool]:
        return messages_search(queryset=queryset, term=search_term), False

    @admin.display(description="correlation id")
    def correlation_link(self, obj: Message) -> str:
        if not obj.correlation_id:
            return "—"
        try:
            url = reverse("scenario-chain", args=[obj.correlation_id])
        except NoReverseMatch:  # a sender's id may hold "/", which the chain page's URL cannot carry
            return format_html("<code>{}</code>", obj.correlation_id)
        return format_html("<code>{}</code> (<a href='{}'>business chain</a>)", obj.correlation_id, url)

    @admin.display(description="mapping version")
    def mapping_version_link(self, obj: Message) -> str:
        if obj.mapping_version is None:
            return "—"
        version = MappingVersion.objects.filter(flow_id=obj.flow_id, version=obj.mapping_version).first()
        if version is None:
            return f"v{obj.mapping_version}"
        url = reverse("admin:integrations_mappingversion_change", args=[version.pk])
        return format_html("<a href='{}' id='mapping-version-link'>v{}</a>", url, version.version)

    @admin.display(description="replay of")
    def replay_of_link(self, obj: Message) -> str:
        return link_to_message(obj.replay_of_id)

    @admin.display(description="replayed as")
    def replays_links(self, obj: Message) -> str:
        replays = list(obj.replays.values_list("pk", "status"))
        if not replays:
            return "—"
        return format_html(
            " ".join(["<a href='{}' class='replay-link'>message {} ({})</a>"] * len(replays)),
            *[
                part
                for pk, status in replays
                for part in (reverse("admin:integrations_message_change", args=[pk]), pk, status)
            ],
        )

    @admin.display(description="payload in")
    def payload_in_pretty(self, obj: Message) -> str:
        return _payload(obj.payload_in, "payload in (from the source)", open_=True)

    @admin.display(description="payload fetched")
    def payload_fetched_pretty(self, obj: Message) -> str:
        if obj.payload_fetched is None:
            return format_html("<em>{}</em>", "nothing read from the source for this event")
        return _payload(obj.payload_fetched, "payload fetched (read from the source before mapping)", open_=True)

    @admin.display(description="payload out")
    def payload_out_pretty(self, obj: Message) -> str:
        return _payload(obj.payload_out, "payload out (mapped, sent to the target)")

    @admin.display(description="headers")
    def headers_pretty(self, obj: Message) -> str:
        return _payload(obj.headers, "event headers")

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        context = {
            "title": "Messages",
            **(extra_context or {}),
            "can_retry_matching": self.has_change_permission(request),
        }
        return super().changelist_view(request, extra_context=context)

    # --- permissions -----------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # messages come from sources; an operator replays, never invents one

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # discard keeps the row and the audit trail

    def save_model(self, request: HttpRequest, obj: Message, form: Any, change: bool) -> None:
        # Every field is read-only: a save would only write this page's stale copy of the row over
        # what the pipeline changed since. Changes go through the action buttons (audited services).
        return

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return

    def _require_change(self, request: HttpRequest, obj: Message | None = None) -> None:
        if not self.has_change_permission(request, obj):
            raise PermissionDenied("You may look at messages but not act on them.")

    # --- detail page ---------------------------------------------------------------------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if obj is not None:
            context.update(self._detail_context(request, obj))
        context.update({"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False})
        return super().change_view(request, object_id, form_url, extra_context=context)

    def _detail_context(self, request: HttpRequest, obj: Message) -> dict[str, Any]:
        try:
            chain = chains.chain_for(obj.correlation_id) if obj.correlation_id else None
        except chains.ChainNotFound:
            chain = None
        links = (
            RecordLink.objects.filter(correlation_id=obj.correlation_id).select_related("flow")
            if obj.correlation_id
            else RecordLink.objects.none()
        )
        can_change = self.has_change_permission(request, obj)
        return {
            "message": obj,
            "attempt_rows": obj.attempt_set.order_by("started_at", "pk"),
            "chain": chain,
            "chain_links": links,
            "audit_entries": AuditEntry.objects.filter(message=obj).order_by("at"),
            "can_change": can_change,
            "can_retry": can_change and obj.status in operator.RETRYABLE,
            "can_discard": can_change and obj.status in operator.DISCARDABLE,
            "can_replay": can_change,
            "can_resolve": can_change and obj.status == Status.CONFLICT,
        }

    # --- per-message action pages --------------------------------------------------------------

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("retry-matching/", wrap(self.retry_matching_view), name="integrations_message_retry_matching"),
            path("<int:pk>/retry/", wrap(self.retry_view), name="integrations_message_retry"),
            path("<int:pk>/discard/", wrap(self.discard_view), name="integrations_message_discard"),
            path("<int:pk>/replay/", wrap(self.replay_view), name="integrations_message_replay"),
            path("<int:pk>/resolve/", wrap(self.resolve_view), name="integrations_message_resolve"),
            *super().get_urls(),
        ]

    def _page(self, request: HttpRequest, template: str, title: str, **context: Any) -> TemplateResponse:
        return TemplateResponse(
            request,
            f"admin/integrations/message/{template}",
            {**self.admin_site.each_context(request), "opts": self.model._meta, "title": title, **context},
        )

    def _detail_url(self, pk: int) -> str:
        return reverse("admin:integrations_message_change", args=[pk])

    def _changeable(self, request: HttpRequest, pk: int) -> Message:
        """The message an action page is about, if the user may act on it (404, 403 otherwise)."""
        message = get_object_or_404(Message, pk=pk)
        self._require_change(request, message)
        return message

    def _reason_view(
        self, request: HttpRequest, pk: int, title: str, verb: str, act: Callable[[Message, str], tuple[str, int]]
    ) -> HttpResponse:
        """A page asking why, then act(message, reason) -> (what to tell, level); back on the message's page.

        An OperatorError of the action is told as an error.
        """
        message = self._changeable(request, pk)
        form = ReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                told, level = act(message, form.cleaned_data["reason"])
            except operator.OperatorError as exc:
                told, level = str(exc), messages.ERROR
            self.message_user(request, told, level)
            return HttpResponseRedirect(self._detail_url(pk))
        return self._page(request, "reason.html", f"{title} message {pk}", form=form, message=message, verb=verb)

    def retry_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        def retry(message: Message, reason: str) -> tuple[str, int]:
            if operator.messages_retry(messages=[message], actor=request.user, reason=reason):
                return f"Message {pk} is queued again.", messages.SUCCESS
            return f"Message {pk} is {message.status}; nothing to retry.", messages.WARNING

        return self._reason_view(request, pk, "Retry", "Retry now", retry)

    def discard_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        def discard(message: Message, reason: str) -> tuple[str, int]:
            operator.message_discard(message=message, actor=request.user, reason=reason)
            return f"Message {pk} discarded.", messages.SUCCESS

        return self._reason_view(request, pk, "Discard", "Discard", discard)

    def replay_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        message = self._changeable(request, pk)
        initial = {"payload": pretty_json(message.payload_in)}
        form = ReplayForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            payload = form.cleaned_data["payload"]
            try:
                replay = operator.message_replay(
                    message=message,
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                    payload=None if payload == message.payload_in else payload,
                )
            except operator.OperatorError as exc:
                form.add_error("payload", str(exc))
            else:
                self.message_user(request, f"Replayed message {pk} as message {replay.pk}.", messages.SUCCESS)
                return HttpResponseRedirect(self._detail_url(replay.pk))
        return self._page(request, "replay.html", f"Edit and replay message {pk}", form=form, message=message)

    def resolve_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        message = self._changeable(request, pk)
        form = ResolveForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                operator.message_resolve_conflict(
                    message=message,
                    actor=request.user,
                    side=form.cleaned_data["side"],
                    reason=form.cleaned_data["reason"],
                )
            except operator.OperatorError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Conflict of message {pk} resolved.", messages.SUCCESS)
            return HttpResponseRedirect(self._detail_url(pk))
        rows = conflict_diff(message=message)
        return self._page(
            request,
            "resolve.html",
            f"Resolve the conflict of message {pk}",
            form=form,
            message=message,
            rows=rows,
            changed=sum(1 for row in rows if row.differs),
        )

    def retry_matching_view(self, request: HttpRequest) -> HttpResponse:
        """Retry every retryable message the current changelist filter matches (not just one page).

        Finished messages (skipped: echoes, duplicates, unchanged) are left out unless the operator
        ticks "include skipped"; the page shows what will run, by status and flow, before it runs.
        """
        self._require_change(request)
        include_final = request.GET.get("include_final") == "1" or request.POST.get("include_final") == "1"
        params = request.GET.copy()
        params.pop("include_final", None)
        request.GET = params  # the changelist must not read our own parameter as a filter
        changelist = self.get_changelist_instance(request)
        candidates = changelist.get_queryset(request).filter(status__in=operator.RETRYABLE)
        matching = candidates if include_final else candidates.exclude(status__in=FINAL)
        form = ReasonForm(request.POST or None)
        query = params.urlencode()
        if request.method == "POST" and form.is_valid():
            total = _retry_in_batches(matching, actor=request.user, reason=form.cleaned_data["reason"])
            self.message_user(request, f"Requeued {total} message(s) matching the filter.", messages.SUCCESS)
            url = reverse("admin:integrations_message_changelist")
            return HttpResponseRedirect(f"{url}?{query}" if query else url)
        breakdown = list(matching.order_by().values("status", "flow__name").annotate(n=Count("pk")).order_by("-n")[:20])
        return self._page(
            request,
            "retry_matching.html",
            "Retry all messages matching this filter",
            form=form,
            count=matching.count(),
            left_out=0 if include_final else candidates.filter(status__in=FINAL).count(),
            include_final=include_final,
            breakdown=breakdown,
            query=query,
            filters=list(params.items()),
        )

    # --- list actions ------------------------------------------------------------------------------

    def _reason_action(
        self, request: HttpRequest, queryset: QuerySet[Message], action: str, verb: str
    ) -> TemplateResponse | None:
        """An intermediate page asking for the reason; returns None once it is given."""
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            return None
        return self._page(
            request,
            "action_reason.html",
            f"{verb} {queryset.count()} message(s)",
            form=form,
            action=action,
            verb=verb,
            selected=request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            select_across=request.POST.get("select_across", "0"),
            queryset=queryset[:20],
        )

    @admin.action(description="Retry selected messages now", permissions=["change"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Message]) -> TemplateResponse | None:
        page = self._reason_action(request, queryset, "retry_selected", "Retry")
        if page is not None:
            return page
        total = _retry_in_batches(queryset, actor=request.user, reason=request.POST["reason"].strip())
        self.message_user(request, f"Requeued {total} message(s).", messages.SUCCESS)
        return None

    @admin.action(description="Discard selected messages", permissions=["change"])
    def discard_selected(self, request: HttpRequest, queryset: QuerySet[Message]) -> TemplateResponse | None:
        page = self._reason_action(request, queryset, "discard_selected", "Discard")
        if page is not None:
            return page
        reason = request.POST["reason"].strip()
        done = skipped = 0
        for message in queryset.only("pk", "status").iterator(chunk_size=BULK_BATCH):
            try:
                operator.message_discard(message=message, actor=request.user, reason=reason)
                done += 1
            except operator.OperatorError:
                skipped += 1
        self.message_user(request, f"Discarded {done} message(s); {skipped} could not be discarded in their state.")
        return None


def _retry_in_batches(queryset: QuerySet[Message], *, actor: Any, reason: str) -> int:
    """Retry in batches of primary keys, so "all matching" on a large table holds no long lock."""
    ids = list(queryset.filter(status__in=operator.RETRYABLE).order_by("pk").values_list("pk", flat=True))
    total = 0
    for start in range(0, len(ids), BULK_BATCH):
        batch = Message.objects.filter(pk__in=ids[start : start + BULK_BATCH]).only("pk", "status")
        total += operator.messages_retry(messages=batch, actor=actor, reason=reason)
    return total
