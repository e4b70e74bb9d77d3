"""Dynamics 365 Finance & Operations emulator, served under /sandbox/finops/.

data/<Entity>                          OData v4 data entities keyed with dataAreaId; reads return only the
                                       caller's default company unless ?cross-company=true (as F&O does)
data/<Entity>(dataAreaId='x',K='v')    GET / PATCH (update, If-Match → 412) / DELETE; POST on the collection
data/$batch                            multipart/mixed with change sets
data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.<action>
                                       Data management package API (ExportToPackage, ImportFromPackage, …)
api/connector/{enqueue,dequeue,ack}/<activity id>   recurring integrations; dmf-blob/<id> the package store
api/services                           custom services: groups, services, operations (GET lists, POST calls)
  IcbAvailabilityServices/IcbAvailabilityService/checkAvailability   availability and price of an item
  IcbSandboxServices/IcbSalesOrderService/{confirm,postPackingSlip,postInvoice,placeHold}
                                       drive a sales order's documents and holds; each raises a business event
  IcbOrderHoldServices/IcbOrderHoldService/clearHold                 clear an order hold (idempotent)

Lines are written through their own entity after their header (SalesOrderLines, SalesQuotationLines): a
list or object in a request body is refused, as F&O data entities take no deep insert. A sales order line
takes its site and warehouse from the header's defaults when it names none; with no site it is refused. A line's
item must be a released product of its company and its unit a unit of measure (UnitsOfMeasure), on every way
in: OData create and update, $batch, package import (lines.py).

Business events go to every enabled EmulatorSubscription(emulator="finops") whose event_type is blank or the
BusinessEventId, as the real JSON envelope (BusinessEventId, ControlNumber, EventId, EventTime /Date(ms)/,
MajorVersion, MinorVersion, BusinessEventLegalEntity, …) with the event's own scalar fields, never lines (a
receiver reads those with OData), after the transaction commits, from a small thread
pool with a bounded timeout; each delivery is logged as an EmulatorRecord (entity "$event").

Entities carry no ModifiedDateTime (the standard ones lack it; naming it is an unknown property): what changed
is read through a change-tracked export (packages.py, "Enable change tracking for entities"); change tracking
is set per entity at control/change-tracking/<entity>. dataAreaId is answered lower-case, as F&O does.
Errors use the F&O OData shape
{"error": {"code": "", "message": "An error has occurred.", "innererror": {"message": …, "type": …}}}.

Modules: model (the entities), store (their rows), entities (a data call), lines (the line rules), batch,
services (custom services) and operations (what they do), events (business events out), config (settings,
number sequences), auth (errors), throttling (priority-based, on resource use), urls (the views).
"""

from __future__ import annotations

from sandbox.finops.auth import LIMITS, configure_service_protection
from sandbox.finops.config import configure, settings_get
from sandbox.finops.events import business_event, raise_event
from sandbox.finops.model import EMULATOR
from sandbox.finops.packages import change_tracking, data_project, recurring_export_run, recurring_job
from sandbox.models import EmulatorRecord
from sandbox.registry import Emulator


def reset() -> None:
    """Drop every record, event log, counter and setting, and forget the service protection counters."""
    EmulatorRecord.objects.filter(emulator=EMULATOR).delete()
    LIMITS.counters.reset()


DESCRIPTOR = Emulator(name=EMULATOR, urls="sandbox.finops.urls", reset=reset)

__all__ = [
    "DESCRIPTOR",
    "business_event",
    "change_tracking",
    "configure",
    "configure_service_protection",
    "data_project",
    "raise_event",
    "recurring_export_run",
    "recurring_job",
    "reset",
    "settings_get",
]
