"""The Dataverse Web API emulator, spoken to over real TLS with a sandbox Azure AD token."""

from __future__ import annotations

import json
import re
import time

import pytest

from sandbox import azuread, dataverse
from sandbox.common.faults import set_faults
from sandbox.common.limits import DEFAULT_LIMITS, ServiceProtection
from sandbox.dataverse.auth import throttled
from tests.connectors.microsoft_support import CLIENT_ID, CLIENT_SECRET, TENANT, MsClient, fixture_json, fixture_text

pytest_plugins = ["tests.connectors.microsoft_support"]

API = "/sandbox/dataverse/api/data/v9.2"
ACCOUNT_ID = "00000000-0000-0000-0000-000000000001"


def create_accounts(dv: MsClient, count: int) -> None:
    for n in range(count):
        response = dv.call("POST", f"{API}/accounts", json={"name": f"Account {n:03d}", "accountnumber": f"N{n:03d}"})
        assert response.status_code == 204, response.text


def test_paging_answers_like_the_maxpagesize_sample(dv: MsClient) -> None:
    # given four accounts and the documented request (select name, max page size 3)
    sample = fixture_json("dataverse/get-accounts-maxpagesize3.response.json")
    create_accounts(dv, 4)

    # when
    first = dv.call("GET", f"{API}/accounts?$select=name", headers={"Prefer": "odata.maxpagesize=3"})
    body = first.json()
    second = dv.call(
        "GET",
        body["@odata.nextLink"].split("127.0.0.1")[1].split("/", 1)[1].join(["/", ""]),
        headers={"Prefer": "odata.maxpagesize=3"},
    )

    # then the page has the sample's shape: context, etag + name + primary id per row, a paging cookie
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=3"
    assert set(body) == set(sample)
    assert body["@odata.context"].endswith("/$metadata#accounts(name)")
    assert [set(row) for row in body["value"]] == [set(row) for row in sample["value"]]
    assert all(re.fullmatch(r'W/"\d+"', row["@odata.etag"]) for row in body["value"])
    assert "$skiptoken=%3Ccookie%20pagenumber%3D%222%22" in body["@odata.nextLink"]
    assert len(second.json()["value"]) == 1
    assert "@odata.nextLink" not in second.json()
    names = [r["name"] for r in body["value"] + second.json()["value"]]
    assert sorted(names) == [f"Account {n:03d}" for n in range(4)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("accountnumber eq 'N001'", ["N001"]),
        ("accountnumber ne 'N001'", ["N000", "N002", "N003"]),
        ("revenue gt 150", ["N002", "N003"]),
        ("revenue lt 150 and accountnumber ne 'N000'", ["N001"]),
        ("accountnumber eq 'N000' or (revenue ge 300)", ["N000", "N003"]),
        ("contains(name,'ACME')", ["N001", "N003"]),
        ("startswith(name,'Acme') and not contains(name, 'North')", ["N001"]),
    ],
)
def test_filter_selects_the_matching_rows(dv: MsClient, expression: str, expected: list[str]) -> None:
    names = ["Fabrikam", "Acme South", "Contoso", "Acme North"]
    for n, name in enumerate(names):
        dv.call("POST", f"{API}/accounts", json={"name": name, "accountnumber": f"N{n:03d}", "revenue": n * 100})

    response = dv.call("GET", f"{API}/accounts", params={"$filter": expression, "$select": "accountnumber"})

    assert response.status_code == 200, response.text
    rows = response.json()["value"]
    assert sorted(r["accountnumber"] for r in rows) == expected
    assert all(set(r) == {"@odata.etag", "accountnumber", "accountid"} for r in rows)


def test_a_bad_filter_is_a_400_that_says_where(dv: MsClient) -> None:
    response = dv.call("GET", f"{API}/accounts", params={"$filter": "name eq 'x' and"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80060888"
    assert "unexpected end" in response.json()["error"]["message"]


def test_upsert_by_alternate_key_follows_the_documented_exchange(dv: MsClient) -> None:
    sample = fixture_text("dataverse/upsert-alternate-key.http")
    assert "HTTP/1.1 204 No Content" in sample  # what we mirror
    assert "HTTP/1.1 201 Created" in sample
    url = f"{API}/accounts(accountnumber='A-2')"

    created = dv.call("PATCH", url, json={"name": "2:2"})
    updated = dv.call("PATCH", url, json={"name": "2:2 Updated"})
    represented = dv.call(
        "PATCH", f"{url}?$select=name", json={"name": "2:2 again"}, headers={"Prefer": "return=representation"}
    )
    made = dv.call(
        "PATCH",
        f"{API}/accounts(accountnumber='A-3')",
        json={"name": "3:3"},
        headers={"Prefer": "return=representation"},
    )

    assert (created.status_code, updated.status_code) == (204, 204)
    assert created.headers["OData-EntityId"].endswith("/accounts(accountnumber='A-2')")
    assert represented.status_code == 200
    assert represented.headers["ETag"] == represented.json()["@odata.etag"]
    assert set(represented.json()) == {"@odata.context", "@odata.etag", "name", "accountid"}
    assert made.status_code == 201
    assert made.json()["@odata.context"].endswith("$metadata#accounts/$entity")
    rows = dv.call("GET", f"{API}/accounts?$filter=accountnumber eq 'A-2'").json()["value"]
    assert [r["name"] for r in rows] == ["2:2 again"]


def test_if_none_match_star_creates_only(dv: MsClient) -> None:
    url = f"{API}/accounts(accountnumber='C-1')"

    first = dv.call("PATCH", url, json={"name": "new"}, headers={"If-None-Match": "*"})
    second = dv.call("PATCH", url, json={"name": "overwrite?"}, headers={"If-None-Match": "*"})

    assert first.status_code == 204
    assert second.status_code == 412
    assert second.json()["error"] == {
        "code": "0x80040237",
        "message": "A record with matching key values already exists.",
    }
    assert dv.call("GET", url).json()["name"] == "new"


def test_if_match_with_a_stale_etag_is_412_and_changes_nothing(dv: MsClient) -> None:
    url = f"{API}/accounts(accountnumber='E-1')"
    old = dv.call("PATCH", url, json={"name": "v1"}, headers={"Prefer": "return=representation"}).headers["ETag"]
    dv.call("PATCH", url, json={"name": "v2"})

    stale = dv.call("PATCH", url, json={"name": "v3"}, headers={"If-Match": old})
    missing = dv.call("PATCH", f"{API}/accounts(accountnumber='nope')", json={"name": "x"}, headers={"If-Match": "*"})

    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "0x80060882"
    assert dv.call("GET", url).json()["name"] == "v2"
    assert missing.status_code == 404


def test_validation_errors_use_the_web_api_error_shape(dv: MsClient) -> None:
    sample = fixture_json("dataverse/error-plugin-with-annotations.response.json")

    too_long = dv.call("POST", f"{API}/accounts", json={"name": "x" * 161})
    unknown = dv.call("POST", f"{API}/accounts", json={"name": "ok", "NoSuchColumn": 1})
    no_name = dv.call("POST", f"{API}/accounts", json={"accountnumber": "Z"})

    for response in (too_long, unknown, no_name):
        assert response.status_code == 400
        assert {"code", "message"} <= set(response.json()["error"]) <= set(sample["error"])
        assert re.fullmatch(r"0x[0-9a-f]{8}", response.json()["error"]["code"])
    assert "exceeded the maximum allowed length of '160'" in too_long.json()["error"]["message"]
    assert "Could not find a property named 'NoSuchColumn'" in unknown.json()["error"]["message"]


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
@pytest.mark.parametrize("sample", ["batch-changeset-request.http", "batch-request.http"])
def test_batch_runs_the_documented_requests(dv: MsClient, sample: str, line_end: str) -> None:
    # given the account the sample's tasks point at, and the sample body (LF in the docs, CRLF on the wire)
    dv.call("PATCH", f"{API}/accounts({ACCOUNT_ID})", json={"name": "Regarding"})
    raw = fixture_text(f"dataverse/{sample}")
    head, body = raw.split("\n\n", 1)
    content_type = re.search(r"Content-Type: (.*)", head).group(1)
    body = body.replace("\r\n", "\n").replace("\n", line_end)

    # when
    response = dv.call("POST", f"{API}/$batch", data=body.encode(), headers={"Content-Type": content_type})

    # then three 204s (inside a change set response when the request had one), then the GET of the tasks
    text = response.text
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    assert ("boundary=changesetresponse_" in text) is (sample == "batch-changeset-request.http")
    assert text.count("HTTP/1.1 204 No Content") == 3
    assert text.count("OData-EntityId: https://") == 3
    subjects = re.findall(r'"subject":"(Task \d in batch)"', text)
    assert sorted(subjects) == ["Task 1 in batch", "Task 2 in batch", "Task 3 in batch"]
    tasks = dv.call("GET", f"{API}/tasks?$select=subject,_regardingobjectid_value").json()["value"]
    assert {t["_regardingobjectid_value"] for t in tasks} == {ACCOUNT_ID}


def test_a_failing_change_set_writes_nothing(dv: MsClient) -> None:
    body = (
        "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n"
        "--c\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n"
        'POST /api/data/v9.2/accounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{"name": "kept?"}\r\n'
        "--c\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\n"
        "POST /api/data/v9.2/accounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
        '{"accountnumber": "no name"}\r\n'
        "--c--\r\n--b--\r\n"
    )

    response = dv.call("POST", f"{API}/$batch", data=body, headers={"Content-Type": "multipart/mixed; boundary=b"})

    assert response.status_code == 200
    assert "HTTP/1.1 400 Bad Request" in response.text
    assert "Content-ID: 2" in response.text
    assert dv.call("GET", f"{API}/accounts").json()["value"] == []


def test_delta_link_returns_only_what_changed(dv: MsClient) -> None:
    # given three accounts and change tracking started
    create_accounts(dv, 3)
    initial = dv.call("GET", f"{API}/accounts?$select=name", headers={"Prefer": "odata.track-changes"})
    delta_link = initial.json()["@odata.deltaLink"]
    rows = {r["name"]: r["accountid"] for r in initial.json()["value"]}

    # when one is changed, one deleted and one created
    dv.call("PATCH", f"{API}/accounts({rows['Account 000']})", json={"name": "Renamed"})
    dv.call("DELETE", f"{API}/accounts({rows['Account 001']})")
    dv.call("POST", f"{API}/accounts", json={"name": "Brand new"})
    delta = dv.call("GET", "/" + delta_link.split("/", 3)[3])

    # then exactly those come back, the deletion as $deletedEntity, with a new delta link
    assert "$deltatoken=" in delta_link
    assert initial.headers["Preference-Applied"] == "odata.track-changes"
    value = delta.json()["value"]
    assert [v.get("name") for v in value if "name" in v] == ["Renamed", "Brand new"]
    deleted = [v for v in value if v.get("reason") == "deleted"]
    assert deleted == [{"@odata.context": deleted[0]["@odata.context"], "id": rows["Account 001"], "reason": "deleted"}]
    assert deleted[0]["@odata.context"].endswith("$metadata#accounts/$deletedEntity")
    again = dv.call("GET", "/" + delta.json()["@odata.deltaLink"].split("/", 3)[3])
    assert again.json()["value"] == []


def test_service_protection_answers_429_with_retry_after_and_the_real_code(dv: MsClient) -> None:
    dataverse.configure_service_protection(requests=3, window_seconds=60)

    answers = [dv.call("GET", f"{API}/accounts") for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "2"
    assert answers[3].json()["error"] == {
        "code": "0x80072322",
        "message": "Number of requests exceeded the limit of 3 over time window of 60 seconds.",
    }
    assert 1 <= int(answers[3].headers["Retry-After"]) <= 60


def test_default_limits_and_messages_are_the_documented_ones() -> None:
    table = fixture_text("dataverse/service-protection-error-codes.md")
    rows = dict(re.findall(r"\| `(0x[0-9A-F]+)` \| `([^`]+)` \|", table))

    messages = {name: throttled(name, 5, DEFAULT_LIMITS) for name in ("requests", "execution_ms", "concurrent")}

    assert DEFAULT_LIMITS == {"requests": 6000, "window_seconds": 300, "execution_ms": 1_200_000, "concurrent": 52}
    for result in messages.values():
        error = json.loads(result.body)["error"]
        assert rows[error["code"].upper().replace("0X", "0x")] == error["message"]
        assert result.headers["Retry-After"] == "5"


def test_concurrent_requests_over_the_limit_are_refused() -> None:
    limiter = ServiceProtection()
    limits = {**DEFAULT_LIMITS, "concurrent": 2}

    first, second, third = (limiter.enter("app-user", limits) for _ in range(3))
    limiter.leave("app-user", time.monotonic())
    fourth = limiter.enter("app-user", limits)

    assert (first[0], second[0], third[0], fourth[0]) == (None, None, "concurrent", None)
    assert limiter.enter("another-user", limits)[0] is None


def test_without_a_valid_token_the_answer_is_401_with_a_challenge(dv: MsClient) -> None:
    dv.token = "not-a-token"

    response = dv.call("GET", f"{API}/accounts")

    assert response.status_code == 401
    assert response.content == b""
    assert response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")


def test_an_expired_token_is_refused(dv: MsClient) -> None:
    azuread.register_app(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, tenant=TENANT, token_lifetime=1)
    dv.fetch_token("dataverse")
    time.sleep(1.2)

    response = dv.call("GET", f"{API}/accounts")

    assert response.status_code == 401
    assert response.headers["x-ms-diagnostics"] == "the access token has expired"


def test_a_key_value_may_hold_parentheses_and_quotes(dv: MsClient) -> None:
    url = f"{API}/accounts(accountnumber='O''Brien (1)')"

    created = dv.call("PATCH", url, json={"name": "O'Brien"})
    found = dv.call("GET", url)

    assert created.status_code == 204
    assert found.json()["accountnumber"] == "O'Brien (1)"


def test_a_token_for_another_resource_is_refused(dv: MsClient) -> None:
    dv.fetch_token("finops")

    response = dv.call("GET", f"{API}/accounts")

    assert response.status_code == 401
    assert "audience" in response.headers["x-ms-diagnostics"]


def test_an_outage_answers_503_in_the_web_api_error_shape(dv: MsClient) -> None:
    set_faults("dataverse", down=True)

    response = dv.call("GET", f"{API}/accounts")

    assert response.status_code == 503
    assert set(response.json()["error"]) == {"code", "message"}


def test_reset_drops_every_row(dv: MsClient) -> None:
    create_accounts(dv, 2)

    dataverse.reset()

    assert dv.call("GET", f"{API}/accounts").json()["value"] == []
