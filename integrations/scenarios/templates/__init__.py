"""Flow templates: the three business scenarios as data, installed by services.templates.templates_install.

A template is a dict (one module per scenario, see intercompany.py):

    systems         [{slug, name, kind, base_url, auth_type, auth_url, client_id, secret, scope, settings, …}]
    company_links   [{name, system_a, company_a, customer_in_a_for_b, …, system_b, company_b, …}]
    value_maps      [{name, description, entries: {source value: target value}}]
    flows           [{slug, name, entity, source, target, company_link, trigger, target_entity, target_operation,
                      target_key_fields, mapping_spec, master, conflict_policy, retry_policy, options, inbound}]
                    trigger: webhook, business_event or poll; "schedule" needs a crontab, chosen in the console
                    (docs/operations.md, Schedules), so no template sets it
    subscriptions   [{emulator, event_type, url, headers}]  where the sandbox emulators push their events

Strings may hold "{base}": the hub (or environment) root URL given at install time. The pieces the
templates share (the retry policy, flow and mapping builders) are in builders.py; the systems in systems.py.

subscriptions are derived from the flows (subscriptions() below), never written by hand:
- a business-event flow (trigger "business_event") from F&O or S/4 subscribes to each of its
  options["event_types"];
- a webhook flow from Dataverse (trigger "webhook") registers a webhook step for its entity, the table's
  logical name (account, contact, quote, salesorder, task…): Create and Update, or only the messages in
  options["webhook_messages"] (["Update"]: a completed task is an Update), as event_type
  "<entity>:<Message>". The step sends the flow's inbound credential as Dataverse does: auth_type
  "header" as an HttpHeader, "query_key" as the WebhookKey (?code=); "none" sends nothing.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any
from urllib.parse import urlencode

from integrations import mapping
from integrations.kinds import KINDS
from integrations.systems import inbound_format

# name → module defining TEMPLATE; kept as dotted paths so listing names imports nothing.
TEMPLATES: dict[str, str] = {
    "intercompany": "integrations.scenarios.templates.intercompany",
    "prospect_to_cash": "integrations.scenarios.templates.prospect_to_cash",
    "order_to_cash": "integrations.scenarios.templates.order_to_cash",
}


class TemplateError(ValueError):
    """A template that cannot be installed; the text names the template and the part."""


def _substitute(value: Any, base_url: str) -> Any:
    if isinstance(value, str):
        return value.replace("{base}", base_url)
    if isinstance(value, dict):
        return {key: _substitute(item, base_url) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, base_url) for item in value]
    return value


def raw(name: str) -> dict[str, Any]:
    if name not in TEMPLATES:
        raise TemplateError(f"unknown template '{name}'; known: {', '.join(sorted(TEMPLATES))}")
    return import_module(TEMPLATES[name]).TEMPLATE


def render(name: str, *, base_url: str) -> dict[str, Any]:
    """The template with {base} filled in, each flow tagged with its template, references checked."""
    base_url = base_url.rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise TemplateError(f"base URL must start with http:// or https://, got {base_url!r}")
    data = _substitute(raw(name), base_url)
    for flow in data["flows"]:
        flow["options"] = {**flow.get("options", {}), "template": name}
    data["subscriptions"] = subscriptions(data, base_url)
    validate(name, data)
    return data


WEBHOOK_MESSAGES = ("Create", "Update", "Delete")  # what a Dataverse webhook step can be registered for
# The inbound credential's default name per auth type (as integrations.api.auth names it).
CREDENTIAL_NAMES = {"header": "x-icbridge-key", "query_key": "code"}


def ingress_url(kind: str | None, base_url: str, flow_slug: str) -> str:
    """Where a pushing sender's events for one flow enter the hub ("" for a kind that does not push)."""
    fmt = inbound_format(kind) if kind in KINDS else None
    return f"{base_url}/api/{fmt.prefix}/{flow_slug}" if fmt else ""


def subscriptions(data: dict[str, Any], base_url: str) -> list[dict[str, Any]]:
    """The sandbox emulators' push targets: each business-event flow gets the event types it takes,
    each Dataverse webhook flow a webhook step per message it takes (see the module docstring)."""
    kinds = {system["slug"]: system["kind"] for system in data["systems"]}
    found = []
    for flow in data["flows"]:
        kind = kinds.get(flow["source"])
        url = ingress_url(kind, base_url, flow["slug"])
        if not url:
            continue
        if flow.get("trigger") == "webhook":
            found += _webhook_steps(flow, kind, url)
            continue
        if flow.get("trigger") != "business_event":
            continue
        for event_type in flow["options"].get("event_types", []):
            found.append({"emulator": kind, "event_type": event_type, "url": url})
    return found


def _webhook_steps(flow: dict[str, Any], kind: str, url: str) -> list[dict[str, Any]]:
    """The Dataverse webhook steps of one flow, with the credentials its inbound endpoint wants."""
    where = f"{flow['options'].get('template', 'template')}: flow {flow['slug']}"
    inbound = flow.get("inbound") or {}
    auth_type = inbound.get("auth_type", "none")
    name = inbound.get("credential_name") or CREDENTIAL_NAMES.get(auth_type, "")
    headers: dict[str, str] = {}
    if auth_type == "header":
        headers = {name: inbound.get("secret", "")}
    elif auth_type == "query_key":
        url = f"{url}?{urlencode({name: inbound.get('secret', '')})}"
    elif auth_type != "none":
        raise TemplateError(
            f"{where}: inbound auth_type '{auth_type}' is not one a Dataverse webhook can send "
            "(header, query_key or none)"
        )
    messages = flow["options"].get("webhook_messages")
    if messages is None:
        return [{"emulator": kind, "event_type": flow["entity"], "url": url, "headers": headers}]
    if not isinstance(messages, list) or not messages or not all(m in WEBHOOK_MESSAGES for m in messages):
        raise TemplateError(
            f"{where}: options.webhook_messages must be a list of {', '.join(WEBHOOK_MESSAGES)}, got {messages!r}"
        )
    return [
        {"emulator": kind, "event_type": f"{flow['entity']}:{message}", "url": url, "headers": headers}
        for message in messages
    ]


def validate(name: str, data: dict[str, Any]) -> None:
    """Every reference in the template points at something the template (or a sibling) defines."""
    systems = {system["slug"] for system in data["systems"]}
    links = {link["name"] for link in data.get("company_links", [])}
    maps = {value_map["name"] for value_map in data.get("value_maps", [])}
    flows = {flow["slug"] for flow in data["flows"]}
    for link in data.get("company_links", []):
        for side in ("system_a", "system_b"):
            if link[side] not in systems:
                raise TemplateError(f"{name}: company link {link['name']}: {side} '{link[side]}' is not defined")
    for flow in data["flows"]:
        where = f"{name}: flow {flow['slug']}"
        for side in ("source", "target"):
            if flow[side] not in systems:
                raise TemplateError(f"{where}: {side} '{flow[side]}' is not a system of the template")
        if flow.get("company_link") and flow["company_link"] not in links:
            raise TemplateError(f"{where}: company link '{flow['company_link']}' is not defined")
        rules = [flow.get("options", {}).get("chain"), *flow.get("options", {}).get("links", [])]
        for rule in filter(None, rules):
            if rule.get("follows") not in flows:
                raise TemplateError(f"{where}: follows '{rule.get('follows')}', which is not a flow of the template")
        for echo_of in _as_list(flow.get("options", {}).get("echo_of")):
            if echo_of not in flows:
                raise TemplateError(f"{where}: echo_of '{echo_of}' is not a flow of the template")
        problems = mapping.validate_spec(flow.get("mapping_spec", {}), check_value_maps=False)
        if problems:
            raise TemplateError(f"{where}: mapping spec: {'; '.join(problems)}")
        if flow.get("mapping_spec"):
            for used in sorted(mapping.compiled(flow["mapping_spec"]).value_maps - maps):
                raise TemplateError(f"{where}: mapping uses value map '{used}', which the template does not define")


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)
