"""Order and quote lines on the Dataverse emulator: salesorderdetail / quotedetail rows bound to their header."""

from __future__ import annotations

from sandbox.dataverse.store import live
from tests.connectors.microsoft_support import MsClient

pytest_plugins = ["tests.connectors.microsoft_support"]

API = "/sandbox/dataverse/api/data/v9.2"
UOM = "6f1b0f6e-0000-4000-8000-000000000001"


def _order(dv: MsClient, number: str) -> str:
    created = dv.call("POST", f"{API}/salesorders", json={"name": f"Order {number}", "ordernumber": number})
    assert created.status_code == 204, created.text
    return created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


def _line(order_id: str, description: str, quantity: int) -> dict:
    return {
        "salesorderid@odata.bind": f"/salesorders({order_id})",
        "productdescription": description,
        "isproductoverridden": True,
        "quantity": quantity,
        "priceperunit": 12.5,
        "uomid@odata.bind": f"/uoms({UOM})",
    }


def test_a_line_column_the_table_does_not_declare_is_refused_and_nothing_is_stored(dv: MsClient) -> None:
    """Web API error codes: "Could not find a property named … on type …" (salesorderdetail EntityType)."""
    order_id = _order(dv, "SO-1")

    response = dv.call("POST", f"{API}/salesorderdetails", json={**_line(order_id, "Chair", 1), "icb_lines": []})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80060888"
    assert "'icb_lines' on type 'Microsoft.Dynamics.CRM.salesorderdetail'" in response.json()["error"]["message"]
    assert live("salesorderdetails").exists() is False


def test_order_lines_are_rows_read_by_their_order_lookup_and_navigation(dv: MsClient) -> None:
    """salesorderdetail EntityType: salesorderid bound with @odata.bind reads back as _salesorderid_value;
    the order's collection-valued navigation property order_details lists its lines."""
    order_id = _order(dv, "SO-2")
    other_id = _order(dv, "SO-3")
    for line in (_line(order_id, "Chair", 2), _line(order_id, "Desk", 1), _line(other_id, "Lamp", 5)):
        assert dv.call("POST", f"{API}/salesorderdetails", json=line).status_code == 204

    filtered = dv.call("GET", f"{API}/salesorderdetails", params={"$filter": f"_salesorderid_value eq {order_id}"})
    related = dv.call("GET", f"{API}/salesorders({order_id})/order_details")

    assert sorted(row["productdescription"] for row in filtered.json()["value"]) == ["Chair", "Desk"]
    assert sorted(row["quantity"] for row in related.json()["value"]) == [1, 2]
    assert {row["_uomid_value"] for row in related.json()["value"]} == {UOM}
    assert all(row["isproductoverridden"] is True for row in related.json()["value"])


def test_a_deep_insert_creates_the_quote_and_its_lines_in_one_post(dv: MsClient) -> None:
    """Create related table rows in one operation: lines nested under quote_details become quotedetail rows."""
    body = {
        "name": "Quote Q-1",
        "quotenumber": "Q-1",
        "quote_details": [
            {"productdescription": "Chair", "isproductoverridden": True, "quantity": 3, "priceperunit": 10},
            {"productdescription": "Desk", "isproductoverridden": True, "quantity": 1, "priceperunit": 90},
        ],
    }

    created = dv.call("POST", f"{API}/quotes", json=body)
    quote_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    lines = dv.call("GET", f"{API}/quotes({quote_id})/quote_details").json()["value"]

    assert created.status_code == 204, created.text
    assert sorted(line["productdescription"] for line in lines) == ["Chair", "Desk"]
    assert {line["_quoteid_value"] for line in lines} == {quote_id}
    assert "quote_details" not in live("quotes").get(key=quote_id).data


def test_a_deep_insert_with_a_bad_line_stores_neither_header_nor_lines(dv: MsClient) -> None:
    """Create related table rows in one operation: the operation is one transaction; a refused line refuses all."""
    body = {"name": "Quote Q-2", "quotenumber": "Q-2", "quote_details": [{"quantity": 1, "NoSuchColumn": 1}]}

    response = dv.call("POST", f"{API}/quotes", json=body)

    assert response.status_code == 400
    assert "Could not find a property named 'NoSuchColumn'" in response.json()["error"]["message"]
    assert live("quotes").exists() is False
    assert live("quotedetails").exists() is False


def test_an_order_or_quote_carrying_its_lines_as_an_icb_lines_column_is_refused(dv: MsClient) -> None:
    """salesorder EntityType / quote EntityType declare no lines column: lines are salesorderdetail /
    quotedetail rows ("Create related table rows in one operation"), so a header with an invented
    icb_lines column is refused, "Could not find a property named … on type …" (Web API error codes)."""
    lines = [{"productdescription": "Chair", "isproductoverridden": True, "quantity": 1}]
    order = {"name": "Order SO-9", "ordernumber": "SO-9", "icb_lines": lines}
    quote = {"name": "Quote Q-9", "quotenumber": "Q-9", "icb_lines": lines}

    responses = [
        dv.call("POST", f"{API}/salesorders", json=order),
        dv.call("PATCH", f"{API}/quotes(quotenumber='Q-9')", json=quote),
    ]

    assert [r.status_code for r in responses] == [400, 400]
    assert "'icb_lines' on type 'Microsoft.Dynamics.CRM.salesorder'" in responses[0].json()["error"]["message"]
    assert "'icb_lines' on type 'Microsoft.Dynamics.CRM.quote'" in responses[1].json()["error"]["message"]
    assert live("salesorders").exists() is False
    assert live("quotes").exists() is False
    assert live("salesorderdetails").exists() is False


def test_the_header_columns_the_hub_writes_are_declared(dv: MsClient) -> None:
    """salesorder EntityType columns (and the hub's custom icb_ delivery columns) are accepted on an order."""
    order = {
        "name": "Order SO-8",
        "ordernumber": "SO-8",
        "totalamount": 25.0,
        "paymenttermscode": 2,
        "requestdeliveryby": "2026-12-24",
        "icb_deliverydocument": "80000001",
        "icb_goodsmovementstatus": "C",
        "icb_deliverydate": "2026-12-20",
    }

    response = dv.call("POST", f"{API}/salesorders", json=order)

    assert response.status_code == 204, response.text
    assert live("salesorders").get().data["icb_deliverydocument"] == "80000001"


def test_a_catalogue_product_line_reads_its_product_number_with_expand(dv: MsClient) -> None:
    """Join tables using the Web API: $expand of a single-valued navigation property with a nested $select
    gives the related row under the navigation name, or null when the lookup is empty (a write-in line)."""
    created = dv.call("POST", f"{API}/products", json={"name": "Office chair", "productnumber": "A0001"})
    product_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    order_id = _order(dv, "SO-P1")
    catalogue = {**_line(order_id, "", 3), "productid@odata.bind": f"/products({product_id})"}
    del catalogue["productdescription"], catalogue["isproductoverridden"]
    for line in (catalogue, _line(order_id, "Desk", 1)):
        assert dv.call("POST", f"{API}/salesorderdetails", json=line).status_code == 204

    read = dv.call(
        "GET",
        f"{API}/salesorderdetails",
        params={
            "$filter": f"_salesorderid_value eq {order_id}",
            "$select": "quantity",
            "$expand": "productid($select=productnumber)",
        },
    )

    assert read.status_code == 200, read.text
    products = {row["quantity"]: row["productid"] for row in read.json()["value"]}
    assert products[1] is None
    assert (products[3]["productid"], products[3]["productnumber"]) == (product_id, "A0001")
    assert "name" not in products[3]


def test_a_line_bound_to_a_product_that_does_not_exist_is_refused(dv: MsClient) -> None:
    """Associate table rows on create: a bind naming no row is 404 "<table> With Id = <id> Does Not Exist"."""
    order_id = _order(dv, "SO-P2")
    missing = "0b7a3c1e-0000-4000-8000-00000000dead"

    response = dv.call(
        "POST",
        f"{API}/salesorderdetails",
        json={**_line(order_id, "", 1), "productid@odata.bind": f"/products({missing})"},
    )

    assert response.status_code == 404
    assert response.json()["error"] == {"code": "0x80040217", "message": f"product With Id = {missing} Does Not Exist"}
    assert live("salesorderdetails").exists() is False


def test_binds_name_rows_by_id_in_any_case_or_by_alternate_key_and_lookups_store_the_id(dv: MsClient) -> None:
    """Associate table rows on create: "/<set>(<id>)" or an alternate key "/<set>(<column>='…')", relative or
    absolute; Dataverse stores the row's GUID (lower case) and answers 404 for a row that does not exist."""
    product_id = "5C3B2A10-0000-4000-8000-0000000000AB"
    assert (
        dv.call(
            "POST", f"{API}/products", json={"productid": product_id, "name": "Lamp", "productnumber": "L-1"}
        ).status_code
        == 204
    )
    order_id = _order(dv, "SO-P3")
    by_key = {**_line(order_id, "", 2), "productid@odata.bind": "/products(productnumber='L-1')"}
    by_upper_id = {**_line(order_id, "", 3), "productid@odata.bind": f"/products({product_id})"}
    by_key["salesorderid@odata.bind"] = "/salesorders(ordernumber='SO-P3')"
    for line in (by_key, by_upper_id):
        assert dv.call("POST", f"{API}/salesorderdetails", json=line).status_code == 204
    missing = {**_line(order_id, "", 1), "productid@odata.bind": f"https://x/api/data/v9.2/products({UOM})"}

    refused = dv.call("POST", f"{API}/salesorderdetails", json=missing)
    read = dv.call(
        "GET",
        f"{API}/salesorderdetails",
        params={"$filter": f"_salesorderid_value eq {order_id}", "$expand": "productid($select=productnumber)"},
    )
    related = dv.call("GET", f"{API}/salesorders({order_id})/order_details", params={"$expand": "productid"})

    assert refused.status_code == 404
    assert {(row["_productid_value"], row["productid"]["productnumber"]) for row in read.json()["value"]} == {
        (product_id.lower(), "L-1")
    }
    assert len(read.json()["value"]) == 2
    assert related.status_code == 400  # refused, never silently ignored


def test_a_select_of_a_column_the_table_lacks_is_refused_not_answered_as_null(dv: MsClient) -> None:
    """Query data using the Web API ("Select columns"): a $select naming a column the table does not have is
    400 "Could not find a property named … on type …" — in a table read, a row read, a related-rows read, a
    nested $select of an $expand, and a write's return=representation (refused before the write)."""
    order_id = _order(dv, "SO-9")
    assert dv.call("POST", f"{API}/salesorderdetails", json=_line(order_id, "Chair", 1)).status_code == 204
    reads = {
        "table": dv.call("GET", f"{API}/salesorders", params={"$select": "name,ordernumbr"}),
        "row": dv.call("GET", f"{API}/salesorders({order_id})", params={"$select": "icb_lines"}),
        "related": dv.call("GET", f"{API}/salesorders({order_id})/order_details", params={"$select": "qty"}),
        "nested": dv.call(
            "GET",
            f"{API}/salesorderdetails",
            params={"$select": "quantity", "$expand": "productid($select=productnumber,itemnumber)"},
        ),
    }
    write = dv.call(
        "POST",
        f"{API}/salesorders",
        json={"name": "Order SO-10", "ordernumber": "SO-10"},
        params={"$select": "name,total"},
        headers={"Prefer": "return=representation"},
    )
    fine = dv.call(
        "GET",
        f"{API}/salesorderdetails",
        params={"$select": "quantity,_salesorderid_value,createdon", "$expand": "salesorderid($select=ordernumber)"},
    )
    # Read-only columns the platform computes or sets on every row are columns too.
    computed = dv.call(
        "GET", f"{API}/salesorderdetails", params={"$select": "extendedamount,salesorderdetailname,_ownerid_value"}
    )

    wrong = {"table": "ordernumbr", "row": "icb_lines", "related": "qty", "nested": "itemnumber"}
    for read, column in wrong.items():
        assert reads[read].status_code == 400, (read, reads[read].text)
        assert f"named '{column}' on type" in reads[read].json()["error"]["message"], read
    assert write.status_code == 400
    assert "named 'total' on type 'Microsoft.Dynamics.CRM.salesorder'" in write.json()["error"]["message"]
    assert not live("salesorders").filter(data__ordernumber="SO-10").exists()
    assert fine.status_code == 200, fine.text
    assert fine.json()["value"][0]["salesorderid"]["ordernumber"] == "SO-9"
    assert computed.status_code == 200, computed.text


def test_a_line_with_neither_a_catalogue_nor_a_write_in_product_is_refused(dv: MsClient) -> None:
    """salesorderdetail EntityType / quotedetail EntityType: a line is a catalogue product (productid) or a
    write-in product (isproductoverridden, productdescription); one that is neither is refused, alone, in a
    deep insert and in CreateMultiple, and nothing is stored."""
    order_id = _order(dv, "SO-N1")
    bare = {
        k: v for k, v in _line(order_id, "Chair", 2).items() if k not in ("productdescription", "isproductoverridden")
    }
    not_overridden = {**_line(order_id, "Chair", 2), "isproductoverridden": False}
    deep = {"name": "Quote Q-N1", "quotenumber": "Q-N1", "quote_details": [{"quantity": 1, "priceperunit": 3}]}
    multiple = {"Targets": [{**bare, "@odata.type": "Microsoft.Dynamics.CRM.salesorderdetail"}]}

    answers = [
        dv.call("POST", f"{API}/salesorderdetails", json=bare),
        dv.call("POST", f"{API}/salesorderdetails", json=not_overridden),
        dv.call("POST", f"{API}/quotes", json=deep),
        dv.call("POST", f"{API}/salesorderdetails/Microsoft.Dynamics.CRM.CreateMultiple", json=multiple),
    ]

    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert "needs a product" in answer.json()["error"]["message"]
    assert not live("salesorderdetails").exists()
    assert not live("quotes").exists()
    created = dv.call("POST", f"{API}/salesorderdetails", json=_line(order_id, "Chair", 2))
    assert created.status_code == 204
    # An update is checked as the line it leaves: no longer a write-in, and no catalogue product either.
    line_url = created.headers["OData-EntityId"].split("/api/data/v9.2/")[1]
    emptied = dv.call("PATCH", f"{API}/{line_url}", json={"isproductoverridden": False})
    quantity = dv.call("PATCH", f"{API}/{line_url}", json={"quantity": 3})
    assert emptied.status_code == 400, emptied.text
    assert "needs a product" in emptied.json()["error"]["message"]
    assert quantity.status_code == 204
    assert live("salesorderdetails").get().data["isproductoverridden"] is True
