"""Who may do what: every admin action and every API endpoint, for the three console roles and anonymous.

The tables are the permission matrix of docs/security.md. "Allowed" means not refused (the answer may
still be 400/404/409 for the data given); refused means 401/403 or the admin's login redirect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import AnonymousUser, User
from django.test import Client, RequestFactory

from integrations.models import AuditEntry, Flow
from integrations.services.roles import AUDITOR, ENGINEER, OPERATOR
from tests.security.conftest import ROLES, Hub, denied

pytestmark = pytest.mark.django_db

OP, ENG, AUD = OPERATOR, ENGINEER, AUDITOR
NOBODY: frozenset[str] = frozenset()

# Admin actions (model → action → roles that get it), delete_selected included. A role missing a row gets none.
ADMIN_ACTIONS: dict[str, dict[str, set[str]]] = {
    "integrations.system": {
        "test_connection": {ENG},
        "pause_systems": {OP, ENG},
        "resume_systems": {OP, ENG},
        "delete_selected": {ENG},
    },
    "integrations.flow": {
        "enable_flows": {ENG},
        "disable_flows": {ENG},
        "pause_flows": {OP, ENG},
        "resume_flows": {OP, ENG},
        "preview_initial_load": {ENG},
        "start_initial_load": {ENG},
        "delete_selected": {ENG},
    },
    "integrations.loadrun": {"cancel_loads": {ENG}},
    "integrations.companylink": {"delete_selected": {ENG}},
    "integrations.inboundendpoint": {"delete_selected": {ENG}},
    "integrations.mappingversion": {"restore": {ENG}},
    "integrations.valuemap": {"delete_selected": {ENG}},
    "integrations.message": {"retry_selected": {OP}, "discard_selected": {OP}},
    "integrations.recordlink": {},
    "integrations.attempt": {},
    "integrations.auditentry": {},
    "monitoring.reconciliationschedule": {"run_now": {ENG}, "delete_selected": {ENG}},
    "monitoring.reconciliationrun": {"repair": {OP}},
    "monitoring.alertrule": {"evaluate_now": {ENG}, "delete_selected": {ENG}},
    "monitoring.alert": {},
    "monitoring.discrepancy": {},
    "monitoring.heartbeat": {},
    "sandbox.faultsettings": {},
}


def _user_for(role: str, role_user: Callable[[str], User | None]) -> Any:
    return role_user(role) or AnonymousUser()


@pytest.mark.parametrize("role", ROLES)
def test_every_admin_action_is_offered_only_to_its_roles(
    role: str, role_user: Callable[[str], User | None], hub: Hub
) -> None:
    request = RequestFactory().get("/admin/")
    request.user = _user_for(role, role_user)
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        # Actions run only from the changelist, so a page the user cannot open offers none.
        reachable = role != "anonymous" and model_admin.has_view_or_change_permission(request)
        offered = set(model_admin.get_actions(request)) if reachable else set()
        expected = {action for action, roles in ADMIN_ACTIONS.get(label, {}).items() if role in roles}
        declared = set(model_admin.actions or ()) | {"delete_selected"}
        if label not in ADMIN_ACTIONS:
            # A new admin page must join the matrix; until then no role may have an action on it.
            assert offered == set(), (label, role, offered)
            continue
        assert offered == expected, (label, role)
        assert expected <= declared, label


def _api(hub: Hub) -> list[tuple[str, str, dict[str, Any] | None, set[str]]]:
    """(method, url, JSON body, roles allowed) for every API route a console user calls."""
    m, flow = hub.message.pk, hub.flow.slug
    return [
        ("get", "/api/messages", None, {OP, ENG, AUD}),
        ("get", f"/api/messages/{m}", None, {OP, ENG, AUD}),
        ("post", f"/api/messages/{m}/retry", {"reason": "t"}, {OP}),
        ("post", f"/api/messages/{m}/replay", {"reason": "t"}, {OP}),
        ("post", f"/api/messages/{m}/discard", {"reason": "t"}, {OP}),
        ("post", "/api/messages/retry", {"ids": [m], "reason": "t"}, {OP}),
        ("get", "/api/flows", None, {OP, ENG, AUD}),
        ("get", f"/api/flows/{flow}", None, {OP, ENG, AUD}),
        ("post", f"/api/flows/{flow}/pause", {"reason": "t"}, {OP, ENG}),
        ("post", f"/api/flows/{flow}/resume", {"reason": "t"}, {OP, ENG}),
        ("get", f"/api/flows/{flow}/mapping", None, {OP, ENG, AUD}),
        ("post", f"/api/flows/{flow}/mapping", {"spec": {}}, {ENG}),
        ("post", f"/api/flows/{flow}/mapping/preview", {"payload": {}}, {OP, ENG, AUD}),
        ("get", "/api/systems", None, {OP, ENG, AUD}),
        ("post", f"/api/systems/{hub.flow.target.slug}/pause", {"reason": "t"}, {OP, ENG}),
        ("post", f"/api/systems/{hub.flow.target.slug}/resume", {"reason": "t"}, {OP, ENG}),
        ("get", "/api/audit", None, {AUD}),
        ("get", f"/api/deeplink/{flow}/R-1", None, {OP, ENG, AUD}),
        ("get", "/api/chains/c-1", None, {OP, ENG, AUD}),
        # Calls F&O with the hub's credentials: not for the auditor, nor for a user without a role.
        ("post", "/api/sync/availability", {"company_link": "nowhere", "item": "A", "quantity": "1"}, {OP, ENG}),
        # Webhooks take the sender's key, never a console session.
        ("post", f"/api/webhooks/dataverse/{flow}", {}, NOBODY),
        # The sandbox control API needs FaultSettings permissions, which no role has (superusers only).
        ("get", "/sandbox/control/recorder/faults", None, NOBODY),
        ("put", "/sandbox/control/recorder/faults", {"down": True}, NOBODY),
        ("post", "/sandbox/control/recorder/reset", None, NOBODY),
    ]


@pytest.mark.parametrize("role", ROLES)
def test_every_api_endpoint_admits_exactly_its_roles(
    role: str, hub: Hub, client_as: Callable[[str], Client], settings: Any
) -> None:
    settings.ICBRIDGE_OPERATOR_THROTTLE_RATE = "10000/s"
    client = client_as(role)
    for method, url, body, allowed in _api(hub):
        response = getattr(client, method)(url, body or {}, content_type="application/json")
        assert response.status_code < 500, (role, method, url, response.content[:300])
        assert denied(response) is (role not in allowed), (role, method, url, response.status_code)


def _admin_views(hub: Hub) -> list[tuple[str, str, set[str]]]:
    m = hub.message.pk
    return [
        ("get", f"/admin/integrations/message/{m}/retry/", {OP}),
        ("get", f"/admin/integrations/message/{m}/discard/", {OP}),
        ("get", f"/admin/integrations/message/{m}/replay/", {OP}),
        ("get", "/admin/integrations/system/add/", {ENG}),
        ("get", "/admin/integrations/inboundendpoint/add/", {ENG}),
        ("get", "/admin/integrations/flow/add/", {ENG}),
        ("get", "/admin/chain/c-1/", {OP, ENG, AUD}),
        ("get", "/monitoring/dashboard", {OP, ENG, AUD}),
        ("get", "/admin/sandbox/faultsettings/", NOBODY),
    ]


@pytest.mark.parametrize("role", ROLES)
def test_admin_pages_with_side_effects_admit_exactly_their_roles(
    role: str, hub: Hub, client_as: Callable[[str], Client]
) -> None:
    client = client_as(role)
    for method, url, allowed in _admin_views(hub):
        response = getattr(client, method)(url)
        assert response.status_code < 500, (role, url)
        assert denied(response) is (role not in allowed), (role, url, response.status_code)


@pytest.mark.parametrize("role", ROLES)
def test_changelists_open_for_viewers_and_posts_refused_for_non_editors(
    role: str, role_user: Callable[[str], User | None], hub: Hub, client_as: Callable[[str], Client]
) -> None:
    # given every registered admin page
    user = role_user(role)
    client = client_as(role)
    for model in admin.site._registry:
        opts = model._meta
        url = f"/admin/{opts.app_label}/{opts.model_name}/"
        can_view = bool(user) and (
            user.has_perm(f"{opts.app_label}.view_{opts.model_name}")
            or user.has_perm(f"{opts.app_label}.change_{opts.model_name}")
        )
        # then its list opens exactly for those with the model permission
        response = client.get(url)
        assert response.status_code < 500, url
        assert denied(response) is not can_view, (role, url)
    # and the auditor may look at a flow but never change it
    if role == AUDITOR:
        flow = Flow.objects.get(slug="orders")
        response = client.post(f"/admin/integrations/flow/{flow.pk}/change/", {"name": "x"})
        assert response.status_code == 403
        flow.refresh_from_db()
        assert flow.name != "x"


def test_a_signed_in_user_without_a_role_cannot_make_the_hub_call_an_erp(hub: Hub, settings: Any) -> None:
    # given a staff user in no role group
    settings.ICBRIDGE_OPERATOR_THROTTLE_RATE = "10000/s"
    client = Client()
    client.force_login(User.objects.create_user("nobody", password="pw", is_staff=True))
    body = {"company_link": hub.link.name, "item": "A0001", "quantity": "1"}
    # when they ask for a synchronous availability call, or a system's connection test
    sync = client.post("/api/sync/availability", body, content_type="application/json")
    test = client.post(
        "/admin/integrations/system/",
        {"action": "test_connection", "_selected_action": [hub.fo.pk], "index": 0},
    )
    # then both are refused, and no call was audited
    assert sync.status_code == 403
    assert denied(test)
    assert not AuditEntry.objects.filter(action__in=["sync_availability", "test_connection"]).exists()


def test_a_caller_cannot_hold_an_erp_call_open_for_long(client_as: Callable[[str], Client], hub: Hub) -> None:
    body = {"company_link": hub.link.name, "item": "A0001", "quantity": "1", "timeout_seconds": 60}

    response = client_as(OPERATOR).post("/api/sync/availability", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["field"] == "timeout_seconds"


def test_sync_calls_are_throttled_per_user(client_as: Callable[[str], Client], hub: Hub, settings: Any) -> None:
    settings.ICBRIDGE_SYNC_THROTTLE_RATE = "2/min"
    client = client_as(OPERATOR)
    body = {"company_link": "nowhere", "item": "A0001", "quantity": "1"}

    url = "/api/sync/availability"
    statuses = [client.post(url, body, content_type="application/json").status_code for _ in range(3)]

    assert statuses[2] == 429
