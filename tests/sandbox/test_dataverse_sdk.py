"""Microsoft's own client libraries, unmodified, against the sandbox: azure-identity (on msal) for the token,
PowerPlatform-Dataverse-Client (the Dataverse SDK for Python) for the Web API."""

from __future__ import annotations

import pytest
from azure.identity import ClientSecretCredential
from PowerPlatform.Dataverse.client import DataverseClient

from sandbox import azuread
from sandbox.dataverse.store import live
from tests.connectors.microsoft_support import CLIENT_ID, CLIENT_SECRET, TENANT, TlsServer

pytest_plugins = ["tests.connectors.microsoft_support"]


@pytest.fixture
def sdk(tls_server: TlsServer, ms_sandbox: None, monkeypatch: pytest.MonkeyPatch) -> DataverseClient:
    # The libraries trust the environment's CA bundle; the sandbox's self-signed CA is given the same way.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_server.ca_bundle)
    monkeypatch.setenv("SSL_CERT_FILE", tls_server.ca_bundle)
    credential = ClientSecretCredential(
        TENANT,
        CLIENT_ID,
        CLIENT_SECRET,
        authority=f"{tls_server.url.removeprefix('https://')}/sandbox/azuread",
        disable_instance_discovery=True,
        connection_verify=tls_server.ca_bundle,
    )
    return DataverseClient(f"{tls_server.url}/sandbox/dataverse", credential)


def test_the_dataverse_sdk_creates_reads_updates_and_queries(sdk: DataverseClient) -> None:
    account_id = sdk.records.create("account", {"name": "Fourth Coffee", "accountnumber": "SDK-1"})
    sdk.records.update("account", account_id, {"name": "Fourth Coffee (sample)"})

    record = sdk.records.get("account", account_id, select=["name", "accountnumber"])
    pages = list(sdk.records.get("account", filter="accountnumber eq 'SDK-1'", select=["name"]))

    assert record["name"] == "Fourth Coffee (sample)"
    assert [row["name"] for page in pages for row in page] == ["Fourth Coffee (sample)"]
    assert azuread.tokens_issued(CLIENT_ID) == 1


def test_the_dataverse_sdk_creates_updates_and_upserts_in_bulk(sdk: DataverseClient) -> None:
    """Use bulk operation messages: the SDK's list create, update and upsert call CreateMultiple,
    UpdateMultiple and UpsertMultiple, and the emulator answers them as Dataverse documents."""
    ids = sdk.records.create("account", [{"name": f"Bulk {n}", "accountnumber": f"SDK-B{n}"} for n in range(3)])
    sdk.records.update("account", ids[:2], {"description": "updated in bulk"})
    sdk.records.upsert(
        "account",
        [
            {"alternate_key": {"accountnumber": "SDK-B0"}, "record": {"name": "Bulk zero"}},
            {"alternate_key": {"accountnumber": "SDK-B9"}, "record": {"name": "Bulk nine"}},
        ],
    )

    rows = {row.data["accountnumber"]: row.data for row in live("accounts")}
    assert len(ids) == 3
    assert sorted(row["accountid"] for n, row in rows.items() if n != "SDK-B9") == sorted(ids)
    assert rows["SDK-B0"]["name"] == "Bulk zero"
    assert rows["SDK-B9"]["name"] == "Bulk nine"
    assert [rows[f"SDK-B{n}"].get("description") for n in range(3)] == ["updated in bulk"] * 2 + [None]
