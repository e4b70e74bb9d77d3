"""F&O's batch data paths: the Data management package REST API and recurring integrations.

OData writes and reads a few thousand records an hour; a data package moves hundreds of thousands
(docs/bulk.md). A data project (definition group) is set up in F&O's Data management workspace; this
module exports and imports its packages and works the queue of a recurring data job.
https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/data-management-api
https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/recurring-integrations
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import requests

from integrations import errors
from integrations.protocols import deadline, dmf
from integrations.protocols.transport import DeliveryResult
from integrations.systems.finops.keys import format_key

ACTIONS = "DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities"
DONE = frozenset({"Succeeded", "PartiallySucceeded", "Failed", "Canceled"})
STATUS_CALL_SECONDS = 1.0  # kept for the last status call when a wait ends by the delivery's deadline
JSON = {"Accept": "application/json", "Content-Type": "application/json"}


class DataPackages:
    """The package API and recurring integrations of one F&O environment, through its connector's auth."""

    def __init__(self, connector: Any) -> None:  # the FinOpsConnector (not imported: it imports this module)
        self.connector = connector
        self.name = connector.system.name

    def _action(self, action: str, body: dict[str, Any]) -> Any:
        response = self.connector.request("POST", f"{self.connector.data}/{ACTIONS}.{action}", json=body, headers=JSON)
        return response.json().get("value")

    # --- package API --------------------------------------------------------------------------------

    def export(self, *, project: str, company: str, execution_id: str = "") -> str:
        """Start an export of the data project in the company (ExportToPackage); its execution id."""
        return self._action(
            "ExportToPackage",
            {
                "definitionGroupId": project,
                "packageName": f"{project}.zip",
                "executionId": execution_id,
                "reExecute": False,
                "legalEntityId": company,
            },
        )

    def status(self, execution_id: str) -> str:
        return str(self._action("GetExecutionSummaryStatus", {"executionId": execution_id}))

    def wait(self, execution_id: str, *, timeout: float = 300, interval: float = 1.0, most: float = 15.0) -> str:
        """The execution's final status; F&O runs it as a batch job, so it is polled (bounded).

        The pause doubles from `interval` up to `most`: a job that runs for minutes is asked every 15 s,
        not every second. Within a delivery the wait ends by the delivery's deadline too (protocols.deadline),
        so a long job fails the batch as transient before its lease runs out, and it is retried.
        """
        started = time.monotonic()
        while True:
            status = self.status(execution_id)
            if status in DONE:
                return status
            left = timeout - (time.monotonic() - started)
            budget = deadline.remaining()
            if budget is not None:
                left = min(left, budget - STATUS_CALL_SECONDS)
            if left <= 0:
                waited = time.monotonic() - started
                raise errors.TransientError(
                    f"{self.name}: execution {execution_id} still {status} after {waited:.0f} s"
                )
            time.sleep(min(interval, left))
            interval = min(most, interval * 2)

    def exported_url(self, execution_id: str) -> str:
        return str(self._action("GetExportedPackageUrl", {"executionId": execution_id}))

    def download(self, url: str) -> bytes:
        """The package at a blob URL (a SAS link: no bearer token goes with it)."""
        try:
            response = requests.get(url, verify=self.connector.verify, timeout=self.connector.timeout)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise errors.TransientError(f"{self.name}: package download failed: {exc}") from exc
        if response.status_code != 200:
            raise errors.TransientError(f"{self.name}: package download answered {response.status_code}")
        return response.content

    def export_once(self, *, project: str, company: str, execution_id: str) -> str:
        """The final status of the export execution_id of the project, starting it under that id if F&O knows
        no such execution (GetExecutionSummaryStatus "Unknown"). A caller that stored the id before asking
        reads the same export again after a crash, whether it fell before or after ExportToPackage: an
        incremental export moves F&O's change tracking on, so a second export would not hold those rows."""
        if self.status(execution_id) in ("Unknown", ""):
            self.export(project=project, company=company, execution_id=execution_id)
        return self.wait(execution_id)

    def package_rows(self, execution_id: str) -> dict[str, list[dict[str, str]]]:
        """Each entity's rows in the package of a finished export (values as text, as its CSV has them)."""
        return dmf.package_read(self.download(self.exported_url(execution_id)))[1]

    def export_rows(self, *, project: str, company: str) -> dict[str, list[dict[str, str]]]:
        """Export the project and read its package: each entity's rows."""
        execution_id = self.export(project=project, company=company)
        status = self.wait(execution_id)
        if status not in ("Succeeded", "PartiallySucceeded"):
            raise errors.RejectedError(
                f"{self.name}: export {execution_id} {status}: {self.execution_errors(execution_id)}"
            )
        return dmf.package_read(self.download(self.exported_url(execution_id)))[1]

    def upload(self, package: bytes) -> str:
        """Put a package in the environment's blob storage (GetAzureWriteUrl, then PUT); its URL."""
        target = json.loads(self._action("GetAzureWriteUrl", {"uniqueFileName": f"icbridge-{uuid.uuid4()}"}))
        try:
            response = requests.put(
                target["BlobUrl"], data=package, headers={"x-ms-blob-type": "BlockBlob"},
                verify=self.connector.verify, timeout=self.connector.timeout,
            )  # fmt: skip
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise errors.TransientError(f"{self.name}: package upload failed: {exc}") from exc
        if response.status_code not in (200, 201):
            raise errors.TransientError(f"{self.name}: package upload answered {response.status_code}")
        return target["BlobUrl"]

    def import_package(self, *, package: bytes, project: str, company: str, execution_id: str = "") -> str:
        """Upload and import a package into the company (ImportFromPackage, execute, overwrite); its execution id."""
        url = self.upload(package)
        return self._action(
            "ImportFromPackage",
            {
                "packageUrl": url,
                "definitionGroupId": project,
                "executionId": execution_id,
                "execute": True,
                "overwrite": True,
                "legalEntityId": company,
            },
        )

    def execution_errors(self, execution_id: str) -> list[dict[str, Any]]:
        """GetExecutionErrors answers a JSON string: the rows' errors."""
        value = self._action("GetExecutionErrors", {"executionId": execution_id})
        return json.loads(value) if value else []

    # --- recurring integrations ---------------------------------------------------------------------

    def _connector_url(self, operation: str, activity_id: str) -> str:
        return f"{self.connector.base_url}/api/connector/{operation}/{activity_id}"

    def enqueue(self, *, activity_id: str, package: bytes, entity: str = "", company: str = "") -> str:
        """Hand a package to a recurring import job; the message id, to ask GetMessageStatus about."""
        params = {k: v for k, v in (("entity", entity), ("company", company)) if v}
        response = self.connector.request(
            "POST", self._connector_url("enqueue", activity_id), params=params, data=package,
            headers={"Content-Type": "application/zip"},
        )  # fmt: skip
        return response.text.strip().strip('"')

    def message_status(self, message_id: str) -> str:
        return str(self._action("GetMessageStatus", {"messageId": message_id}))

    def dequeue(self, *, activity_id: str) -> dict[str, Any] | None:
        """The next package a recurring export job queued ({CorrelationId, PopReceipt, DownloadLocation}), or None."""
        response = self.connector.request("GET", self._connector_url("dequeue", activity_id), headers=JSON)
        return None if response.status_code == 204 or not response.content else response.json()

    def ack(self, *, activity_id: str, dequeued: dict[str, Any]) -> None:
        """Acknowledge a dequeued package, so the job does not hand it out again."""
        self.connector.request("POST", self._connector_url("ack", activity_id), json=dequeued, headers=JSON)


# The rows of the package a load pages through, kept for its next page (one package per process).
_PACKAGE_ROWS: dict[str, Any] = {}


def package_page(connector: Any, entity: str, cursor: str, filters: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """A load through an export package: export the data project once, then page through its rows.

    The cursor is "package:<execution id>:<offset>"; a resumed load reads the same package again. The export
    runs under the load's execution id (filters["execution"]), so a first page read again while F&O's batch
    job still runs waits for that export rather than starting a second one.
    """
    packages = DataPackages(connector)
    if not cursor:
        project, company = filters.get("project"), filters.get("company")
        if not project or not company:
            raise errors.RejectedError(f"{packages.name}: a package load needs the data project and company")
        execution_id = str(filters.get("execution") or f"icb-load-{uuid.uuid4()}")
        status = packages.export_once(project=str(project), company=str(company), execution_id=execution_id)
        if status not in ("Succeeded", "PartiallySucceeded"):
            raise errors.RejectedError(f"{packages.name}: export {execution_id} ended {status}")
        cursor = f"package:{execution_id}:0"
    _, execution_id, offset = cursor.split(":", 2)
    if _PACKAGE_ROWS.get("execution") != execution_id:
        url = packages.exported_url(execution_id)
        _PACKAGE_ROWS.clear()
        _PACKAGE_ROWS.update(execution=execution_id, rows=dmf.package_read(packages.download(url))[1])
    rows = _PACKAGE_ROWS["rows"].get(entity, [])
    start, size = int(offset), int(filters.get("page_size") or 1000)
    page = rows[start : start + size]
    return page, f"package:{execution_id}:{start + size}" if start + size < len(rows) else ""


def package_deliver(connector: Any, requests_: list[Any]) -> list[Any]:
    """Deliveries of a flow with transport "package": one import package per company, rows refused per record.

    1. Group the records by company and entity into one package each (the flow's package_project).
    2. ImportFromPackage it and wait for the execution; GetExecutionErrors names the refused rows.
    3. A refused row is that record's RejectedError; the others are written (an F&O upsert by key).
    A failed upload or a stuck execution fails every record of the package as transient: they are retried.
    """
    packages = DataPackages(connector)
    results: list[Any] = [None] * len(requests_)
    groups: dict[tuple[str, str, str], list[int]] = {}
    for n, request in enumerate(requests_):
        project = request.options.package_project
        if not project or not request.company:
            results[n] = errors.RejectedError(f"{packages.name}: package delivery needs package_project and a company")
            continue
        groups.setdefault((project, request.company, request.entity), []).append(n)
    for (project, company, entity), members in groups.items():
        rows = [{**requests_[n].key, **requests_[n].payload} for n in members]
        package = dmf.package_build(definition_group=project, entities={entity: rows})
        try:
            execution_id = packages.import_package(package=package, project=project, company=company)
            status = packages.wait(execution_id)
            refused = {int(e.get("Row", 0)): str(e.get("Message", "")) for e in packages.execution_errors(execution_id)}
        except errors.ConnectorError as exc:
            for n in members:
                results[n] = exc
            continue
        for row, n in enumerate(members, start=1):
            request = requests_[n]
            if row in refused or status in ("Failed", "Canceled"):
                text = refused.get(row, f"import {execution_id} {status}")
                results[n] = errors.RejectedError(f"{packages.name}: {entity} row {row}: {text}")
                continue
            results[n] = DeliveryResult(
                target_key=format_key(company.lower(), request.key),
                created=request.exists is not True,
                request_summary=f"ImportFromPackage {project} ({entity}, {len(members)} rows) {execution_id}",
            )
    return results
