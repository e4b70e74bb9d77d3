"""Thin Celery tasks: load by id, call one service. Safe to run twice."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def process_message(message_id: int) -> None:
    from integrations.pipeline import deliver as pipeline

    pipeline.message_process(message_id=message_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def drain_flow(flow_id: int) -> None:
    from integrations.pipeline import deliver as pipeline

    pipeline.flow_drain(flow_id=flow_id)


@shared_task(acks_late=True, ignore_result=True)
def sweep_messages() -> None:
    from integrations.bulk import load
    from integrations.pipeline import sweep

    sweep.messages_sweep()
    load.load_runs_sweep()  # initial loads whose page worker died


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def load_page(run_id: int) -> None:
    """One page of an initial load; it queues the next page itself."""
    from integrations.bulk import load

    load.load_page(run_id=run_id)


@shared_task(acks_late=True, ignore_result=True)
def poll_flows() -> None:
    """Beat: queue one poll per enabled poll flow (AX 2012 and F&O sources)."""
    from integrations.polling import poll as polling

    for flow_id in polling.poll_flow_ids():
        poll_flow.delay(flow_id)


@shared_task(acks_late=True, ignore_result=True)
def poll_flow(flow_id: int) -> None:
    from integrations.polling import poll as polling

    polling.poll_by_id(flow_id=flow_id)


@shared_task(acks_late=True, ignore_result=True)
def run_scheduled_flow(flow_id: int) -> None:
    """Beat, by the flow's own PeriodicTask (its crontab): one incremental pass of a scheduled flow."""
    from integrations.polling import schedules

    schedules.scheduled_run_by_id(flow_id=flow_id)
