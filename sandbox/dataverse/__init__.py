"""Dataverse Web API v9.2 emulator (Dynamics 365 Sales), served under /sandbox/dataverse/api/data/v9.2/.

Tables: accounts, contacts, products, quotes, salesorders, invoices, tasks (EmulatorRecord rows keyed by
the primary id; alternate keys below). What it answers, as Dataverse does:

GET    <set>?$select&$filter&$orderby&$top      Prefer: odata.maxpagesize=N → @odata.nextLink ($skiptoken cookie)
GET    <set>  Prefer: odata.track-changes       → @odata.deltaLink; <set>?$deltatoken=… → changes and deletions
GET    <set>(<id>) | <set>(<altkey>='v')        one row with @odata.etag
POST   <set>                                    create (204 + OData-EntityId; 201 with Prefer: return=representation)
PATCH  <set>(<key>)                             upsert; If-Match (update only, 412 on a stale ETag) /
                                                If-None-Match: * (create only, 412 when it exists)
DELETE <set>(<key>)                             tombstone kept for change tracking
POST   $batch                                   multipart/mixed with change sets (atomic), CRLF or LF
GET    WhoAmI                                   the calling application user

After a Create, Update (POST, PATCH, upsert) or Delete commits, the webhook steps registered as
EmulatorSubscription(emulator="dataverse") get the RemoteExecutionContext Dataverse posts, from a thread
pool, with retries (sandbox.dataverse.events; delivery log: EmulatorRecord entity "$webhook").

Every call needs a Bearer token from the Azure AD emulator with aud = this resource. Service protection
limits are kept per application user and per process (Dataverse evaluates them per web server):
configure_service_protection() changes them; default 6,000 requests / 300 s, 1,200,000 ms execution
time, 52 concurrent. Errors use the Web API shape {"error": {"code": "0x…", "message": …}}; see
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors

Modules: tables (what it holds), store (rows), entities (a call), query (lists, paging, change tracking),
metadata (WhoAmI, EntityDefinitions), batch, events (webhooks out) and context (their body), auth (errors,
limits), urls (the view).
"""

from __future__ import annotations

from sandbox.dataverse import events
from sandbox.dataverse.auth import LIMITS, configure_service_protection, service_protection_limits
from sandbox.dataverse.tables import EMULATOR
from sandbox.models import EmulatorRecord
from sandbox.registry import Emulator


def reset() -> None:
    """Drop every row, tombstone, setting and webhook log, cancel webhooks not yet sent, forget the counters.

    The webhook steps (EmulatorSubscription rows) stay: they are the environment's registrations, which
    templates_install makes, not its data.
    """
    events.reset()
    EmulatorRecord.objects.filter(emulator=EMULATOR).delete()
    LIMITS.counters.reset()


DESCRIPTOR = Emulator(name=EMULATOR, urls="sandbox.dataverse.urls", reset=reset)

__all__ = ["DESCRIPTOR", "configure_service_protection", "reset", "service_protection_limits"]
