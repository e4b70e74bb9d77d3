"""AX 2012 has no push: a poll asks AIF getChangedKeys for the documents changed since the cursor, then reads them."""

from __future__ import annotations

import datetime as dt

from integrations import errors
from integrations.models import Flow
from integrations.protocols.polling import PollBatch, PolledRecord
from integrations.systems import get_connector
from integrations.systems.ax2012.services import AX_SERVICES

EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # "since ever", for a flow's first poll


def _service_and_company(flow: Flow) -> tuple[str, str]:
    service = flow.opts.ax_service or AX_SERVICES.get(flow.entity.lower())
    if not service:
        raise ValueError(
            f"flow {flow.slug}: no AX service for entity '{flow.entity}'; set options.ax_service "
            f"(one of {', '.join(sorted(AX_SERVICES.values()))})"
        )
    company = flow.opts.ax_company
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


def read_changes(*, flow: Flow, since: dt.datetime | None, started: dt.datetime) -> PollBatch:
    """The documents changed since the cursor, read batch_size keys at a time.

    Each one's idempotency key is service + company + key + RecVersion. The next poll starts at the
    time this one started: AX stamps changes with its own clock, the overlap covers the skew.
    """
    service, company = _service_and_company(flow)
    connector = get_connector(flow.source)
    keys = connector.changed_keys(service, company=company, since=since or EPOCH)
    key_field = connector.key_field(service)
    batch = max(1, flow.source.batch_size)
    records = []
    for offset in range(0, len(keys), batch):
        for document in _read_present(connector, service, company, keys[offset : offset + batch]):
            key = str(document.get(key_field, ""))
            version = str(document.get("RecVersion", ""))
            records.append(
                PolledRecord(
                    payload=document,
                    idempotency_key=f"{service}:{company}:{key}:{version}",
                    source_record_key=key,
                    headers={"ax_service": service, "ax_company": company, "ax_rec_version": version},
                )
            )
    return PollBatch(records=records, cursor=started, changed=len(keys))
