"""Fixtures of the API tests: real vendor payloads and their variants, flows with inbound credentials, users by role."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.test import Client

from integrations.models import Flow, InboundEndpoint
from integrations.services.roles import roles_ensure
from tests.conftest import fixture_path

SECRET = "s3cret-key-for-tests"
CONTACT_ID = "6d81597f-0f9f-e711-8122-000d3aa2331c"


def load(name: str) -> Any:
    return json.loads(fixture_path(name).read_text())


def raw(name: str) -> bytes:
    return fixture_path(name).read_bytes()


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    # Throttle history lives in the local-memory cache, shared by every test of the process.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def inbound_flow(make_flow: Callable[..., Flow]) -> Callable[..., Flow]:
    """A flow whose webhook takes the shared-secret header unless told otherwise."""

    def make(*, auth_type: str = InboundEndpoint.AuthType.HEADER, **flow_fields: Any) -> Flow:
        endpoint_fields = {
            key: flow_fields.pop(key)
            for key in list(flow_fields)
            if key in {f.name for f in InboundEndpoint._meta.get_fields()} and key not in ("flow", "system")
        }
        flow_fields.setdefault("entity", "contact")  # what the captured Dataverse webhook is about
        flow = make_flow(**flow_fields)
        InboundEndpoint.objects.create(flow=flow, auth_type=auth_type, secret=SECRET, **endpoint_fields)
        return flow

    return make


def key_header() -> dict[str, str]:
    return {"HTTP_X_ICBRIDGE_KEY": SECRET}


def post_json(client: Client, url: str, body: Any, **headers: Any) -> Any:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    headers.setdefault("content_type", "application/json")
    return client.post(url, data=data, **headers)


# --- Dataverse variants, all derived from the documented contact Update context -----------------


def dataverse_update() -> dict[str, Any]:
    return load("dataverse/webhook-contact-update-remoteexecutioncontext.json")


def dataverse_create_account() -> dict[str, Any]:
    """A Create of an account whose Target carries every typed value Dataverse serialises."""
    context = dataverse_update()
    account_id = "a1b2c3d4-0000-4000-8000-000000000001"
    context.update(
        MessageName="Create",
        PrimaryEntityName="account",
        PrimaryEntityId=account_id,
        OperationId="0e1d2c3b-1111-4111-8111-000000000001",
        PostEntityImages=[],
    )
    context["InputParameters"][0]["value"].update(
        LogicalName="account",
        Id=account_id,
        Attributes=[
            {"key": "accountid", "value": account_id},
            {"key": "name", "value": "Contoso Ltd"},
            {"key": "accountnumber", "value": "C-1001"},
            {"key": "versionnumber", "value": 734512},
            {
                "key": "customertypecode",
                "value": {"__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 3},
            },
            {
                "key": "creditlimit",
                "value": {"__type": "Money:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 25000.5},
            },
            {
                "key": "primarycontactid",
                "value": {
                    "__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts",
                    "Id": CONTACT_ID,
                    "KeyAttributes": [],
                    "LogicalName": "contact",
                    "Name": "James Glynn (sample)",
                    "RowVersion": None,
                },
            },
            {"key": "createdon", "value": "/Date(1506384247000)/"},
        ],
        FormattedValues=[{"key": "customertypecode", "value": "Customer"}],
    )
    return context


def dataverse_delete() -> dict[str, Any]:
    """A Delete: the Target is an EntityReference and a pre-image carries the last state."""
    context = dataverse_update()
    context.update(MessageName="Delete", OperationId="9f9f9f9f-2222-4222-8222-000000000002", PostEntityImages=[])
    context["InputParameters"] = [
        {
            "key": "Target",
            "value": {
                "__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts",
                "Id": CONTACT_ID,
                "KeyAttributes": [],
                "LogicalName": "contact",
                "Name": None,
                "RowVersion": None,
            },
        }
    ]
    context["PreEntityImages"] = [
        {
            "key": "PreImage",
            "value": {
                "Attributes": [{"key": "fullname", "value": "James Glynn (sample)"}],
                "EntityState": None,
                "FormattedValues": [],
                "Id": CONTACT_ID,
                "KeyAttributes": [],
                "LogicalName": "contact",
                "RelatedEntities": [],
                "RowVersion": "734600",
            },
        }
    ]
    return context


def dataverse_truncated() -> dict[str, Any]:
    """What Dataverse sends over 256 KB: no ParentContext, InputParameters or images."""
    context = dataverse_update()
    for name in ("ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages"):
        context.pop(name)
    return context


def dataverse_headers(context: dict[str, Any], **extra: str) -> dict[str, str]:
    return {
        "HTTP_X_MS_DYNAMICS_ORGANIZATION": "org6eadd181.crm.dynamics.com",
        "HTTP_X_MS_DYNAMICS_ENTITY_NAME": context["PrimaryEntityName"],
        "HTTP_X_MS_DYNAMICS_REQUEST_NAME": context["MessageName"],
        "HTTP_X_MS_CORRELATION_REQUEST_ID": "7c2f1d3e-5a4b-4c3d-9e8f-0123456789ab",
        **extra,
    }


def with_change(context: dict[str, Any], **changes: Any) -> dict[str, Any]:
    copied = copy.deepcopy(context)
    copied.update(changes)
    return copied


# --- users by role ----------------------------------------------------------------------------


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    roles_ensure()

    def make(role: str | None, name: str | None = None) -> User:
        user = User.objects.create_user(username=name or (role or "nobody").replace(" ", "_"), password="pw-12345678")
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make
