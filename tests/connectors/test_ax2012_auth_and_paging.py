"""Ax2012Connector's sign-in paths (NTLM, App Proxy user token) and AifDocumentPaging, against the emulator."""

from __future__ import annotations

import pytest

from integrations import errors
from integrations.models import Flow, Message, System
from integrations.polling.poll import flow_poll
from integrations.protocols import microsoft as msal_auth
from integrations.protocols.transport import DeliveryRequest
from integrations.scenarios.install import templates_install
from integrations.systems import get_connector
from integrations.systems.ax2012.auth import clear_user_providers
from sandbox import azuread
from sandbox.ax2012 import ports
from sandbox.models import EmulatorRecord

SERVICE_ACCOUNT = "svc-icbridge@contoso.onmicrosoft.com"


@pytest.fixture
def aif(live_server) -> str:
    return f"{live_server.url}/sandbox/ax2012/MicrosoftDynamicsAXAif60"


@pytest.fixture
def fresh_tokens():
    msal_auth.clear_providers()
    clear_user_providers()
    yield
    msal_auth.clear_providers()
    clear_user_providers()


def azure_ad_system(make_system, aif: str, live_server, auth_type: str, client_id: str, secret: str, **kw) -> System:
    return make_system(
        kind=System.Kind.AX2012,
        base_url=aif,
        auth_type=auth_type,
        auth_url=f"{live_server.url}/sandbox/azuread/{azuread.DEFAULT_TENANT}",
        client_id=client_id,
        secret=secret,
        **kw,
    )


def create_customer(system: System, name: str, idem: str) -> str:
    result = get_connector(system).deliver(
        DeliveryRequest(
            entity="CustomerService",
            operation="create",
            company="DK01",
            payload={"Name": name, "CustGroup": "IC"},
            key={},
            idempotency_key=idem,
        )
    )
    return result.target_key


def acting_user() -> set[str]:
    """Who AIF recorded as the caller of each processed message."""
    return {r.data["user"] for r in EmulatorRecord.objects.filter(emulator="ax2012", entity="AifMessageLog")}


def test_the_shipped_ax_system_signs_in_with_ntlm_and_its_flow_delivers(live_server):
    templates_install(name="intercompany", base_url=live_server.url)
    ax = System.objects.get(slug="sandbox-ax2012")

    key = create_customer(ax, "Via Windows auth", "ntlm-1")

    assert ax.auth_type == System.AuthType.NTLM
    assert key.startswith("C")
    assert acting_user() == {"CONTOSO\\icbridge"}


def test_ntlm_with_a_wrong_password_is_an_auth_error(make_system, aif):
    system = make_system(
        kind=System.Kind.AX2012, base_url=aif, auth_type="ntlm", client_id="CONTOSO\\icbridge", secret="wrong"
    )

    with pytest.raises(errors.AuthError):
        create_customer(system, "Refused", "ntlm-wrong")


def test_poll_pages_through_every_changed_key(make_system, make_flow, recorder_system, aif):
    ports.set_document_filters("CustomerService", [{}])
    system = make_system(
        kind=System.Kind.AX2012, base_url=aif, auth_type="basic", client_id="icbridge", secret="sandbox", batch_size=2
    )
    keys = [create_customer(system, f"Paged {n}", f"page-{n}") for n in range(5)]
    flow = make_flow(
        entity="customer",
        source=system,
        target=recorder_system,
        trigger=Flow.Trigger.POLL,
        options={"ax_company": "DK01"},
    )

    result = flow_poll(flow=flow)

    assert (result.changed_keys, result.messages_created) == (5, 5)  # three pages of at most two keys
    assert sorted(Message.objects.filter(flow=flow).values_list("source_record_key", flat=True)) == sorted(keys)


def test_service_account_user_token_passes_app_proxy_pre_authentication(make_system, aif, live_server, fresh_tokens):
    ports.set_app_proxy(True)
    azuread.register_app(client_id="ax-app-proxy", client_secret="unused-by-a-public-client")
    azuread.register_user(upn=SERVICE_ACCOUNT, password="svc-password")
    system = azure_ad_system(
        make_system,
        aif,
        live_server,
        System.AuthType.USER_PASSWORD,
        "ax-app-proxy",
        "svc-password",
        settings={"ax_service_account": SERVICE_ACCOUNT},
    )

    first = create_customer(system, "Via App Proxy", "proxy-1")
    second = create_customer(system, "Via App Proxy 2", "proxy-2")

    assert first != second
    assert acting_user() == {SERVICE_ACCOUNT}
    assert azuread.tokens_issued("ax-app-proxy") == 1  # one user token, from msal's cache afterwards


def test_app_only_token_is_refused_by_app_proxy(make_system, aif, live_server, fresh_tokens):
    ports.set_app_proxy(True)
    azuread.register_app(client_id="ax-daemon", client_secret="daemon-secret")
    system = azure_ad_system(
        make_system, aif, live_server, System.AuthType.CLIENT_CREDENTIALS, "ax-daemon", "daemon-secret"
    )

    with pytest.raises(errors.AuthError):
        create_customer(system, "Refused", "proxy-app-only")
