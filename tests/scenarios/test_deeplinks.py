"""Deep links: a Sales record id → the F&O form of the linked record, in the right company."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from integrations.models import CompanyLink, System
from integrations.scenarios.deeplinks import DeepLinkError, deeplink_for

pytestmark = pytest.mark.django_db

FO_SETTINGS = {
    "deep_link_base": "https://contoso-uat.sandbox.operations.dynamics.com/",
    "deep_link_param": "CustAccount",
    "deep_link_menu_items": {"account": "CustTable", "salesorder": "SalesTableDetails"},
    "deep_link_params": {"salesorder": "SalesId"},
}


@pytest.fixture
def sales_to_fo(make_system, make_flow):
    sales = make_system(kind=System.Kind.DATAVERSE, base_url="https://org.crm4.dynamics.com")
    fo = make_system(kind=System.Kind.FINOPS, base_url="https://fo.example.com", settings=FO_SETTINGS)
    link = CompanyLink.objects.create(name="Sales-SE01", system_a=sales, company_a="", system_b=fo, company_b="SE01")
    return make_flow(slug="p2c-accounts", entity="account", source=sales, target=fo, company_link=link)


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def test_sales_account_links_to_the_fo_customer_form_in_the_target_company(sales_to_fo, make_link):
    make_link(sales_to_fo, "6d81597f-0f9f-e711-8122-000d3aa2331c", "C-000042")

    link = deeplink_for(flow_slug="p2c-accounts", record_id="6d81597f-0f9f-e711-8122-000d3aa2331c")

    assert link.url.startswith("https://contoso-uat.sandbox.operations.dynamics.com/?")
    assert query(link.url) == {"cmp": "SE01", "mi": "CustTable", "CustAccount": "C-000042"}


def test_base_url_and_parameter_come_from_the_system_not_the_code(sales_to_fo, make_link):
    make_link(sales_to_fo, "acc-1", "C-1")
    sales_to_fo.target.settings = {
        **FO_SETTINGS,
        "deep_link_base": "https://prod.operations.dynamics.com/?prt=initial",
        "deep_link_param": "AccountNum",
    }
    sales_to_fo.target.save()

    url = deeplink_for(flow_slug="p2c-accounts", record_id="acc-1").url

    assert url.startswith("https://prod.operations.dynamics.com/?prt=initial&")
    assert query(url) == {"prt": "initial", "cmp": "SE01", "mi": "CustTable", "AccountNum": "C-1"}


def test_entity_specific_parameter_and_company_inside_the_target_key(make_flow, sales_to_fo, make_link):
    orders = make_flow(slug="p2c-orders", entity="salesorder", source=sales_to_fo.source, target=sales_to_fo.target)
    sales_to_fo.target.settings = {**FO_SETTINGS, "default_company": "USMF"}
    sales_to_fo.target.save()
    make_link(orders, "order-guid", "SE02|SO-0007")

    link = deeplink_for(flow_slug="p2c-orders", record_id="order-guid")

    assert query(link.url) == {"cmp": "SE02", "mi": "SalesTableDetails", "SalesId": "SO-0007"}


def test_record_not_synced_yet_is_a_404_that_says_so(sales_to_fo):
    with pytest.raises(DeepLinkError) as caught:
        deeplink_for(flow_slug="p2c-accounts", record_id="never-synced")

    assert caught.value.status == 404
    assert "never-synced" in caught.value.message
    assert "not been synced" in caught.value.message


def test_missing_menu_item_configuration_names_the_setting(sales_to_fo, make_link):
    make_link(sales_to_fo, "acc-1", "C-1")
    sales_to_fo.target.settings = {"deep_link_param": "CustAccount"}
    sales_to_fo.target.save()

    with pytest.raises(DeepLinkError) as caught:
        deeplink_for(flow_slug="p2c-accounts", record_id="acc-1")

    assert caught.value.status == 400
    assert "deep_link_menu_items.account" in caught.value.message


def test_api_redirects_a_logged_in_user_with_302(staff_client, sales_to_fo, make_link):
    make_link(sales_to_fo, "acc-9", "C-9")

    response = staff_client.get("/api/deeplink/p2c-accounts/acc-9")

    assert response.status_code == 302
    assert query(response["Location"])["CustAccount"] == "C-9"


def test_api_answers_unknown_flow_with_json_error(staff_client):
    response = staff_client.get("/api/deeplink/nope/acc-9")

    assert response.status_code == 404
    assert response.json() == {"error": "no flow 'nope'"}


def test_api_refuses_anonymous_callers(client, sales_to_fo, make_link):
    make_link(sales_to_fo, "acc-9", "C-9")

    response = client.get("/api/deeplink/p2c-accounts/acc-9")

    assert response.status_code in (401, 403)


def test_odata_key_of_the_fo_connector_gives_company_and_value(sales_to_fo, make_link):
    make_link(sales_to_fo, "acc-7", "dataAreaId='se02',CustomerAccount='C-O''Neil'")

    link = deeplink_for(flow_slug="p2c-accounts", record_id="acc-7")

    assert query(link.url) == {"cmp": "SE02", "mi": "CustTable", "CustAccount": "C-O'Neil"}
