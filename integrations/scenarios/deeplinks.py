"""Deep links: from a record on one side, the URL of the linked F&O form in the right company.

F&O opens a form from a URL of the shape ``<base>?cmp=<company>&mi=<menu item>&<param>=<value>``.
The base URL (one per environment) and the parameter name are configured on the F&O System,
never hard-coded:

    System.settings = {
        "deep_link_base": "https://contoso.operations.dynamics.com/",   # default: the System's base URL
        "deep_link_param": "CustAccount",                               # default parameter name
        "deep_link_menu_items": {"customer": "CustTable", "salesorder": "SalesTableDetails"},
        "deep_link_params": {"salesorder": "SalesId"},                  # per entity, overrides deep_link_param
    }

A Flow may override the menu item and parameter for its entity with
Flow.options["deep_link"] = {"menu_item": ..., "param": ..., "entity": ...}.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from integrations import systems
from integrations.errors import CallerError
from integrations.flow_options import FlowOptionsError
from integrations.models import Flow, RecordLink, System
from integrations.scenarios.chains import parse_key

# Separates the legal entity from the record id in a compound key (dataAreaId|CustomerAccount).
KEY_SEPARATOR = "|"


class DeepLinkError(CallerError):
    """No deep link can be built; the text says why, for the caller."""

    default_status = 404

    @property
    def message(self) -> str:
        return self.text


@dataclass(frozen=True)
class DeepLink:
    url: str
    system: System
    company: str
    menu_item: str
    param: str
    value: str


def _finops_side(flow: Flow) -> tuple[System, bool]:
    """The F&O system of the flow, and whether it is the flow's target."""
    if systems.has(flow.target.kind, "deeplinks"):
        return flow.target, True
    if systems.has(flow.source.kind, "deeplinks"):
        return flow.source, False
    raise DeepLinkError(f"flow '{flow.slug}' does not touch a Finance & Operations system", status=400)


def _split_key(key: str, company: str, param: str) -> tuple[str, str]:
    """(company, record id) from a target key; a key that names its legal entity wins over the configured one."""
    parts = parse_key(key)
    if parts:
        area = parts.pop("dataAreaId", "") or company
        value = parts.get(param) or (next(iter(parts.values())) if len(parts) == 1 else "")
        if not value:
            raise DeepLinkError(f"key {key!r} has no field '{param}' (the link's parameter)", status=400)
        return area.upper(), value
    head, separator, tail = key.partition(KEY_SEPARATOR)
    if separator and head and tail:
        return head, tail
    return company, key


def deeplink_for(*, flow_slug: str, record_id: str) -> DeepLink:
    """Build the F&O URL for the record linked to `record_id` through the flow's RecordLink.

    1. Find the flow and its F&O side; the record id is the key on the other side.
    2. Find the RecordLink: by source key when F&O is the target, by target key when F&O is the source.
    3. Read base URL, menu item and parameter name from the F&O System's settings (flow options override).
    """
    flow = Flow.objects.select_related("source", "target", "company_link").filter(slug=flow_slug).first()
    if flow is None:
        raise DeepLinkError(f"no flow '{flow_slug}'")
    finops, finops_is_target = _finops_side(flow)
    if finops_is_target:
        link = RecordLink.objects.filter(flow=flow, source_key=record_id).exclude(target_key="").first()
        finops_key = link.target_key if link else ""
    else:
        link = RecordLink.objects.filter(flow=flow, target_key=record_id).first()
        finops_key = link.source_key if link else ""
    if link is None:
        raise DeepLinkError(f"record '{record_id}' has not been synced by flow '{flow.slug}' yet")

    settings = finops.settings or {}
    try:
        override = flow.opts.deep_link
    except FlowOptionsError as exc:  # misconfigured like a missing setting: say which key
        raise DeepLinkError(str(exc), status=400) from None
    entity = override.entity or flow.entity
    menu_item = override.menu_item or (settings.get("deep_link_menu_items") or {}).get(entity, "")
    if not menu_item:
        raise DeepLinkError(
            f"system '{finops.slug}' has no menu item for entity '{entity}': "
            f"set settings.deep_link_menu_items.{entity} (or the flow's options.deep_link.menu_item)",
            status=400,
        )
    param = (
        override.param or (settings.get("deep_link_params") or {}).get(entity) or settings.get("deep_link_param", "")
    )
    if not param:
        raise DeepLinkError(f"system '{finops.slug}' has no settings.deep_link_param", status=400)
    base = settings.get("deep_link_base") or finops.base_url
    configured_company = ""
    if flow.company_link is not None:
        context = flow.company_link.context_for(flow.source)
        configured_company = context["target_company"] if finops_is_target else context["source_company"]
    configured_company = configured_company or settings.get("default_company", "")
    company, value = _split_key(finops_key, configured_company, param)
    if not company:
        raise DeepLinkError(
            f"flow '{flow.slug}' has no company link and system '{finops.slug}' no settings.default_company",
            status=400,
        )
    query = urlencode({"cmp": company, "mi": menu_item, param: value})
    separator = "&" if "?" in base else "?"
    return DeepLink(
        url=f"{base}{separator}{query}", system=finops, company=company, menu_item=menu_item, param=param, value=value
    )
