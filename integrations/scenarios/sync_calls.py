"""Synchronous calls across companies: when a user must not wait for the asynchronous pipeline.

An availability / price check from one company into the other goes straight to the other
side's F&O custom service (POST <F&O>/api/services/<group>/<service>/<operation>) with a short
timeout, through the System's connector (its session and cached token). No Message is
written; every call is audited. The service and its parameter names are configured on the
asked System:

    System.settings["availability_service"] = {
        "service": "IcbAvailabilityServices/IcbAvailabilityService/checkAvailability",
        "params": {"company": "_dataAreaId", "item": "_itemNumber", "quantity": "_quantity"},
        "timeout_seconds": 5,
    }
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any

import requests

from integrations import errors, systems
from integrations.models import CompanyLink, System
from integrations.services.audit import audit_record
from integrations.systems import get_connector

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_PARAMS = {"company": "_dataAreaId", "item": "_itemNumber", "quantity": "_quantity"}


class SyncCallError(Exception):
    """The call could not be answered; status is the HTTP status the API gives back."""

    def __init__(self, message: str, *, status: int, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


def _company_link(reference: str) -> CompanyLink:
    link = CompanyLink.objects.select_related("system_a", "system_b").filter(name=reference).first()
    if link is None and str(reference).isdecimal() and len(str(reference)) < 19:
        link = CompanyLink.objects.select_related("system_a", "system_b").filter(pk=int(reference)).first()
    if link is None:
        raise SyncCallError(f"no company link '{reference}'", status=404, field="company_link")
    return link


def _asked_side(link: CompanyLink, ask_company: str) -> tuple[System, str, str]:
    """(system, company asked, company asking): the named side, else the side whose system can answer."""
    sides = [(link.system_a, link.company_a, link.company_b), (link.system_b, link.company_b, link.company_a)]
    if ask_company:
        for side in sides:
            if side[1].lower() == ask_company.lower():
                return side
        raise SyncCallError(
            f"company '{ask_company}' is not on link '{link.name}' ({link.company_a}, {link.company_b})",
            status=400,
            field="ask_company",
        )
    for side in sides[::-1]:  # the F&O side (system_b in the templates) first
        if systems.has(side[0].kind, "sync_calls") and side[0].settings.get("availability_service"):
            return side
    raise SyncCallError(
        f"neither system of link '{link.name}' has settings.availability_service configured",
        status=400,
        field="company_link",
    )


def _audit(actor: Any, link: CompanyLink, details: dict[str, Any], reason: str) -> None:
    audit_record(actor=actor, action="sync_availability", obj=link, reason=reason, details=details)


def availability_check(
    *,
    company_link: str,
    item: str,
    quantity: Decimal,
    unit: str = "",
    site: str = "",
    warehouse: str = "",
    ask_company: str = "",
    timeout_seconds: float | None = None,
    actor: Any = None,
) -> dict[str, Any]:
    """Ask the other company for availability and price of an item, now.

    1. Resolve the link and the side to ask; its System names the service and the timeout.
    2. Call the service through the System's connector (its session and cached token) with the call's own
       short timeout instead of the delivery timeout.
    3. Timeout → 504, throttled → 503, a refusal of the request → 422, any other failure → 502; all audited.
    """
    link = _company_link(company_link)
    system, company, asking = _asked_side(link, ask_company)
    config = system.settings.get("availability_service") or {}
    if not systems.has(system.kind, "sync_calls") or not config.get("service"):
        raise SyncCallError(
            f"system '{system.name}' of company {company} offers no availability service "
            "(a Finance & Operations system with settings.availability_service.service)",
            status=400,
            field="ask_company",
        )
    if not system.enabled:
        raise SyncCallError(f"system '{system.name}' is disabled", status=503, field="company_link")
    timeout = float(timeout_seconds or config.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS)
    names = {**DEFAULT_PARAMS, **(config.get("params") or {})}
    values = {"company": company, "item": item, "quantity": float(quantity), "unit": unit, "site": site}
    values["warehouse"] = warehouse
    body = {names[name]: value for name, value in values.items() if name in names and value not in ("", None)}
    details = {"asked": f"{company}@{system.slug}", "item": item, "quantity": str(quantity), "timeout": timeout}
    connector = get_connector(system)
    url = f"{connector.base_url}/api/services/{config['service'].strip('/')}"
    started = time.monotonic()
    try:
        # The per-call timeout overrides the System's delivery timeout: a user is waiting.
        response = connector.request("POST", url, json=body, timeout=timeout)
        answer = response.json()
    except errors.ConnectorError as exc:
        elapsed = int((time.monotonic() - started) * 1000)
        status, text = _classify(exc, system, timeout)
        _audit(actor, link, {**details, "status": status, "duration_ms": elapsed}, text)
        logger.info("availability check of %s failed in %d ms: %s", details["asked"], elapsed, text)
        raise SyncCallError(text, status=status) from exc
    except ValueError as exc:  # not JSON
        _audit(actor, link, {**details, "status": 502}, "answer is not JSON")
        raise SyncCallError(f"{system.name} answered with something that is not JSON", status=502) from exc
    elapsed = int((time.monotonic() - started) * 1000)
    _audit(actor, link, {**details, "status": 200, "duration_ms": elapsed}, "answered")
    return {
        "company": company,
        "asked_by": asking,
        "system": system.slug,
        "item": item,
        "quantity": str(quantity),
        "answer": answer if isinstance(answer, dict) else {"value": answer},
        "duration_ms": elapsed,
    }


def _classify(exc: errors.ConnectorError, system: System, timeout: float) -> tuple[int, str]:
    if isinstance(exc.__cause__, requests.Timeout):
        return 504, f"{system.name} did not answer within {timeout:g} s"
    if isinstance(exc, errors.ThrottledError):
        return 503, f"{system.name} is throttling us; try again in {exc.retry_after:.0f} s"
    if isinstance(exc, errors.RejectedError):  # the connector says: about the data, not the service
        return 422, f"{system.name} refused the request: {exc.message}"
    return 502, f"{system.name} could not answer: {exc.message}"
