"""The operator's view at a glance: what needs attention, which target is down, each flow's and system's state.

Read by the console home page, the dashboard and the operator API. Every query groups the rows that
can still move (deliverable, retrying) or need a person (failed, dead, conflict): they read the
partial "message_due" index and the (status, created_at) index, never a scan of delivered history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from integrations.models import Flow, Message, RecordLink, System

Status = Message.Status
WAITING = (*Message.DELIVERABLE, Status.DELIVERING)


def attention_attempts() -> int:
    """A retrying message needs a person from this many attempts on (ICBRIDGE_ATTENTION_ATTEMPTS)."""
    return int(getattr(settings, "ICBRIDGE_ATTENTION_ATTEMPTS", 3))


def attention_age() -> timedelta:
    """…or once it has been waiting this long (ICBRIDGE_ATTENTION_MINUTES)."""
    return timedelta(minutes=float(getattr(settings, "ICBRIDGE_ATTENTION_MINUTES", 15)))


def stuck_retrying(*, now: datetime | None = None) -> Q:
    """Retrying past the threshold of attempts or age: an outage an operator should see, not a blip."""
    now = now or timezone.now()
    return Q(status=Status.RETRYING) & (Q(attempts__gte=attention_attempts()) | Q(created_at__lt=now - attention_age()))


def needs_attention_q(*, now: datetime | None = None) -> Q:
    """Failed, dead and conflict messages, and retrying ones past the threshold."""
    return Q(status__in=Message.NEEDS_ATTENTION) | stuck_retrying(now=now)


def needs_attention(queryset: QuerySet[Message] | None = None) -> QuerySet[Message]:
    return (queryset if queryset is not None else Message.objects.all()).filter(needs_attention_q())


def attention_counts() -> dict[str, int]:
    """failed, dead, conflict and "retrying" (past the threshold) counts, for the home page."""
    counts = dict.fromkeys([*(str(s) for s in Message.NEEDS_ATTENTION), "retrying"], 0)
    for status, n in (
        Message.objects.filter(status__in=Message.NEEDS_ATTENTION).values_list("status").annotate(n=Count("pk"))
    ):
        counts[status] = n
    counts["retrying"] = Message.objects.filter(stuck_retrying()).count()
    return counts


@dataclass
class Incident:
    """A target that fails every delivery now: one line with its count, not a 0 % failure rate."""

    system: System
    state: str  # "down": nothing delivered since the failures began; "degraded": some still get through
    retrying: int
    dead: int
    since: datetime
    last_error_class: str
    last_error: str

    @property
    def count(self) -> int:
        return self.retrying + self.dead

    @property
    def title(self) -> str:
        verb = "is down" if self.state == "down" else "is failing some deliveries"
        return f"{self.system.name} {verb}: {self.count} message(s) affected"


def incidents() -> list[Incident]:
    """Targets with messages retrying after a failed attempt, worst first.

    1. Group retrying messages by target: how many, the oldest, the latest failure.
    2. A delivery to that target after its latest failure makes it "degraded" (some get through);
       none makes it "down".
    3. Dead letters of the same target since the incident began count with it.
    """
    rows = (
        Message.objects.filter(status=Status.RETRYING)
        .exclude(last_error_class="")
        .values("flow__target")
        .annotate(retrying=Count("pk"), oldest=Min("created_at"), latest=Max("updated_at"))
    )
    systems = System.objects.in_bulk([row["flow__target"] for row in rows])
    found: list[Incident] = []
    for row in rows:
        system = systems[row["flow__target"]]
        target_messages = Message.objects.filter(flow__target=system)
        # Reads the (status, created_at) index: deliveries of messages younger than the oldest retrying one.
        delivered_at = target_messages.filter(status=Status.DELIVERED, created_at__gte=row["oldest"]).aggregate(
            at=Max("delivered_at")
        )["at"]
        # Delivered after the latest failure: it takes some messages again; otherwise it takes none now.
        state = "degraded" if delivered_at and delivered_at >= row["latest"] else "down"
        last = (
            target_messages.filter(status=Status.RETRYING)
            .exclude(last_error_class="")
            .order_by("-updated_at")
            .values("last_error_class", "last_error")
            .first()
        ) or {"last_error_class": "", "last_error": ""}
        dead = target_messages.filter(status=Status.DEAD, created_at__gte=row["oldest"]).count()
        found.append(
            Incident(
                system=system,
                state=state,
                retrying=row["retrying"],
                dead=dead,
                since=row["oldest"],
                last_error_class=last["last_error_class"],
                last_error=last["last_error"],
            )
        )
    return sorted(found, key=lambda i: (i.state != "down", -i.count))


def _count(queryset: QuerySet[Message]) -> Subquery:
    return Subquery(queryset.order_by().values("flow").annotate(n=Count("pk")).values("n")[:1])


def flows_with_state(queryset: QuerySet[Flow] | None = None) -> QuerySet[Flow]:
    """Flows with backlog_n, retrying_n, attention_n, oldest_waiting and last_success, per row.

    Correlated subqueries, so a paged list computes them for its page only; each reads the flow's
    waiting rows (the message_due index) or needing-attention rows, never its delivered history.
    """
    queryset = queryset if queryset is not None else Flow.objects.all()
    mine = Message.objects.filter(flow=OuterRef("pk"))
    waiting = mine.filter(status__in=WAITING)
    return queryset.select_related("source", "target").annotate(
        backlog_n=Coalesce(_count(waiting), 0),
        retrying_n=Coalesce(_count(mine.filter(status=Status.RETRYING)), 0),
        attention_n=Coalesce(_count(mine.filter(status__in=Message.NEEDS_ATTENTION)), 0),
        oldest_waiting=Subquery(waiting.order_by("created_at").values("created_at")[:1]),
        last_success=Subquery(
            RecordLink.objects.filter(flow=OuterRef("pk"), synced_at__isnull=False)
            .order_by("-synced_at")
            .values("synced_at")[:1]
        ),
    )


def flow_state(flow: Flow) -> tuple[str, str]:
    """(state, why) of a flow from flows_with_state: stopped, paused, held, degraded or running."""
    if not flow.enabled:
        return "stopped", "disabled: events are refused"
    if flow.paused_at:
        return "paused", f"paused by {flow.paused_by or 'system'}; events are held"
    if flow.is_held:
        paused = " and ".join(s.name for s in (flow.source, flow.target) if s.paused_at)
        return "held", f"{paused} paused; events are held"
    reasons = []
    if getattr(flow, "retrying_n", 0):
        reasons.append(f"{flow.retrying_n} retrying")
    if getattr(flow, "attention_n", 0):
        reasons.append(f"{flow.attention_n} need attention")
    return ("degraded", ", ".join(reasons)) if reasons else ("running", "")


@dataclass
class FlowState:
    """One flow at a glance."""

    flow: Flow
    state: str
    why: str
    backlog: int
    held: int
    oldest_waiting: datetime | None
    last_success: datetime | None


def flow_states(*, flows: QuerySet[Flow] | None = None) -> list[FlowState]:
    """Every flow's state, backlog, held count, oldest waiting message and last success."""
    states = []
    for flow in flows_with_state(flows).order_by("name"):
        state, why = flow_state(flow)
        states.append(
            FlowState(
                flow=flow,
                state=state,
                why=why,
                backlog=flow.backlog_n,
                held=flow.backlog_n if flow.is_held else 0,
                oldest_waiting=flow.oldest_waiting,
                last_success=flow.last_success,
            )
        )
    return states


def systems_with_state(queryset: QuerySet[System] | None = None) -> QuerySet[System]:
    """Systems with backlog_n (messages waiting to go to them) and retrying_n, per row."""
    queryset = queryset if queryset is not None else System.objects.all()
    to_it = Message.objects.filter(flow__target=OuterRef("pk"))

    def count(qs: QuerySet[Message]) -> Subquery:
        return Subquery(qs.order_by().values("flow__target").annotate(n=Count("pk")).values("n")[:1])

    return queryset.annotate(
        backlog_n=Coalesce(count(to_it.filter(status__in=WAITING)), 0),
        retrying_n=Coalesce(count(to_it.filter(status=Status.RETRYING).exclude(last_error_class="")), 0),
    )


def system_state(system: System, incident: Incident | None = None) -> tuple[str, str]:
    """(state, why): disabled, paused, down, degraded (deliveries retrying) or ok."""
    if not system.enabled:
        return "disabled", "disabled"
    if system.paused_at:
        return "paused", f"paused by {system.paused_by or 'system'}; events to and from it are held"
    if incident is not None:
        return incident.state, f"{incident.count} message(s) affected since {incident.since:%H:%M}"
    if getattr(system, "retrying_n", 0):
        return "degraded", f"{system.retrying_n} deliveries retrying"
    return "ok", ""


@dataclass
class SystemState:
    system: System
    state: str
    why: str
    backlog: int


def system_states(*, current: list[Incident] | None = None) -> list[SystemState]:
    """Every system's health: paused or disabled by an operator, down or degraded by its deliveries."""
    by_target = {i.system.pk: i for i in (incidents() if current is None else current)}
    return [
        SystemState(system, *system_state(system, by_target.get(system.pk)), backlog=system.backlog_n)
        for system in systems_with_state().order_by("name")
    ]
