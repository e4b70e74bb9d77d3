"""The AX 2012 AIF emulator over real sockets: zeep loads its WSDLs, CallContext, faults, change tracking."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import requests
from lxml import etree
from zeep import Client
from zeep.exceptions import Fault
from zeep.transports import Transport

from sandbox.ax2012 import ports
from sandbox.ax2012.schema import NS_CTX, NS_FAULT, SERVICES
from sandbox.common.faults import set_faults
from tests.conftest import fixture_path

AUTH = ("icbridge", "sandbox")


@pytest.fixture
def aif(live_server):
    return f"{live_server.url}/sandbox/ax2012/MicrosoftDynamicsAXAif60"


def client(aif: str, service: str) -> Client:
    session = requests.Session()
    session.auth = AUTH
    return Client(f"{aif}/{service}/xppservice.svc?wsdl", transport=Transport(session=session, timeout=10))


def context(zeep_client: Client, company: str, message_id: str | None = None, user: str | None = None):
    return zeep_client.get_element(f"{{{NS_CTX}}}CallContext")(Company=company, MessageId=message_id, LogonAsUser=user)


def key_values(entity_keys) -> list[str]:
    """zeep unwraps a response holding one EntityKeyList to its list of EntityKey."""
    if entity_keys is not None and not isinstance(entity_keys, list):
        entity_keys = entity_keys.EntityKey
    return [key.KeyData.KeyField[0].Value for key in entity_keys or []]


def create_customer(zeep_client: Client, company: str, name: str = "Contoso SE01") -> str:
    keys = zeep_client.service.create(
        _soapheaders=[context(zeep_client, company)], Customer={"CustTable": [{"Name": name, "CustGroup": "IC"}]}
    )
    return key_values(keys)[0]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_zeep_loads_every_service_wsdl_with_all_operations(aif, service):
    zeep_client = client(aif, service)

    operations = set(next(iter(zeep_client.wsdl.bindings.values()))._operations)

    assert {"create", "read", "find", "findKeys", "update", "getKeys", "getChangedKeys"} <= operations


def test_wsdl_needs_credentials(aif):
    response = requests.get(f"{aif}/SalesOrderService/xppservice.svc?wsdl", timeout=5)

    forged = requests.get(
        f"{aif}/SalesOrderService/xppservice.svc?wsdl", headers={"Authorization": "Bearer not-a-token"}, timeout=5
    )

    assert response.status_code == 401
    assert "Basic" in response.headers["WWW-Authenticate"]
    assert forged.status_code == 401


def test_create_read_find_round_trip_in_one_company(aif):
    customers = client(aif, "CustomerService")
    account = create_customer(customers, "DK01")
    orders = client(aif, "SalesOrderService")
    header = [context(orders, "DK01")]
    lines = [{"ItemId": f"ITEM-{n}", "SalesQty": n, "SalesUnit": "Pcs"} for n in (1, 2)]

    keys = orders.service.create(
        _soapheaders=header,
        SalesOrder={"SalesTable": [{"CustAccount": account, "PurchOrderFormNum": "IC-PO-1", "SalesLine": lines}]},
    )
    sales_id = key_values(keys)[0]
    read = orders.service.read(
        _soapheaders=header,
        EntityKeyList={"EntityKey": [{"KeyData": {"KeyField": [{"Field": "SalesId", "Value": sales_id}]}}]},
    )
    found = orders.service.find(
        _soapheaders=header,
        QueryCriteria={
            "CriteriaElement": [
                {
                    "DataSourceName": "SalesTable",
                    "FieldName": "PurchOrderFormNum",
                    "Operator": "Equal",
                    "Value1": "IC-PO-1",
                }
            ]
        },
    )

    table = read.SalesTable[0]
    assert table.SalesId == sales_id
    assert table.CustAccount == account
    assert [line.ItemId for line in table.SalesLine] == ["ITEM-1", "ITEM-2"]
    assert table.SalesLine[1].SalesQty == 2
    assert table._DocumentHash
    assert [t.SalesId for t in found.SalesTable] == [sales_id]


def test_company_selects_the_legal_entitys_data(aif):
    customers = client(aif, "CustomerService")
    account = create_customer(customers, "DK01")

    found_in_other_company = customers.service.findKeys(
        _soapheaders=[context(customers, "SE01")],
        QueryCriteria={
            "CriteriaElement": [
                {"DataSourceName": "CustTable", "FieldName": "AccountNum", "Operator": "Equal", "Value1": account}
            ]
        },
    )

    assert key_values(found_in_other_company) == []


def test_repeated_message_id_gets_the_aif_duplicate_fault(aif):
    customers = client(aif, "CustomerService")
    header = [context(customers, "DK01", message_id="{76704405-5237-4934-83EC-7E1357F28B10}", user="contoso\\svc")]
    document = {"CustTable": [{"Name": "Once only", "CustGroup": "IC"}]}
    customers.service.create(_soapheaders=header, Customer=document)

    with pytest.raises(Fault) as raised:
        customers.service.create(_soapheaders=header, Customer=document)

    # The real AIF duplicate fault, as captured in the fixture: same code, same reason text.
    real = etree.parse(str(fixture_path("ax2012-aif/aif-fault-duplicate-message.outbound.xml")))
    real_code = real.findtext(f".//{{{NS_FAULT}}}Code")
    real_reason = " ".join(real.findtext(f".//{{{NS_FAULT}}}Text").split())
    assert raised.value.message == real_reason
    assert raised.value.detail.find(f".//{{{NS_FAULT}}}Code").text == real_code
    keys = customers.service.getKeys(_soapheaders=[context(customers, "DK01")])
    assert len(key_values(keys.EntityKeyList)) == 1


def test_raw_soap_request_from_the_fixture_gets_a_validation_fault_with_the_infolog(aif):
    # The captured request names customer 2124 in company BRMF, which does not exist there.
    body = fixture_path("ax2012-aif/soap-salesorderservice-create.request.xml").read_bytes()

    response = requests.post(
        f"{aif}/SalesOrderService/xppservice.svc",
        data=body,
        auth=AUTH,
        headers={
            "Content-Type": "text/xml;charset=UTF-8",
            "SOAPAction": "http://schemas.microsoft.com/dynamics/2008/01/services/SalesOrderService/create",
        },
        timeout=5,
    )

    assert response.status_code == 500
    envelope = etree.fromstring(response.content)
    assert envelope.findtext(".//faultstring") == "Request Failed. See the Exception Log for details."
    infolog = [m.text for m in envelope.iter(f"{{{NS_FAULT}}}Message")]
    assert "The value '2124' in field 'CustAccount' is not found in the relating table 'Customers'." in infolog


def test_missing_mandatory_field_is_a_fault_naming_the_field(aif):
    customers = client(aif, "CustomerService")

    with pytest.raises(Fault) as raised:
        customers.service.create(
            _soapheaders=[context(customers, "DK01")], Customer={"CustTable": [{"Name": "No group"}]}
        )

    messages = [m.text for m in raised.value.detail.iter(f"{{{NS_FAULT}}}Message")]
    assert "Field 'CustGroup' in table 'CustTable' must be filled in." in messages


def test_get_changed_keys_returns_only_documents_changed_since_the_time(aif):
    ports.set_document_filters("CustomerService", [{}])  # change tracking needs a document filter on the port
    customers = client(aif, "CustomerService")
    header = [context(customers, "DK01")]
    old = create_customer(customers, "DK01", "Old")
    time.sleep(0.01)
    since = dt.datetime.now(dt.UTC)
    new = create_customer(customers, "DK01", "New")

    page = customers.service.getChangedKeys(_soapheaders=header, ChangedDateTime=since)

    keys = key_values(page.EntityKeyList)
    assert keys == [new]
    assert old not in keys
    assert page.PageStatus == "Success"


def test_update_with_a_stale_document_hash_is_refused(aif):
    customers = client(aif, "CustomerService")
    header = [context(customers, "DK01")]
    account = create_customer(customers, "DK01")
    key_list = {"EntityKey": [{"KeyData": {"KeyField": [{"Field": "AccountNum", "Value": account}]}}]}
    stale = customers.service.read(_soapheaders=header, EntityKeyList=key_list).CustTable[0]._DocumentHash
    customers.service.update(
        _soapheaders=header,
        EntityKeyList=key_list,
        Customer={"CustTable": [{"_DocumentHash": stale, "Name": "Renamed"}]},
    )

    with pytest.raises(Fault) as raised:
        customers.service.update(
            _soapheaders=header,
            EntityKeyList=key_list,
            Customer={"CustTable": [{"_DocumentHash": stale, "Name": "Again"}]},
        )

    assert raised.value.detail.find(f".//{{{NS_FAULT}}}Code").text == "DocumentHashMismatch"
    assert customers.service.read(_soapheaders=header, EntityKeyList=key_list).CustTable[0].Name == "Renamed"


def test_outage_is_a_plain_503_page(aif):
    set_faults("ax2012", down=True)

    response = requests.get(f"{aif}/SalesOrderService/xppservice.svc?wsdl", auth=AUTH, timeout=5)

    assert response.status_code == 503
    assert "text/html" in response.headers["Content-Type"]


def test_logon_as_user_must_be_a_windows_account(aif):
    customers = client(aif, "CustomerService")

    with pytest.raises(Fault) as raised:
        customers.service.getKeys(_soapheaders=[context(customers, "DK01", user="not-a-domain-user")])

    assert raised.value.detail.find(f".//{{{NS_FAULT}}}Code").text == "InvalidUser"
