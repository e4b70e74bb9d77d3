"""A seeded mutator for the webhook endpoints: real vendor payloads, mutated, with hostile headers and queries.

Used by tests/api/test_webhook_fuzz.py (5,000 requests) and bench/bench_fuzz.py (50,000). Each case is
what a sender controls: the body (a mutated fixture, broken JSON or random bytes), the content type,
the credentials (right, wrong, malformed), vendor headers and the query string. The oracle: no 5xx;
every 2xx stored a message; a 4xx stored nothing.
"""

from __future__ import annotations

import copy
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SEEDS = {
    "dataverse": "dataverse/webhook-contact-update-remoteexecutioncontext.json",
    "finops": "finops/event-BusinessEventsAlertEvent__captured.json",
    "sap": "s4hana/event-salesorder-created-v1.json",
    "generic": "s4hana/event-salesorder-created-v1.json",
}
HOSTILE_VALUES: list[Any] = [
    None,
    "",
    " ",
    "²",
    "١٢٣",  # Arabic-Indic digits: str.isdigit() says yes, int() says yes, ASCII says no
    "\u202e\u0000",
    "x" * 5000,
    True,
    0,
    -1,
    2**63,
    2**64 + 1,
    10**40,
    -(10**30),
    1.5,
    [],
    [None],
    {},
    {"__type": "OptionSetValue:x", "Value": "nope"},
    {"__type": "EntityReference:x"},
    "/Date(99999999999999999999)/",
    "/Date(-99999999999999)/",
    "9999-12-31T23:59:59Z",
    "0000-00-00T00:00:00",
    "{00000000-0000-0000-0000-000000000000}",
]
RAW_NUMBERS = [b"1e400", b"-1e999", b"9" * 5000, b"1" * 30, b"-0", b"NaN", b"Infinity", b"1e-400"]
CONTENT_TYPES = [
    "application/json",
    "application/json",
    "application/json; charset=utf-8",
    "application/cloudevents+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "",
    "application/json; charset=latin-1",
]


@dataclass
class Case:
    body: bytes
    headers: dict[str, str]
    query: str = ""


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    requests: int = 0
    stored: int = 0

    def summary(self) -> str:
        return f"{self.requests} requests, {self.stored} stored, statuses {dict(sorted(self.statuses.items()))}"


FRESH_ID = {"dataverse": "PrimaryEntityId", "finops": "EventId", "sap": "id", "generic": "id"}


def seed_document(kind: str, rng: random.Random | None = None) -> Any:
    """The kind's real payload; with rng, under a fresh event id, so it is a new event and not a duplicate."""
    document = json.loads((FIXTURES / SEEDS[kind]).read_text())
    if rng is not None:
        document[FRESH_ID[kind]] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return document


def _paths(document: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += _paths(value, (*prefix, index))
    return found


def _set(document: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return document


def _delete(document: Any, path: tuple) -> Any:
    if not path:
        return document
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return document


def mutate(rng: random.Random, document: Any) -> Any:
    """One to four structural mutations of a copy: a value replaced, a key deleted or added, a subtree nested."""
    document = copy.deepcopy(document)
    for _ in range(rng.randint(1, 4)):
        paths = _paths(document)
        path = rng.choice(paths)
        action = rng.random()
        if action < 0.55:
            document = _set(document, path, copy.deepcopy(rng.choice(HOSTILE_VALUES)))
        elif action < 0.75 and path:
            document = _delete(document, path)
        elif action < 0.9 and isinstance(document, dict):
            document[rng.choice(["MessageName", "PrimaryEntityName", "EventId", "id", "type", "Depth", "?"])] = (
                copy.deepcopy(rng.choice(HOSTILE_VALUES))
            )
        else:
            nested: Any = rng.choice(HOSTILE_VALUES)
            for _ in range(rng.randint(1, 60)):
                nested = [nested] if rng.random() < 0.5 else {"a": nested}
            document = _set(document, path, nested)
    return document


def body_for(rng: random.Random, kind: str) -> bytes:
    roll = rng.random()
    if roll < 0.6:
        return json.dumps(mutate(rng, seed_document(kind, rng)), ensure_ascii=rng.random() < 0.5).encode()
    if roll < 0.7:
        # A number literal JSON allows and no column can hold, spliced into a real document.
        text = json.dumps(seed_document(kind))
        return text.replace("1", rng.choice(RAW_NUMBERS).decode(), 1).encode()
    if roll < 0.8:
        text = json.dumps(seed_document(kind)).encode()
        return text[: rng.randint(0, len(text))]  # cut anywhere
    if roll < 0.87:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
    if roll < 0.93:
        return rng.choice([b"[]", b"null", b'"text"', b"1", b"{}", b'{"\\u0000": 1}', b'{"a": "\\ud800"}'])
    return json.dumps(seed_document(kind, rng)).encode()  # the real thing, now and then


def credentials(rng: random.Random, auth: str, secret: str, body: bytes, sign: Callable[..., dict]) -> dict[str, str]:
    """Right credentials most of the time, so the body reaches the parser; otherwise wrong or malformed ones."""
    good = rng.random() < 0.8
    if auth == "header":
        return {"x-icbridge-key": secret if good else rng.choice(["", "wrong", "²", secret + "x", "x" * 500])}
    if auth == "hmac":
        if good:
            return sign(secret=secret, body=body)
        stamp = rng.choice(["²", "١٢٣", "1e3", "-1", "", str(10**30), str(int(time.time())), " 12 ", "0x10"])
        return {
            "x-icbridge-timestamp": stamp,
            "x-icbridge-signature": rng.choice(["", "sha256=00", "sha256=" + "a" * 64]),
        }
    return {}


def case_for(rng: random.Random, kind: str, auth: str, secret: str, sign: Callable[..., dict]) -> Case:
    body = body_for(rng, kind)
    headers = {"content-type": rng.choice(CONTENT_TYPES)} if rng.random() < 0.9 else {}
    headers.update(credentials(rng, auth, secret, body, sign))
    if kind == "dataverse" and rng.random() < 0.2:
        headers["x-ms-dynamics-msg-size-exceeded"] = rng.choice(["true", "", "²"])
    if kind == "sap" and rng.random() < 0.2:  # binary-mode CloudEvent: the envelope in ce-* headers
        headers.update(
            {"ce-specversion": rng.choice(["1.0", "0.3", ""]), "ce-id": "x", "ce-source": "/s", "ce-type": "t"}
        )
    if kind == "generic" and rng.random() < 0.3:
        headers["idempotency-key"] = rng.choice(["k1", "", "²" * 300, "k" * 1000])
    query = ""
    if auth == "query_key":
        query = "code=" + (secret if rng.random() < 0.8 else rng.choice(["", "bad", "%00", "%ff%fe"]))
    if rng.random() < 0.15:
        query += rng.choice(["&x=1", "&code=a&code=b", "&%zz", "&" + "q" * 3000])
    return Case(body=body, headers=headers, query=query.lstrip("&"))


def fuzz(client: Any, endpoints: list[tuple[str, str, str]], requests: int, seed: int, secret: str) -> Tally:
    """Send `requests` cases to the endpoints through a Django test client, checking each answer."""
    from integrations.api.auth import hmac_sign
    from integrations.models import Message

    rng = random.Random(seed)
    tally = Tally()
    for _ in range(requests):
        url, kind, auth = rng.choice(endpoints)
        case = case_for(rng, kind, auth, secret, hmac_sign)
        before = Message.objects.count()
        meta = to_wsgi(case.headers)
        content_type = meta.pop("CONTENT_TYPE", "")
        response = client.generic(
            "POST", f"{url}?{case.query}" if case.query else url, case.body, content_type=content_type, **meta
        )
        after = Message.objects.count()
        tally.requests += 1
        tally.statuses[response.status_code] += 1
        tally.stored += after - before
        where = f"{kind} {auth} {response.status_code} body={case.body[:120]!r} headers={case.headers}"
        if response.status_code >= 500:
            exc: Any = getattr(response, "exc_info", None)
            tally.problems.append(f"5xx: {where} {exc[1]!r}" if exc else f"5xx: {where}")
        elif 200 <= response.status_code < 300:
            if after == before and not response.json().get("duplicate"):
                tally.problems.append(f"2xx stored nothing: {where}")
            media = case.headers.get("content-type", "").split(";")[0].strip()
            json_type = media in ("application/json", "application/cloudevents+json")
            if not json_type and "ce-specversion" not in case.headers:
                tally.problems.append(f"2xx for a body that is not JSON by its content type: {where}")
        elif after != before:
            tally.problems.append(f"4xx stored {after - before}: {where}")
    return tally


def make_endpoints(
    make_flow: Callable[..., Any], make_system: Callable[..., Any], secret: str
) -> list[tuple[str, str, str]]:
    """(url, sender kind, auth) for one flow endpoint of each format, plus a system-level one."""
    from integrations.models import InboundEndpoint, System

    auth = InboundEndpoint.AuthType
    found = []
    for kind, entity, mode, prefix in [
        ("dataverse", "contact", auth.HEADER, "webhooks/dataverse"),
        ("finops", "BusinessEventsAlertEvent", auth.HMAC, "events/finops"),
        ("sap", "sap.s4.beh.salesorder.v1.SalesOrder.Created.v1", auth.QUERY_KEY, "events/sap"),
        ("generic", "salesorder", auth.HEADER, "ingest"),
    ]:
        flow = make_flow(entity=entity)
        InboundEndpoint.objects.create(flow=flow, auth_type=mode, secret=secret)
        found.append((f"/api/{prefix}/{flow.slug}", kind, mode))
    source = make_system(kind=System.Kind.DATAVERSE)
    make_flow(source=source, entity="contact")
    InboundEndpoint.objects.create(system=source, auth_type=auth.HEADER, secret=secret)
    found.append((f"/api/webhooks/dataverse/systems/{source.slug}", "dataverse", auth.HEADER))
    return found


def to_wsgi(headers: dict[str, str]) -> dict[str, str]:
    """Headers as the Django test client takes them (CONTENT_TYPE, HTTP_X_…)."""
    meta = {}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        meta[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    return meta
