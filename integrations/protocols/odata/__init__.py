"""OData pieces shared by the connectors and the sandbox emulators, for v2 (SAP Gateway) and v4 (Microsoft).

- batch: $batch multipart bodies, requests and answers, with change sets and Content-IDs.
- keys: key predicates and literals (accounts(<guid>), CustomersV3(dataAreaId='SE01',CustomerAccount='C1'),
  A_SalesOrder('1')).
- filter: the $filter subset, one parser; v4 and v2 evaluate it each their own way (V4, V2).
- edm: v2 Edm values in their JSON form (/Date(ms)/, decimals as strings) made comparable.
- errors: ODataError, and the v4 and v2 error bodies.

Nothing here knows a vendor's data model; production code and the sandbox both import it.
"""

from integrations.protocols.odata.errors import ODataError

__all__ = ["ODataError"]
