"""The sandbox systems the templates run against; real environments change URL and credentials only.

Shared by the templates: installing two templates creates each system once.
"""

from __future__ import annotations

from typing import Any

# A tenant named by its domain-like name (Azure AD accepts a tenant id or name in the authority URL).
SANDBOX_TENANT = "icbridge-sandbox"
# A sandbox app registration (the Azure AD emulator stores only a hash of the secret).
SANDBOX_CLIENT_ID = "4f1c6a32-1c2b-4d1e-9d3f-1cb1d9e0a001"
SANDBOX_CLIENT_SECRET = "icbridge-sandbox-secret"  # noqa: S105 - the demo's own emulator, never a real tenant
SANDBOX_APPS = [{"client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET, "tenant": SANDBOX_TENANT}]
AX_USER = "icbridge"
AX_PASSWORD = "sandbox"  # noqa: S105 - the AX emulator's Windows user (SANDBOX_AX2012_USERS)


def _microsoft(slug: str, name: str, kind: str, emulator: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": name,
        "kind": kind,
        "base_url": f"{{base}}/sandbox/{emulator}",
        "auth_type": "client_credentials",
        "auth_url": f"{{base}}/sandbox/azuread/{SANDBOX_TENANT}",
        "client_id": SANDBOX_CLIENT_ID,
        "secret": SANDBOX_CLIENT_SECRET,
        "scope": f"{{base}}/sandbox/{emulator}/.default",
        "timeout_seconds": 30,
        "settings": settings,
    }


FINOPS = _microsoft(
    "sandbox-finops",
    "D365 F&O (sandbox)",
    "finops",
    "finops",
    {
        # Deep links: https://<env>.operations.dynamics.com/?cmp=SE01&mi=CustTable&CustAccount=…
        "deep_link_base": "{base}/sandbox/finops/",
        "deep_link_param": "CustAccount",
        "deep_link_params": {"salesorder": "SalesId", "quote": "QuotationId"},
        "deep_link_menu_items": {
            "account": "CustTable",
            "contact": "ContactPerson",
            "salesorder": "SalesTableDetails",
            "quote": "SalesQuotationTable",
        },
        "default_company": "SE01",
        # The synchronous availability / price check (custom service group/service/operation).
        "availability_service": {
            "service": "IcbAvailabilityServices/IcbAvailabilityService/checkAvailability",
            "params": {"company": "_dataAreaId", "item": "_itemNumber", "quantity": "_quantity"},
            "timeout_seconds": 5,
        },
    },
)

DATAVERSE = _microsoft("sandbox-dataverse", "D365 Sales / Dataverse (sandbox)", "dataverse", "dataverse", {})

AX2012 = {
    "slug": "sandbox-ax2012",
    "name": "Dynamics AX 2012 AIF (sandbox)",
    "kind": "ax2012",
    # The AIF HTTP adapter root; each service is a port below it (<root>/<Service>/xppservice.svc).
    "base_url": "{base}/sandbox/ax2012/MicrosoftDynamicsAXAif60",
    # AIF on IIS signs callers in with Windows authentication: NTLM as DOMAIN\user (sandbox.ax2012.auth).
    "auth_type": "ntlm",
    "client_id": f"CONTOSO\\{AX_USER}",
    "secret": AX_PASSWORD,
    "timeout_seconds": 30,
    "settings": {},
}

S4HANA = {
    "slug": "sandbox-s4hana",
    "name": "SAP S/4HANA (sandbox)",
    "kind": "s4hana",
    # The OData root; Flow.target_entity names <SERVICE>/<EntitySet> below it.
    "base_url": "{base}/sandbox/s4hana/sap/opu/odata/sap",
    "auth_type": "basic",
    "client_id": "ICBRIDGE",
    "secret": "sandbox",
    "timeout_seconds": 30,
    "settings": {},
}
