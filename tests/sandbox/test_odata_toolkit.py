"""The OData toolkit the connectors and the emulators share (integrations.protocols.odata), without a server."""

from __future__ import annotations

from decimal import Decimal

import pytest

from integrations.protocols.odata import ODataError
from integrations.protocols.odata.batch import (
    BatchRequest,
    BatchResponse,
    ChangeSet,
    decode_requests,
    decode_responses,
    encode_requests,
    encode_responses,
)
from integrations.protocols.odata.filter import V2, V4, parse_filter
from integrations.protocols.odata.keys import format_key, format_v2_key, parse_key, parse_v2_key


@pytest.mark.parametrize(
    ("values", "url", "expected"),
    [
        ({"accountnumber": "A1"}, False, "accountnumber='A1'"),
        ({"dataAreaId": "se01", "CustomerAccount": "O'Neil"}, False, "dataAreaId='se01',CustomerAccount='O''Neil'"),
        ({"n": 2, "f": 1.5, "b": True}, False, "n=2,f=1.5,b=true"),
        ({"dataAreaId": "se01", "SalesOrderNumber": "SO 1/2"}, True, "dataAreaId='se01',SalesOrderNumber='SO%201%2F2'"),
    ],
)
def test_v4_keys_are_written_as_the_microsoft_connectors_and_emulators_write_them(values, url, expected) -> None:
    assert format_key(values, url=url) == expected


def test_v4_keys_read_back_typed_and_a_bare_guid_lower_case() -> None:
    assert parse_key("dataAreaId='SE01',CustomerAccount='C''1',n=2") == {
        "dataAreaId": "SE01",
        "CustomerAccount": "C'1",
        "n": 2,
    }
    assert parse_key("AAAAAAAA-0000-0000-0000-000000000001") == "aaaaaaaa-0000-0000-0000-000000000001"
    with pytest.raises(ODataError, match="mixes a bare value"):
        parse_key("1,a='x'")


def test_v2_keys_name_only_compound_keys() -> None:
    assert format_v2_key({"SalesOrder": "1"}) == "'1'"
    assert format_v2_key({"SalesOrder": "1", "SalesOrderItem": "10"}) == "SalesOrder='1',SalesOrderItem='10'"
    assert format_v2_key({"Number": 7}) == "7"
    assert format_v2_key({"Number": "7"}, {"Number": "Edm.Int32"}) == "7"
    assert parse_v2_key("'1'", ["SalesOrder"]) == {"SalesOrder": "1"}
    assert parse_v2_key("SalesOrderItem='10',SalesOrder='1'", ["SalesOrder", "SalesOrderItem"]) == {
        "SalesOrder": "1",
        "SalesOrderItem": "10",
    }
    with pytest.raises(ODataError):
        parse_v2_key("SalesOrder='1'", ["SalesOrder", "SalesOrderItem"])


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_a_batch_request_reads_back_as_written_with_change_sets_and_content_ids(line_end: str) -> None:
    items = [
        ChangeSet(
            [
                BatchRequest("POST", "accounts", {"Content-Type": "application/json"}, b'{"name": "a"}'),
                BatchRequest("PATCH", "$1", {"If-Match": "*"}, b'{"name": "b"}'),
            ]
        ),
        BatchRequest("GET", "accounts?$top=1", {"Accept": "application/json"}),
    ]
    body, content_type = encode_requests(items)
    assert b"\r\n" in body
    assert content_type.startswith("multipart/mixed; boundary=batch_")

    decoded = decode_requests(body.decode().replace("\r\n", line_end).encode(), content_type)

    changeset, lone = decoded
    assert isinstance(changeset, ChangeSet)
    assert isinstance(lone, BatchRequest)
    assert [(r.method, r.url, r.body, r.content_id) for r in changeset.requests] == [
        ("POST", "accounts", b'{"name": "a"}', "1"),
        ("PATCH", "$1", b'{"name": "b"}', "2"),
    ]
    assert changeset.requests[1].headers == {"if-match": "*"}
    assert (lone.method, lone.url, lone.content_id) == ("GET", "accounts?$top=1", "3")


def test_a_get_inside_a_change_set_is_refused() -> None:
    body, content_type = encode_requests([ChangeSet([BatchRequest("GET", "accounts")])])
    with pytest.raises(ODataError, match="GET requests are not allowed"):
        decode_requests(body, content_type)


def test_a_batch_answer_reads_back_in_order_a_failed_change_set_as_its_one_response() -> None:
    body, content_type = encode_responses(
        [
            [BatchResponse(201, {"ETag": 'W/"1"'}, b'{"id": 1}', "1"), BatchResponse(204, {}, b"", "2")],
            BatchResponse(412, {"Content-Type": "application/json"}, b'{"error": {}}', "3"),
        ]
    )
    assert b"HTTP/1.1 412 Precondition Failed" in body

    answers = decode_responses(body, content_type)

    assert [(a.status, a.content_id) for a in answers] == [(201, "1"), (204, "2"), (412, "3")]
    assert answers[0].headers == {"ETag": 'W/"1"'}
    assert answers[0].json() == {"id": 1}
    assert answers[1].json() is None


def test_the_v4_filter_compares_strings_case_insensitively() -> None:
    matches = parse_filter("contains(name,'ACME') and revenue ge 100 and not (city eq null)", V4())
    assert matches({"name": "Acme North", "revenue": 150, "city": "x"})
    assert not matches({"name": "Acme North", "revenue": 150, "city": None})
    assert parse_filter("name eq 'acme'", V4())({"name": "ACME"})
    with pytest.raises(ODataError, match="unexpected end"):
        parse_filter("name eq 'x' and", V4())


def test_the_v2_filter_types_values_by_the_properties_edm_types() -> None:
    types = {"Price": "Edm.Decimal", "Changed": "Edm.DateTimeOffset", "Name": "Edm.String"}

    def edm_type(name: str) -> str:
        if name not in types:
            raise KeyError(name)
        return types[name]

    matches = parse_filter(
        "Price gt 10 and Changed gt datetimeoffset'2020-01-01T00:00:00Z' and substringof('A', Name)", V2(edm_type)
    )
    assert matches({"Price": "12.5", "Changed": "/Date(1700000000000+0000)/", "Name": "ABC"})
    assert not matches({"Price": "9", "Changed": "/Date(1700000000000+0000)/", "Name": "ABC"})
    assert parse_filter("Price eq '12.50'", V2(edm_type))({"Price": Decimal("12.5")})
    assert not parse_filter("Name eq 'abc'", V2(edm_type))({"Name": "ABC"})  # case-sensitive, as SAP Gateway
    with pytest.raises(KeyError):
        parse_filter("Nope eq 1", V2(edm_type))
