"""Thin beat tasks: each calls one service. Safe to run twice."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def reconcile_flow(flow_id: int) -> None:
    from monitoring.services import reconciliation

    reconciliation.reconciliation_run_for_flow_id(flow_id=flow_id)


@shared_task(acks_late=True, ignore_result=True)
def evaluate_alerts() -> None:
    from monitoring.services import alerts

    alerts.alerts_evaluate()


@shared_task(acks_late=True, ignore_result=True)
def purge_payloads() -> None:
    from monitoring.services import retention

    retention.payloads_purge()


@shared_task(ignore_result=True, expires=60)
def heartbeat() -> None:
    from monitoring.services import health

    health.heartbeat_record()
