"""Thin Celery tasks: load by id, call one service. Safe to run twice."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def process_message(message_id: int) -> None:
    from integrations.services import pipeline

    pipeline.message_process(message_id=message_id)


@shared_task(acks_late=True, ignore_result=True)
def sweep_messages() -> None:
    from integrations.services import pipeline

    pipeline.messages_sweep()
