"""The AIF emulator as AX 2012 documents it: Windows (NTLM) authentication, App Proxy pre-authentication,
document filters for getChangedKeys, AifDocumentPaging."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests_ntlm import HttpNtlmAuth
from zeep import Client
from zeep.transports import Transport

from sandbox.ax2012 import ports
from sandbox.ax2012.schema import NS_CTX, NS_PAGING
from sandbox.models import EmulatorRecord

AUTH = ("icbridge", "sandbox")
SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def aif(live_server):
    return f"{live_server.url}/sandbox/ax2012/MicrosoftDynamicsAXAif60"


def zeep_client(aif: str, service: str, auth) -> Client:
    session = requests.Session()
    session.auth = auth
    return Client(f"{aif}/{service}/xppservice.svc?wsdl", transport=Transport(session=session, timeout=10))


def header(client: Client, company: str = "DK01"):
    return [client.get_element(f"{{{NS_CTX}}}CallContext")(Company=company)]


def keys_of(page) -> list[str]:
    entity_keys = page.EntityKeyList
    if entity_keys is not None and not isinstance(entity_keys, list):
        entity_keys = entity_keys.EntityKey
    return [key.KeyData.KeyField[0].Value for key in entity_keys or []]


def make_customers(client: Client, count: int) -> list[str]:
    created = []
    for n in range(count):
        keys = client.service.create(
            _soapheaders=header(client), Customer={"CustTable": [{"Name": f"Customer {n}", "CustGroup": "IC"}]}
        )
        created.append(keys[0].KeyData.KeyField[0].Value)
    return created


def test_anonymous_request_is_challenged_for_windows_authentication(aif):
    """Configure the AIF IIS website (AX 2012): AIF on IIS uses Windows authentication (NTLM/Kerberos)."""
    url = f"{aif}/CustomerService/xppservice.svc?wsdl"

    anonymous = requests.get(url, timeout=5)
    wrong = requests.get(url, auth=HttpNtlmAuth("CONTOSO\\icbridge", "wrong-password"), timeout=5)
    forged = requests.get(url, headers={"Authorization": "NTLM bm90LW50bG0="}, timeout=5)

    assert anonymous.status_code == 401
    assert "NTLM" in anonymous.headers["WWW-Authenticate"]
    assert wrong.status_code == 401  # the type 3 message did not prove the password
    assert forged.status_code == 401


def test_zeep_with_an_ntlm_transport_calls_the_ax_emulator(aif):
    client = zeep_client(aif, "CustomerService", HttpNtlmAuth("CONTOSO\\icbridge", "sandbox"))

    created = make_customers(client, 1)
    document = client.service.read(
        _soapheaders=header(client),
        EntityKeyList={"EntityKey": [{"KeyData": {"KeyField": [{"Field": "AccountNum", "Value": created[0]}]}}]},
    )

    assert document.CustTable[0].AccountNum == created[0]


def test_get_changed_keys_without_a_document_filter_returns_nothing(aif):
    """Configuring AIF for change tracking (AX 2012): "You must create at least one document filter.
    Otherwise, no entity keys are returned from the getChangedKeys service operation.\""""
    client = zeep_client(aif, "CustomerService", AUTH)
    created = make_customers(client, 2)

    without = keys_of(client.service.getChangedKeys(_soapheaders=header(client), ChangedDateTime=SINCE))
    ports.set_document_filters("CustomerService", [{"CustGroup": "IC"}])
    with_filter = keys_of(client.service.getChangedKeys(_soapheaders=header(client), ChangedDateTime=SINCE))
    ports.set_document_filters("CustomerService", [{"CustGroup": "OTHER"}])
    other_group = keys_of(client.service.getChangedKeys(_soapheaders=header(client), ChangedDateTime=SINCE))

    assert without == []
    assert with_filter == created
    assert other_group == []


def test_get_changed_keys_pages_through_aif_document_paging(aif):
    """AxdBase.getChangedEntityKeyList / AifDocumentPaging (AX 2012): keys come page by page, each page's
    PageStatusContext asks for the next."""
    ports.set_document_filters("CustomerService", [{}])
    client = zeep_client(aif, "CustomerService", AUTH)
    created = make_customers(client, 5)
    paging = client.get_element(f"{{{NS_PAGING}}}DocumentPaging")
    pages, context = [], None
    while True:
        page = client.service.getChangedKeys(
            _soapheaders=header(client),
            DocumentPaging=paging(NumberOfDocuments=2, PageStatusContext=context),
            ChangedDateTime=SINCE,
        )
        pages.append(keys_of(page))
        context = page.PageStatusContext
        if not context:
            break

    assert pages == [created[0:2], created[2:4], created[4:5]]


def test_behind_app_proxy_an_app_only_token_is_refused(aif, live_server):
    """Azure AD Application Proxy pre-authentication signs in users: a client-credentials (app-only) token
    has no scp and no user, and is refused with 401."""
    from sandbox import azuread

    ports.set_app_proxy(True)
    azuread.register_app(client_id="ax-daemon", client_secret="daemon-secret")
    token_url = f"{live_server.url}/sandbox/azuread/{azuread.DEFAULT_TENANT}/oauth2/v2.0/token"
    app_token = requests.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": "ax-daemon",
            "client_secret": "daemon-secret",
            "scope": f"{live_server.url}/sandbox/ax2012/.default",
        },
        timeout=5,
    ).json()["access_token"]
    url = f"{aif}/CustomerService/xppservice.svc?wsdl"

    with_app_token = requests.get(url, headers={"Authorization": f"Bearer {app_token}"}, timeout=5)
    with_basic = requests.get(url, auth=AUTH, timeout=5)

    assert with_app_token.status_code == 401
    assert "app-only" in with_app_token.headers["x-ms-diagnostics"]
    assert with_basic.status_code == 401
    assert with_basic.headers["WWW-Authenticate"] == "Bearer"


def test_custom_services_say_so_in_their_wsdl(aif):
    """Standard Document Services (AX 2012): AX ships CustCustomerService and SalesSalesOrderService, but no
    purchase order or product receipt document service; the sandbox's are marked as custom."""
    custom = requests.get(f"{aif}/PurchaseOrderService/xppservice.svc?wsdl", auth=AUTH, timeout=5).text
    standard = requests.get(f"{aif}/SalesOrderService/xppservice.svc?wsdl", auth=AUTH, timeout=5).text

    assert "Custom document service PurchaseOrderService" in custom
    assert "Custom document service" not in standard


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    scheme=st.sampled_from(["NTLM", "Negotiate"]),
    message_type=st.sampled_from([b"\x01\x00\x00\x00", b"\x02\x00\x00\x00", b"\x03\x00\x00\x00", b"\xff\x00\x00\x00"]),
    tail=st.binary(max_size=300),
)
def test_mangled_ntlm_messages_are_refused_never_a_server_error(db, client, scheme, message_type, tail):
    token = base64.b64encode(b"NTLMSSP\0" + message_type + tail).decode()

    response = client.get(
        "/sandbox/ax2012/MicrosoftDynamicsAXAif60/CustomerService/xppservice.svc?wsdl",
        HTTP_AUTHORIZATION=f"{scheme} {token}",
    )

    assert response.status_code == 401
    assert not EmulatorRecord.objects.filter(emulator="ax2012", entity="AifMessageLog").exists()


def test_document_filters_are_set_through_the_control_api(admin_client, client, aif):
    url = "/sandbox/ax2012/control/document-filters/CustomerService"
    customers = zeep_client(aif, "CustomerService", AUTH)
    created = make_customers(customers, 1)

    anonymous = client.put(url, {"filters": [{}]}, content_type="application/json")
    before = keys_of(customers.service.getChangedKeys(_soapheaders=header(customers), ChangedDateTime=SINCE))
    put = admin_client.put(url, {"filters": [{}]}, content_type="application/json")
    after = keys_of(customers.service.getChangedKeys(_soapheaders=header(customers), ChangedDateTime=SINCE))
    unknown = admin_client.put(
        "/sandbox/ax2012/control/document-filters/NoSuchService", {"filters": []}, content_type="application/json"
    )

    assert anonymous.status_code in (401, 403)
    assert (before, put.status_code, after) == ([], 200, created)
    assert unknown.status_code == 404
    assert admin_client.delete(url).status_code == 204
    assert ports.document_filters("CustomerService") is None
