"""Alerts: evaluate each rule, open one Alert when it starts firing, resolve it once when it stops.

The evaluator is run by beat every minute or so; state lives in the Alert rows (at most one open per
rule, enforced by a partial unique constraint), so a tick that finds the same condition does nothing
and notifications go out exactly twice per incident: when it opens and when it resolves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from integrations.egress import egress_refusal
from integrations.models import Flow, Message, System
from integrations.systems import get_connector
from monitoring.models import Alert, AlertRule, ReconciliationRun

logger = logging.getLogger(__name__)

Status = Message.Status
WEBHOOK_TIMEOUT_SECONDS = 5


@dataclass
class Reading:
    firing: bool
    value: float | None
    detail: str


def _messages(rule: AlertRule) -> Any:
    qs = Message.objects.all()
    return qs.filter(flow=rule.flow) if rule.flow_id else qs


def _dead_letters(rule: AlertRule) -> Reading:
    count = _messages(rule).filter(status=Status.DEAD).count()  # reads the (status, created_at) index
    scope = f"flow {rule.flow.slug}" if rule.flow_id else "all flows"
    return Reading(count > rule.threshold, count, f"{count} dead message(s) in {scope} (threshold {rule.threshold:g})")


def _failure_rate(rule: AlertRule) -> Reading:
    since = timezone.now() - timedelta(minutes=rule.window_minutes)
    counts = (
        _messages(rule)
        .filter(created_at__gte=since)
        .exclude(status=Status.DISCARDED)
        .aggregate(total=Count("id"), failed=Count("id", filter=Q(status__in=(Status.FAILED, Status.DEAD))))
    )
    total, failed = counts["total"], counts["failed"]
    if total < max(rule.min_messages, 1):
        return Reading(False, None, f"only {total} message(s) in the last {rule.window_minutes} min")
    rate = 100.0 * failed / total
    return Reading(
        rate > rule.threshold,
        round(rate, 2),
        f"{failed} of {total} message(s) failed in the last {rule.window_minutes} min "
        f"({rate:.1f} % > {rule.threshold:g} %)"
        if rate > rule.threshold
        else f"{rate:.1f} % failed in the last {rule.window_minutes} min",
    )


def _silence(rule: AlertRule) -> Reading:
    now = timezone.now()
    flows = [rule.flow] if rule.flow_id else list(Flow.objects.filter(enabled=True))
    last = dict(
        Message.objects.filter(flow__in=flows).values_list("flow_id").annotate(last=Max("created_at")).order_by()
    )
    silent = []
    longest = 0.0
    for flow in flows:
        # A flow that never carried anything counts from its creation, so a new flow is not silent at once.
        seen = last.get(flow.pk) or flow.created_at
        minutes = (now - seen).total_seconds() / 60
        if minutes > rule.window_minutes:
            silent.append(f"{flow.slug} ({minutes:.0f} min)")
            longest = max(longest, minutes)
    if silent:
        return Reading(True, round(longest, 1), f"silent longer than {rule.window_minutes} min: {', '.join(silent)}")
    return Reading(False, 0, f"every watched flow carried a message in the last {rule.window_minutes} min")


def _reconciliation(rule: AlertRule) -> Reading:
    runs = ReconciliationRun.objects.filter(status=ReconciliationRun.Status.DONE)
    if rule.flow_id:
        runs = runs.filter(flow=rule.flow)
    latest_ids = runs.values("flow_id").annotate(latest=Max("pk")).values_list("latest", flat=True)
    worst: list[str] = []
    total = 0
    for run in ReconciliationRun.objects.filter(pk__in=list(latest_ids)).select_related("flow"):
        count = run.discrepancies_count
        total += count
        if count > rule.threshold:
            worst.append(
                f"{run.flow.slug}: {run.missing_in_target} missing in target, "
                f"{run.missing_in_source} missing in source, {run.different} different"
            )
    if worst:
        return Reading(True, total, "reconciliation differences: " + "; ".join(worst))
    return Reading(False, total, "the latest reconciliation runs match")


def _health(rule: AlertRule) -> Reading:
    systems = [rule.system] if rule.system_id else list(System.objects.filter(enabled=True))
    failing = []
    for system in systems:
        try:
            report = get_connector(system).check_connection()
            if not report.ok:
                failing.append(f"{system.name}: {report.summary()}")
        except Exception as exc:  # a crashing check is a failing check
            failing.append(f"{system.name}: {type(exc).__name__}: {exc}"[:300])
    if failing:
        return Reading(True, len(failing), "connection check failing: " + "; ".join(failing))
    return Reading(False, 0, "every watched system passes its connection check")


EVALUATORS = {
    AlertRule.Kind.DEAD_LETTERS: _dead_letters,
    AlertRule.Kind.FAILURE_RATE: _failure_rate,
    AlertRule.Kind.SILENCE: _silence,
    AlertRule.Kind.RECONCILIATION: _reconciliation,
    AlertRule.Kind.HEALTH: _health,
}


def rule_read(*, rule: AlertRule) -> Reading:
    return EVALUATORS[rule.kind](rule)


def alerts_evaluate(*, rules: Any = None) -> dict[str, int]:
    """Read every enabled rule; open or resolve its alert on a change of state only."""
    rules = rules if rules is not None else AlertRule.objects.filter(enabled=True).select_related("flow", "system")
    opened = resolved = 0
    for rule in rules:
        try:
            reading = rule_read(rule=rule)
        except Exception:  # one broken rule must not stop the others
            logger.exception("alert rule %s could not be evaluated", rule.name)
            continue
        change = _apply(rule, reading)
        opened += change == "firing"
        resolved += change == "resolved"
    return {"opened": opened, "resolved": resolved}


def _apply(rule: AlertRule, reading: Reading) -> str:
    with transaction.atomic():
        # Lock the rule so two evaluators (a slow tick overlapping the next) serialise here.
        AlertRule.objects.select_for_update().filter(pk=rule.pk).first()
        current = Alert.objects.filter(rule=rule, resolved_at__isnull=True).first()
        if reading.firing and current is None:
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(rule=rule, value=reading.value, detail=reading.detail)
            except IntegrityError:
                return ""  # another evaluator opened it first
            event = "firing"
        elif not reading.firing and current is not None:
            current.resolved_at = timezone.now()
            current.save(update_fields=["resolved_at"])
            alert, event = current, "resolved"
        else:
            return ""
    logger.warning("alert %s %s: %s", rule.name, event, reading.detail)
    _notify(alert, event, reading)
    return event


def _text(alert: Alert, event: str, reading: Reading) -> str:
    icon = "🔴 FIRING" if event == "firing" else "✅ RESOLVED"
    return f"{icon} icbridge alert '{alert.rule.name}': {reading.detail}"


def _notify(alert: Alert, event: str, reading: Reading) -> None:
    """Email and webhook; each outcome is kept on the alert (never the webhook URL, which holds a key)."""
    rule = alert.rule
    text = _text(alert, event, reading)
    sent: list[dict[str, Any]] = []
    now = timezone.now().isoformat()
    if rule.recipients:
        try:
            send_mail(
                subject=f"[icbridge] {event.upper()}: {rule.name}",
                message=f"{text}\n\nRule: {rule.get_kind_display()}\nOpened: {alert.opened_at:%Y-%m-%d %H:%M:%S %Z}",
                from_email=settings.DEFAULT_FROM_EMAIL,
                recipient_list=rule.recipients,
            )
            sent.append({"at": now, "event": event, "channel": "email", "ok": True, "to": rule.recipients})
        except Exception as exc:  # a mail outage must not stop the webhook
            logger.warning("alert %s: email failed: %s", rule.name, type(exc).__name__)
            sent.append({"at": now, "event": event, "channel": "email", "ok": False, "error": type(exc).__name__})
    if rule.webhook_url:
        body = {
            # Slack and Teams incoming webhooks both render "text"; the rest is for custom receivers.
            "text": text,
            "title": f"icbridge: {rule.name}",
            "themeColor": "D00000" if event == "firing" else "2EB886",
            "alert": {
                "rule": rule.name,
                "kind": rule.kind,
                "event": event,
                "value": reading.value,
                "detail": reading.detail,
                "opened_at": alert.opened_at.isoformat(),
                "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            },
        }
        refusal = egress_refusal(rule.webhook_url)
        try:
            if refusal:  # the URL was saved before the allow-list said otherwise
                raise requests.exceptions.InvalidURL(refusal)
            response = requests.post(rule.webhook_url, json=body, timeout=WEBHOOK_TIMEOUT_SECONDS)
            ok = response.status_code < 300
            sent.append({"at": now, "event": event, "channel": "webhook", "ok": ok, "status": response.status_code})
        except requests.RequestException as exc:
            logger.warning("alert %s: webhook failed: %s", rule.name, type(exc).__name__)
            sent.append({"at": now, "event": event, "channel": "webhook", "ok": False, "error": type(exc).__name__})
    if sent:
        Alert.objects.filter(pk=alert.pk).update(notifications=[*alert.notifications, *sent])
