"""Polling sources that cannot push: AX 2012 AIF change tracking (getChangedKeys) turned into Messages."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from integrations import errors
from integrations.models import Flow, System
from integrations.pipeline.ingest import message_ingest
from integrations.polling.cursors import cursor_lease
from integrations.systems import get_connector
from integrations.systems.finops.poll import finops_poll

logger = logging.getLogger(__name__)

# Flow.entity → AIF document service, when the flow does not name one in options["ax_service"].
AX_SERVICES = {
    "salesorder": "SalesOrderService",
    "purchaseorder": "PurchaseOrderService",
    "customer": "CustomerService",
    "vendor": "VendorService",
    "productreceipt": "ProductReceiptService",
    "vendorinvoice": "VendVendInvoiceService",
}


@dataclass
class PollResult:
    changed_keys: int = 0
    messages_created: int = 0
    skipped: bool = False  # another worker is polling this flow right now


def poll_flow_ids() -> list[int]:
    """Enabled poll flows of enabled sources that can be polled: AX 2012 (getChangedKeys), F&O (modified since)."""
    return list(
        Flow.objects.filter(
            enabled=True, trigger=Flow.Trigger.POLL, source__kind__in=_POLLERS, source__enabled=True
        ).values_list("pk", flat=True)
    )


def poll_by_id(*, flow_id: int) -> Any:
    """The beat task's entry: poll one flow by id with its source's poller (None if disabled or deleted since)."""
    flow = Flow.objects.select_related("source", "company_link").filter(pk=flow_id, enabled=True).first()
    if flow is None or flow.source.kind not in _POLLERS:
        return None
    return _POLLERS[flow.source.kind](flow=flow)


def _service_and_company(flow: Flow) -> tuple[str, str]:
    service = flow.options.get("ax_service") or AX_SERVICES.get(flow.entity.lower())
    if not service:
        raise ValueError(
            f"flow {flow.slug}: no AX service for entity '{flow.entity}'; set options.ax_service "
            f"(one of {', '.join(sorted(AX_SERVICES.values()))})"
        )
    company = flow.options.get("ax_company", "")
    if not company and flow.company_link:
        company = flow.company_link.context_for(flow.source)["source_company"]
    if not company:
        raise ValueError(f"flow {flow.slug}: no AX company; set a company link or options.ax_company")
    return service, company


def _read_present(connector, service: str, company: str, keys: list[str]) -> list[dict]:
    """Read a batch of documents; if one was deleted since getChangedKeys, read the rest one by one.

    AIF fails a whole read when any key is gone, and a poll that always fails would never move its cursor.
    """
    try:
        return connector.read_documents(service, company=company, keys=keys)
    except errors.RejectedError as exc:
        if "InvalidEntityKey" not in getattr(exc, "aif_codes", []):
            raise
        if len(keys) == 1:
            return []  # deleted in AX: nothing left to carry
    return [document for key in keys for document in _read_present(connector, service, company, [key])]


def ax2012_poll(*, flow: Flow) -> PollResult:
    """Turn the AX documents changed since the flow's cursor into Messages.

    1. Lease the flow's cursor (skip if another worker holds it: a poll is already running).
    2. Ask getChangedKeys for changes since the cursor, less an overlap for in-flight commits and clock skew.
    3. Read the changed documents (batch_size keys per read) and ingest each as a Message whose idempotency
       key is service + company + key + RecVersion: a change seen twice (overlap) is stored once.
    4. Only when all were stored, move the cursor to the time this poll started; a failure leaves it, so
       the next poll asks again.
    """
    service, company = _service_and_company(flow)
    connector = get_connector(flow.source)
    result = PollResult()
    # Leased, not locked: no transaction stays open while AX answers (services/cursors.py).
    with cursor_lease(flow) as cursor:
        if cursor is None:
            result.skipped = True
            return result
        started = timezone.now()
        overlap = dt.timedelta(seconds=float(getattr(settings, "ICBRIDGE_POLL_OVERLAP_SECONDS", 5.0)))
        since = (cursor.changed_since - overlap) if cursor.changed_since else dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        try:
            keys = connector.changed_keys(service, company=company, since=since)
            result.changed_keys = len(keys)
            key_field = connector.key_field(service)
            batch = max(1, flow.source.batch_size)
            for offset in range(0, len(keys), batch):
                for document in _read_present(connector, service, company, keys[offset : offset + batch]):
                    key = str(document.get(key_field, ""))
                    version = str(document.get("RecVersion", ""))
                    _, created = message_ingest(
                        flow=flow,
                        payload=document,
                        idempotency_key=f"{service}:{company}:{key}:{version}",
                        source_record_key=key,
                        headers={"ax_service": service, "ax_company": company, "ax_rec_version": version},
                    )
                    result.messages_created += int(created)
        except errors.ConnectorError as exc:
            cursor.last_error = exc.message[:2000]
            cursor.last_polled_at = started
            cursor.save(update_fields=["last_error", "last_polled_at"])
            logger.warning("AX poll of flow %s failed: %s", flow.slug, exc.message, extra={"flow_id": flow.pk})
            return result
        cursor.changed_since = started
        cursor.last_polled_at = started
        cursor.last_keys = result.changed_keys
        cursor.last_error = ""
        cursor.save(update_fields=["changed_since", "last_polled_at", "last_keys", "last_error"])
    return result


_POLLERS = {System.Kind.AX2012: ax2012_poll, System.Kind.FINOPS: finops_poll}
