"""SAP S/4HANA emulator: OData v2 services as SAP Gateway serves them, from their real $metadata.

GET/HEAD sap/opu/odata/sap/<SERVICE>/                       service document; `x-csrf-token: Fetch` issues a token
GET      sap/opu/odata/sap/<SERVICE>/$metadata              the .edmx from metadata/
*        sap/opu/odata/sap/<SERVICE>/<Set>[(<key>)][/<nav>…] GET ($filter $top $skip $orderby $select $expand
                                                            $inlinecount $count), POST (deep insert), PATCH/MERGE/PUT
                                                            (If-Match where the type has an ETag), DELETE
POST     sap/opu/odata/sap/<SERVICE>/$batch                 multipart/mixed with change sets
POST     oauth/token                                        OAuth2 client credentials (SANDBOX_S4HANA_CLIENTS)
POST     emulator/outbound-deliveries, emulator/billing-documents   {"SalesOrder": "1"}: the follow-on documents
                                                            order to cash reads (as posting in SAP would create)

Services: API_SALES_ORDER_SRV, API_BUSINESS_PARTNER (real metadata), API_OUTBOUND_DELIVERY_SRV and
API_BILLING_DOCUMENT_SRV (read-only subsets). CSRF like SAP Gateway: a token bound to the session cookie and
user; a modifying request without both gets 403, `x-csrf-token: Required`, "CSRF token validation failed".
Errors use SAP's JSON (error.code, error.message.value, error.innererror.errordetails). Business events are
CloudEvents pushed after commit to EmulatorSubscription rows (emulator "s4hana") with a bounded timeout.

Modules: model (the services' $metadata), values (Edm values, keys, $filter), store (records, numbers,
ETags), reads and writes (a request), batch, events (CloudEvents out), documents (follow-on documents),
auth (basic, OAuth, CSRF), reply (answers and SAP's errors), urls (the views).
"""

from __future__ import annotations

from sandbox.models import EmulatorRecord, EmulatorSubscription
from sandbox.registry import Emulator
from sandbox.s4hana.auth import expire_sessions
from sandbox.s4hana.documents import create_billing_document, create_outbound_delivery
from sandbox.s4hana.store import EMULATOR


def reset() -> None:
    EmulatorRecord.objects.filter(emulator=EMULATOR).delete()
    EmulatorSubscription.objects.filter(emulator=EMULATOR).delete()


DESCRIPTOR = Emulator(name=EMULATOR, urls="sandbox.s4hana.urls", reset=reset)

__all__ = ["DESCRIPTOR", "create_billing_document", "create_outbound_delivery", "expire_sessions", "reset"]
