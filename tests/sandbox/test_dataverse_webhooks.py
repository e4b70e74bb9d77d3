"""Webhooks out of the Dataverse emulator: registered steps, the RemoteExecutionContext, retries, the log."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from integrations.systems.dataverse.inbound import dataverse_event
from sandbox import dataverse
from sandbox.dataverse import events as dataverse_webhooks
from sandbox.models import EmulatorRecord, EmulatorSubscription
from tests.conftest import wait_until
from tests.connectors.microsoft_support import Inbox, MsClient, fixture_json

pytest_plugins = ["tests.connectors.microsoft_support"]

API = "/sandbox/dataverse/api/data/v9.2"
SAMPLE = "dataverse/webhook-contact-update-remoteexecutioncontext.json"


def step(inbox: Inbox, event_type: str = "", **headers: str) -> EmulatorSubscription:
    return EmulatorSubscription.objects.create(
        emulator="dataverse", event_type=event_type, url=inbox.url, headers={"x-step": event_type or "*", **headers}
    )


def create(dv: MsClient, set_name: str, body: dict[str, Any]) -> dict[str, Any]:
    response = dv.call("POST", f"{API}/{set_name}", json=body, headers={"Prefer": "return=representation"})
    assert response.status_code == 201, response.text
    return response.json()


def attributes(entity: dict[str, Any]) -> dict[str, Any]:
    return {pair["key"]: pair["value"] for pair in entity["Attributes"]}


def target(body: dict[str, Any]) -> dict[str, Any]:
    [(name, value)] = [(p["key"], p["value"]) for p in body["InputParameters"]]
    assert name == "Target"
    return value


def image(body: dict[str, Any], kind: str) -> dict[str, Any] | None:
    images = {pair["key"]: pair["value"] for pair in body[f"{kind}EntityImages"]}
    assert set(images) <= {f"{kind}Image"}
    return images.get(f"{kind}Image")


def received(inbox: Inbox, count: int) -> list[dict[str, Any]]:
    wait_until(lambda: len(inbox.received) >= count, timeout=15)
    assert dataverse_webhooks.wait_idle(15)
    assert len(inbox.received) == count, [r["headers"].get("x-step") for r in inbox.received]
    return inbox.received


def test_steps_match_by_table_and_message() -> None:
    matches = dataverse_webhooks.step_matches

    assert matches("", "task", "Create")
    assert matches("", "account", "Update")
    assert not matches("", "account", "Delete")
    assert matches("account", "account", "Create")
    assert matches("account", "account", "Update")
    assert not matches("account", "account", "Delete")
    assert not matches("account", "contact", "Create")
    assert matches("task:Update", "task", "Update")
    assert not matches("task:Update", "task", "Create")
    assert matches("account:Delete", "account", "Delete")
    assert matches("ACCOUNT:delete", "account", "Delete")


def test_each_write_goes_to_the_steps_registered_for_its_table_and_message(dv: MsClient, inbox: Inbox) -> None:
    # given four steps: every Create/Update, account Create/Update, account Delete, task Update
    for event_type in ("", "account", "account:Delete", "task:Update"):
        step(inbox, event_type)

    # when an account is created, updated and deleted, and a task created and updated
    account = create(dv, "accounts", {"name": "Contoso", "accountnumber": "C-1"})
    dv.call("PATCH", f"{API}/accounts({account['accountid']})", json={"name": "Contoso AB"})
    dv.call("DELETE", f"{API}/accounts({account['accountid']})")
    task = create(dv, "tasks", {"subject": "Call back"})
    dv.call("PATCH", f"{API}/tasks({task['activityid']})", json={"statecode": 1})

    # then each went to the steps that match it, and only to those
    got = sorted(
        (r["body"]["PrimaryEntityName"], r["body"]["MessageName"], r["headers"]["x-step"]) for r in received(inbox, 8)
    )
    assert got == [
        ("account", "Create", "*"),
        ("account", "Create", "account"),
        ("account", "Delete", "account:Delete"),
        ("account", "Update", "*"),
        ("account", "Update", "account"),
        ("task", "Create", "*"),
        ("task", "Update", "*"),
        ("task", "Update", "task:Update"),
    ]


def test_update_body_has_the_real_shape_with_target_images_headers_and_the_steps_auth(
    dv: MsClient, inbox: Inbox
) -> None:
    # given a step with its HttpHeader authentication, and an account with a contact
    sample = fixture_json(SAMPLE)
    step(inbox, "contact", **{"x-icbridge-key": "s3cret"})
    account = create(dv, "accounts", {"name": "Fabrikam", "accountnumber": "F-1", "creditlimit": 5000})
    contact = create(dv, "contacts", {"firstname": "Ann", "lastname": "Lee", "emailaddress1": "ann@example.com"})

    # when a user changes the contact's first name and sets its account by @odata.bind
    response = dv.call(
        "PATCH",
        f"{API}/contacts({contact['contactid']})",
        json={"firstname": "Anna", "parentcustomerid_account@odata.bind": f"/accounts({account['accountid']})"},
    )
    assert response.status_code == 204

    # then the webhook is the sample's RemoteExecutionContext: same fields, asynchronous, post-operation
    [create_hook, update_hook] = sorted(received(inbox, 2), key=lambda r: r["body"]["MessageName"])
    body, headers = update_hook["body"], update_hook["headers"]
    assert set(body) == set(sample)
    assert (body["MessageName"], body["PrimaryEntityName"], body["PrimaryEntityId"]) == (
        "Update",
        "contact",
        contact["contactid"],
    )
    assert (body["Stage"], body["Mode"], body["Depth"], body["OwningExtension"]["LogicalName"]) == (
        40,
        1,
        1,
        "sdkmessageprocessingstep",
    )
    # the Target: what the request set, the id, and what the platform set on the way
    sent = target(body)
    assert sent["__type"] == sample["InputParameters"][0]["value"]["__type"]
    assert set(sent) == set(sample["InputParameters"][0]["value"])
    values = attributes(sent)
    assert set(values) == {
        "firstname",
        "parentcustomerid",
        "contactid",
        "modifiedon",
        "modifiedby",
        "modifiedonbehalfby",
    }
    assert values["firstname"] == "Anna"
    assert values["parentcustomerid"]["__type"].startswith("EntityReference:")
    assert (
        values["parentcustomerid"]["LogicalName"],
        values["parentcustomerid"]["Id"],
        values["parentcustomerid"]["Name"],
    ) == ("account", account["accountid"], "Fabrikam")
    assert values["modifiedon"].startswith("/Date(")
    # the images: every stored column before and after, with the row version
    pre, post = attributes(image(body, "Pre")), attributes(image(body, "Post"))
    stored = dv.call("GET", f"{API}/contacts({contact['contactid']})").json()
    assert (pre["firstname"], post["firstname"]) == ("Ann", "Anna")
    assert "parentcustomerid" not in pre
    assert post["parentcustomerid"]["Name"] == "Fabrikam"
    assert post["versionnumber"] == int(stored["@odata.etag"][3:-1]) > pre["versionnumber"]
    assert image(body, "Post")["RowVersion"] == str(post["versionnumber"])
    assert post["emailaddress1"] == "ann@example.com"
    # the headers Dataverse sends, and the step's own
    assert headers["x-ms-dynamics-entity-name"] == "contact"
    assert headers["x-ms-dynamics-request-name"] == "Update"
    assert headers["x-ms-correlation-request-id"] == body["CorrelationId"]
    assert headers["x-ms-dynamics-organization"].startswith("127.0.0.1:")
    assert headers["x-icbridge-key"] == "s3cret"
    assert headers["Content-Type"] == "application/json"
    # a Create has no pre-image and says the new id
    assert create_hook["body"]["PreEntityImages"] == []
    assert create_hook["body"]["OutputParameters"] == [{"key": "id", "value": contact["contactid"]}]
    assert attributes(target(create_hook["body"]))["createdby"]["LogicalName"] == "systemuser"


def test_the_hubs_parser_reads_what_the_emulator_sends(dv: MsClient, inbox: Inbox) -> None:
    step(inbox, "account")
    account = create(dv, "accounts", {"name": "Litware", "accountnumber": "L-1", "creditlimit": 100})
    dv.call("PATCH", f"{API}/accounts(accountnumber='L-1')", json={"telephone1": "555"})

    update = next(r for r in received(inbox, 2) if r["body"]["MessageName"] == "Update")
    event = dataverse_event(update["body"], headers={k.lower(): v for k, v in update["headers"].items()})

    version = dv.call("GET", f"{API}/accounts({account['accountid']})").json()["@odata.etag"][3:-1]
    assert event.idempotency_key == f"account:{account['accountid']}:Update:v{version}"
    assert event.source_record_key == account["accountid"]
    attrs = event.payload["attributes"]
    assert (attrs["name"], attrs["telephone1"], attrs["accountnumber"], attrs["creditlimit"]) == (
        "Litware",
        "555",
        "L-1",
        100,
    )
    assert attrs["modifiedon"].endswith("Z")
    # an upsert by alternate key names the key it was addressed by
    assert target(update["body"])["KeyAttributes"] == [{"key": "accountnumber", "value": "L-1"}]


def test_delete_sends_an_entity_reference_and_the_pre_image(dv: MsClient, inbox: Inbox) -> None:
    step(inbox, "account:Delete")
    account = create(dv, "accounts", {"name": "Tailspin", "accountnumber": "T-1"})

    assert dv.call("DELETE", f"{API}/accounts({account['accountid']})").status_code == 204

    [hook] = received(inbox, 1)
    body = hook["body"]
    assert body["MessageName"] == "Delete"
    assert target(body) == dataverse_webhooks.entity_reference("account", account["accountid"])
    assert attributes(image(body, "Pre"))["name"] == "Tailspin"
    assert body["PostEntityImages"] == []
    assert dataverse_event(body, headers={}).idempotency_key.startswith(f"account:{account['accountid']}:Delete:v")


def batch_body(*creates: dict[str, Any]) -> str:
    parts = "".join(
        f"--c\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {n}\r\n\r\n"
        f"POST /api/data/v9.2/accounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{json.dumps(body)}\r\n"
        for n, body in enumerate(creates, start=1)
    )
    return f"--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n{parts}--c--\r\n--b--\r\n"


def test_a_rolled_back_change_set_sends_nothing_and_a_committed_one_sends_each_write(
    dv: MsClient, inbox: Inbox
) -> None:
    step(inbox, "account")
    batch = {"Content-Type": "multipart/mixed; boundary=b"}

    # when a change set fails at its second write (no name), and then one that commits
    failed = dv.call(
        "POST", f"{API}/$batch", data=batch_body({"name": "rolled back"}, {"accountnumber": "x"}), headers=batch
    )
    committed = dv.call("POST", f"{API}/$batch", data=batch_body({"name": "one"}, {"name": "two"}), headers=batch)

    # then only the committed change set's two creates were sent, under one correlation id
    assert (failed.status_code, committed.status_code) == (200, 200)
    assert "HTTP/1.1 400" in failed.text
    hooks = received(inbox, 2)
    assert sorted(attributes(target(h["body"]))["name"] for h in hooks) == ["one", "two"]
    assert len({h["body"]["CorrelationId"] for h in hooks}) == 1
    assert EmulatorRecord.objects.filter(emulator="dataverse", entity="$webhook").count() == 2


class _Flaky(BaseHTTPRequestHandler):
    """Answers the statuses in server.statuses in turn (the last one for ever), recording each call."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server: Any = self.server
        server.calls.append(dict(self.headers))
        status = server.statuses.pop(0) if len(server.statuses) > 1 else server.statuses[0]
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def flaky() -> Iterator[ThreadingHTTPServer]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    server.calls, server.statuses = [], [202]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def flaky_step(server: ThreadingHTTPServer, *statuses: int) -> None:
    server.statuses[:] = list(statuses)  # type: ignore[attr-defined]
    EmulatorSubscription.objects.create(
        emulator="dataverse", event_type="account", url=f"http://127.0.0.1:{server.server_address[1]}/hook?code=k1"
    )


def webhook_log() -> dict[str, Any]:
    [row] = EmulatorRecord.objects.filter(emulator="dataverse", entity="$webhook")
    return row.data


def test_a_failed_delivery_is_retried_and_then_given_up(dv: MsClient, flaky: Any, monkeypatch) -> None:
    monkeypatch.setattr(dataverse_webhooks, "RETRY_DELAYS", (0.05, 0.1, 0.1))
    flaky_step(flaky, 503)

    create(dv, "accounts", {"name": "Down"})

    assert dataverse_webhooks.wait_idle(30)
    log = webhook_log()
    assert len(flaky.calls) == 4  # the first try and three retries
    assert log["state"] == "failed"
    assert [a["status"] for a in log["attempts"]] == [503, 503, 503, 503]
    assert log["url"] == f"http://127.0.0.1:{flaky.server_address[1]}/hook"  # the query (a key) is not logged
    assert len({call["x-request-id"] for call in flaky.calls}) == 4
    assert len({call["x-ms-correlation-request-id"] for call in flaky.calls}) == 1


def test_a_delivery_that_recovers_succeeds_and_a_refusal_is_not_retried(dv: MsClient, flaky: Any, monkeypatch) -> None:
    monkeypatch.setattr(dataverse_webhooks, "RETRY_DELAYS", (0.05, 0.05, 0.05))
    flaky_step(flaky, 500, 429, 202)

    create(dv, "accounts", {"name": "Back"})
    assert dataverse_webhooks.wait_idle(30)
    recovered = webhook_log()

    EmulatorRecord.objects.filter(emulator="dataverse", entity="$webhook").delete()
    flaky.calls.clear()
    flaky.statuses[:] = [401]
    create(dv, "accounts", {"name": "Refused"})
    assert dataverse_webhooks.wait_idle(30)
    refused = webhook_log()

    assert recovered["state"] == "succeeded"
    assert [a["status"] for a in recovered["attempts"]] == [500, 429, 202]
    assert refused["state"] == "failed"
    assert [a["status"] for a in refused["attempts"]] == [401]
    assert len(flaky.calls) == 1


def test_no_listener_counts_as_a_failure_to_retry(dv: MsClient, monkeypatch) -> None:
    monkeypatch.setattr(dataverse_webhooks, "RETRY_DELAYS", (0.05,))
    EmulatorSubscription.objects.create(emulator="dataverse", url="http://127.0.0.1:9/closed")

    create(dv, "accounts", {"name": "Nobody home"})

    assert dataverse_webhooks.wait_idle(30)
    log = webhook_log()
    assert log["state"] == "failed"
    assert [a["error"] for a in log["attempts"]] == ["ConnectionError", "ConnectionError"]


def test_reset_cancels_retries_and_clears_the_log_but_keeps_the_steps(dv: MsClient, flaky: Any, monkeypatch) -> None:
    monkeypatch.setattr(dataverse_webhooks, "RETRY_DELAYS", (30, 30, 30))
    flaky_step(flaky, 503)
    create(dv, "accounts", {"name": "Retry later"})
    wait_until(lambda: webhook_log()["state"] == "retrying", timeout=15)

    dataverse.reset()

    assert dataverse_webhooks.wait_idle(1)  # nothing waits for its retry any more
    assert not EmulatorRecord.objects.filter(emulator="dataverse").exists()
    assert EmulatorSubscription.objects.filter(emulator="dataverse").count() == 1
    assert len(flaky.calls) == 1


def test_a_body_over_256_kb_goes_without_target_and_images_flagged_as_such(dv: MsClient, inbox: Inbox) -> None:
    step(inbox, "account")

    account = create(dv, "accounts", {"name": "Big", "description": "x" * 300_000})

    [hook] = received(inbox, 1)
    assert hook["headers"]["x-ms-dynamics-msg-size-exceeded"] == "true"
    assert not {"InputParameters", "PreEntityImages", "PostEntityImages", "ParentContext"} & set(hook["body"])
    event = dataverse_event(hook["body"], headers={k.lower(): v for k, v in hook["headers"].items()})
    assert event.source_record_key == account["accountid"]
    assert event.headers["truncated"] is True


def test_writes_without_a_matching_step_send_and_log_nothing(dv: MsClient, inbox: Inbox) -> None:
    step(inbox, "task:Update")
    EmulatorSubscription.objects.create(emulator="dataverse", url=inbox.url, enabled=False)

    create(dv, "accounts", {"name": "Quiet"})
    create(dv, "tasks", {"subject": "New"})

    assert dataverse_webhooks.wait_idle(15)
    assert inbox.received == []
    assert not EmulatorRecord.objects.filter(emulator="dataverse", entity="$webhook").exists()
