"""Flow.options, declared: every key a flow may set, its type and allowed values (docs/flow-options.md).

Flow.options is stored as JSON; this module is its schema. parse_options() turns the stored dict
into a frozen FlowOptions (nested specs typed too) or raises FlowOptionsError listing every
problem by key path: "options.only_when.statecode: unknown key 'nto'; allowed: not",
"options.chain.step: expected a whole number, got '2'". Unknown keys are refused, so a typo cannot
silently switch a rule off.

Read a flow's options through Flow.opts (parsed once per value); the admin form, Flow.clean() and
the template installer validate on save. A bottom-layer module: it imports nothing of the hub but
its error taxonomy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from integrations.errors import MappingError

Scalar = str | int | float | bool | None


class FlowOptionsError(MappingError, ValueError):
    """Options that do not fit the schema. A MappingError: a message of such a flow fails, naming the key."""

    def __init__(self, problems: list[str], *, where: str = "") -> None:
        self.problems = list(problems)
        text = "; ".join(self.problems)
        super().__init__(f"{where}: {text}" if where else text, field="options")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- value kinds: each parses one JSON value, appending what is wrong to problems ----------------------------


class Kind:
    """How one option's JSON value is read; `expected` says what is allowed, for messages and docs."""

    expected = "a value"

    def parse(self, value: Any, path: str, problems: list[str]) -> Any:
        raise NotImplementedError

    def refuse(self, value: Any, path: str, problems: list[str]) -> None:
        problems.append(f"{path}: expected {self.expected}, got {_show(value)}")


class Text(Kind):
    def __init__(self, *, non_empty: bool = False) -> None:
        self.non_empty = non_empty
        self.expected = "a non-empty string" if non_empty else "a string"

    def parse(self, value: Any, path: str, problems: list[str]) -> str | None:
        if not isinstance(value, str) or (self.non_empty and not value.strip()):
            return self.refuse(value, path, problems)
        return value


class Flag(Kind):
    expected = "true or false"

    def parse(self, value: Any, path: str, problems: list[str]) -> bool | None:
        return value if isinstance(value, bool) else self.refuse(value, path, problems)


class Whole(Kind):
    expected = "a whole number"

    def parse(self, value: Any, path: str, problems: list[str]) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return self.refuse(value, path, problems)
        return value


class OneOf(Kind):
    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.expected = "one of " + ", ".join(choices)

    def parse(self, value: Any, path: str, problems: list[str]) -> str | None:
        return value if value in self.choices and isinstance(value, str) else self.refuse(value, path, problems)


class Texts(Kind):
    """A list of strings; one string alone is a list of one. Items are non-empty, from choices if given."""

    def __init__(self, *, choices: tuple[str, ...] = (), non_empty: bool = False, single: bool = True) -> None:
        self.choices, self.non_empty, self.single = choices, non_empty, single
        self.item = f"one of {', '.join(choices)}" if choices else "a non-empty string"
        items = self.item if choices else "strings"
        self.expected = ("a non-empty list of " if non_empty else "a list of ") + items
        if single:
            self.expected = "a string or " + self.expected

    def parse(self, value: Any, path: str, problems: list[str]) -> tuple[str, ...] | None:
        items = [value] if self.single and isinstance(value, str) else value
        if not isinstance(items, list) or (self.non_empty and not items):
            return self.refuse(value, path, problems)
        before = len(problems)
        for number, item in enumerate(items):
            if not isinstance(item, str) or not item.strip() or (self.choices and item not in self.choices):
                problems.append(f"{path}[{number}]: expected {self.item}, got {_show(item)}")
        return tuple(items) if len(problems) == before else None


class FieldPaths(Kind):
    """{document field: payload path}: the key of a document to read, taken from the event."""

    expected = "a non-empty object of field: payload path (strings)"

    def parse(self, value: Any, path: str, problems: list[str]) -> Mapping[str, str] | None:
        if not isinstance(value, dict) or not value:
            return self.refuse(value, path, problems)
        before = len(problems)
        for name, item in value.items():
            if not isinstance(item, str) or not item.strip():
                problems.append(f"{path}.{name}: expected a payload path (a non-empty string), got {_show(item)}")
        return MappingProxyType(dict(value)) if len(problems) == before else None


@dataclass(frozen=True)
class FieldCondition:
    """One only_when entry: the record's field must equal one of values (or, negated, none of them)."""

    values: tuple[Scalar, ...]
    negate: bool = False


class Conditions(Kind):
    """only_when: {field: value | [values] | {"not": value | [values]}}."""

    expected = 'an object of field: value, [values] or {"not": [values]}'
    _value = "a value (string, number, true/false, null) or a non-empty list of values"

    def parse(self, value: Any, path: str, problems: list[str]) -> Mapping[str, FieldCondition] | None:
        if not isinstance(value, dict):
            return self.refuse(value, path, problems)
        before = len(problems)
        found: dict[str, FieldCondition] = {}
        for name, wanted in value.items():
            where, negate = f"{path}.{name}", False
            if isinstance(wanted, dict):
                if set(wanted) != {"not"}:
                    unknown = [key for key in wanted if key != "not"]
                    problems.append(
                        f"{where}: unknown key {_show(unknown[0])}; allowed: not"
                        if unknown
                        else f'{where}: expected {self._value}, or {{"not": …}}, got {_show(wanted)}'
                    )
                    continue
                wanted, where, negate = wanted["not"], f"{where}.not", True
            values = self._values(wanted, where, problems)
            if values is not None:
                found[name] = FieldCondition(values, negate)
        return MappingProxyType(found) if len(problems) == before else None

    def _values(self, wanted: Any, where: str, problems: list[str]) -> tuple[Scalar, ...] | None:
        items = wanted if isinstance(wanted, list) else [wanted]
        if not items or not all(item is None or isinstance(item, str | int | float | bool) for item in items):
            problems.append(f"{where}: expected {self._value}, got {_show(wanted)}")
            return None
        return tuple(items)


class Record(Kind):
    """A nested object read into the dataclass `spec` (its fields declared with option())."""

    def __init__(self, spec: type) -> None:
        self.spec = spec
        self.expected = f"an object with keys {', '.join(keys_of(spec))}"

    def parse(self, value: Any, path: str, problems: list[str]) -> Any:
        return parse_record(self.spec, value, path, problems)


class Records(Kind):
    """A list of nested objects of one spec."""

    def __init__(self, spec: type) -> None:
        self.spec = spec
        self.expected = f"a list of objects with keys {', '.join(keys_of(spec))}"

    def parse(self, value: Any, path: str, problems: list[str]) -> tuple[Any, ...] | None:
        if not isinstance(value, list):
            return self.refuse(value, path, problems)
        before = len(problems)
        items = tuple(parse_record(self.spec, item, f"{path}[{n}]", problems) for n, item in enumerate(value))
        return items if len(problems) == before else None


# --- declaring and reading records ----------------------------------------------------------------------------


def option(kind: Kind, *, default: Any = None, key: str = "", required: bool = False, doc: str = "") -> Any:
    """A dataclass field that is one option: its JSON key (when not the attribute name), kind and meaning."""
    factory: Callable[[], Any] | None = None
    if isinstance(default, dict | list):
        factory, default = (lambda value=default: type(value)(value)), MISSING
    metadata = {"kind": kind, "key": key, "required": required, "doc": doc}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def keys_of(spec: type) -> list[str]:
    """The JSON keys a record accepts, in declaration order."""
    return [item.metadata.get("key") or item.name for item in fields(spec)]


def parse_record(spec: type, value: Any, path: str, problems: list[str]) -> Any:
    """value (a JSON object) as an instance of the dataclass spec; None, with problems added, if it does not fit."""
    allowed = keys_of(spec)
    if not isinstance(value, dict):
        problems.append(f"{path}: expected an object with keys {', '.join(allowed)}, got {_show(value)}")
        return None
    before = len(problems)
    problems.extend(
        f"{path}: unknown key {_show(key)}; allowed: {', '.join(allowed)}" for key in value if key not in allowed
    )
    values: dict[str, Any] = {}
    for item in fields(spec):
        key, meta = item.metadata.get("key") or item.name, item.metadata
        if key not in value:
            if meta.get("required"):
                problems.append(
                    f"{path}.{key}: required ({meta['doc']})" if meta.get("doc") else f"{path}.{key}: required"
                )
            continue
        parsed = meta["kind"].parse(value[key], f"{path}.{key}", problems)
        if parsed is not None:
            values[item.name] = parsed
    return spec(**values) if len(problems) == before else None


# --- the schema -----------------------------------------------------------------------------------------------

PATHS = Texts(non_empty=True)


@dataclass(frozen=True)
class RecordLookup:
    """A RecordLink of another flow found by a key the event carries (integrations.scenarios.chains)."""

    follows: str = option(Text(non_empty=True), default="", required=True, doc="slug of the flow whose link to find")
    key: tuple[str, ...] = option(PATHS, default=(), required=True, doc="payload paths of the key, first present wins")
    match: str = option(OneOf("target_key", "source_key"), default="target_key", doc="which key of the link")
    key_field: str = option(Text(), default="", doc="the link's key is an F&O key of this field …")
    company: str = option(Text(), default="dataAreaId", doc="… in the company at this payload path")
    as_: str = option(Text(), key="as", default="order", doc="name under $ctx.chain")
    optional: bool = option(Flag(), default=False, doc="an event without the key goes on without the link")


@dataclass(frozen=True)
class ChainRule(RecordLookup):
    """options.chain: the business chain (the order) this flow's events continue; gives its correlation id."""

    step: int = option(Whole(), default=99, doc="position in the chain view")


@dataclass(frozen=True)
class LinkRule(RecordLookup):
    """One of options.links: a lookup for the mapping only ($ctx.chain.<as>), correlation id unchanged."""

    as_: str = option(Text(non_empty=True), key="as", default="", required=True, doc="name under $ctx.chain")


@dataclass(frozen=True)
class FetchRule:
    """One of options.fetch: a document a key-only event names, read from the source before mapping."""

    entity: str = option(Text(non_empty=True), default="", required=True, doc="<service>/<entity set> to read")
    key: Mapping[str, str] = option(FieldPaths(), default={}, required=True, doc="document key field: payload path")
    as_: str = option(Text(non_empty=True), key="as", default="", required=True, doc="name under fetched")
    first: bool = option(Flag(), default=False, doc="the first document whose fields match (find), not by key")
    # F&O keys every row by dataAreaId: its value is read from the event (BusinessEventLegalEntity).
    company: str = option(Text(), default="", doc="payload path of the company (F&O dataAreaId)")
    many: bool = option(Flag(), default=False, doc="every row whose fields match, as a list (an order's lines)")
    # Dataverse: a line's catalogue product is a lookup; $expand reads its number with the line.
    expand: str = option(Text(), default="", doc="OData $expand of the rows read (Dataverse, with many)")


@dataclass(frozen=True)
class LinesSpec:
    """options.lines: a header's lines written through their own F&O entity in the header's change set."""

    field: str = option(Text(non_empty=True), default="", required=True, doc="payload field holding the lines")
    entity: str = option(Text(), default="", doc="line entity (default: field)")
    key: tuple[str, ...] = option(PATHS, default=("InventoryLotId",), doc="line entity key besides dataAreaId")
    match: str = option(Text(non_empty=True), default="LineCreationSequenceNumber", doc="identifies a line")

    def __post_init__(self) -> None:
        # The line entity is usually named like the header's field holding the lines.
        if not self.entity:
            object.__setattr__(self, "entity", self.field)


@dataclass(frozen=True)
class PollSpec:
    """options.poll: the F&O data entity a poll flow reads changes of."""

    entity: str = option(Text(non_empty=True), default="", required=True, doc="the F&O data entity to read")
    key: tuple[str, ...] = option(PATHS, default=(), required=True, doc="key fields besides dataAreaId")
    company: str = option(Text(), default="", doc="dataAreaId (default: the company link's source company)")


@dataclass(frozen=True)
class ListingSpec:
    """options.listing: where the records a flow's events announce are listed, for its loads and reconciliation.

    For events that carry the document's own fields (F&O business events): each row is stored as the
    event that would have announced it, one event field from one row field.
    """

    entity: str = option(Text(non_empty=True), default="", required=True, doc="the entity holding the records")
    key: tuple[str, ...] = option(PATHS, default=(), required=True, doc="its key fields besides dataAreaId")
    event: Mapping[str, str] = option(FieldPaths(), default={}, required=True, doc="event field: row field")


@dataclass(frozen=True)
class DeepLinkSpec:
    """options.deep_link: overrides of the F&O System's deep-link settings for this flow."""

    entity: str = option(Text(), default="", doc="entity whose menu item to use (default: the flow's)")
    menu_item: str = option(Text(), default="", doc="F&O menu item (mi=)")
    param: str = option(Text(), default="", doc="URL parameter carrying the key value")


class FieldValues(Kind):
    """{target field: value}: the fields a block or deactivate writes (scalars only)."""

    expected = "an object of field: value (string, number, true/false, null)"

    def parse(self, value: Any, path: str, problems: list[str]) -> Mapping[str, Scalar] | None:
        if not isinstance(value, dict):
            return self.refuse(value, path, problems)
        before = len(problems)
        for name, item in value.items():
            if not (item is None or isinstance(item, str | int | float | bool)):
                problems.append(
                    f"{path}.{name}: expected a value (string, number, true/false, null), got {_show(item)}"
                )
        return MappingProxyType(dict(value)) if len(problems) == before else None


DELETE_ACTIONS = ("delete", "block", "deactivate", "ignore")


@dataclass(frozen=True)
class DeleteSpec:
    """options.on_delete: what a Delete event of the source does at the target (never an upsert)."""

    action: str = option(OneOf(*DELETE_ACTIONS), default="delete", doc="delete, block, deactivate or ignore")
    set: Mapping[str, Scalar] = option(FieldValues(), default={}, doc="fields block/deactivate write")


class DeleteRule(Record):
    """on_delete, with its one cross-field rule: block and deactivate name the fields they write."""

    def __init__(self) -> None:
        super().__init__(DeleteSpec)

    def parse(self, value: Any, path: str, problems: list[str]) -> DeleteSpec | None:
        parsed = super().parse(value, path, problems)
        if parsed is None:
            return None
        if parsed.action in ("block", "deactivate") and not parsed.set:
            problems.append(f"{path}.set: required for action {parsed.action!r} (the fields to write)")
            return None
        if parsed.action in ("delete", "ignore") and parsed.set:
            problems.append(f"{path}.set: only block and deactivate write fields, not {parsed.action!r}")
            return None
        return parsed


WEBHOOK_MESSAGES = ("Create", "Update", "Delete")  # what a Dataverse webhook step can be registered for


@dataclass(frozen=True)
class FlowOptions:
    """Every option a flow may set; absent keys take the defaults below (docs/flow-options.md)."""

    chain: ChainRule | None = option(Record(ChainRule), doc="the chain this flow continues")
    links: tuple[LinkRule, ...] = option(Records(LinkRule), default=(), doc="lookups for the mapping")
    fetch: tuple[FetchRule, ...] = option(Records(FetchRule), default=(), doc="documents read before mapping")
    only_when: Mapping[str, FieldCondition] = option(Conditions(), default={}, doc="field values the record must have")
    echo_of: tuple[str, ...] | None = option(Texts(), doc="flows whose writes this flow must not carry back")
    event_types: tuple[str, ...] = option(Texts(single=False), default=(), doc="business event types taken")
    webhook_messages: tuple[str, ...] | None = option(
        Texts(choices=WEBHOOK_MESSAGES, non_empty=True, single=False), doc="Dataverse messages registered"
    )
    poll: PollSpec | None = option(Record(PollSpec), doc="F&O entity a poll flow reads")
    listing: ListingSpec | None = option(Record(ListingSpec), doc="where an event flow's records are listed")
    ax_service: str = option(Text(), default="", doc="AIF document service an AX poll flow reads")
    ax_company: str = option(Text(), default="", doc="AX company an AX poll flow reads")
    lines: LinesSpec | None = option(Record(LinesSpec), doc="lines written through their own F&O entity")
    deep_link: DeepLinkSpec = option(Record(DeepLinkSpec), default=DeepLinkSpec(), doc="F&O deep-link overrides")
    create_only: bool = option(Flag(), default=False, doc="Dataverse upsert never overwrites (If-None-Match)")
    force: bool = option(Flag(), default=False, doc="S/4 update overwrites whatever version (If-Match: *)")
    on_delete: DeleteSpec = option(DeleteRule(), default=DeleteSpec(), doc="what a Delete event does at the target")
    reference_field: str = option(Text(), default="", doc="target field keeping our reference on keyless creates")
    template: str = option(Text(), default="", doc="the template that installed the flow")
    transport: str = option(OneOf("odata", "package"), default="odata", doc="F&O bulk path: odata or package")
    package_project: str = option(Text(), default="", doc="F&O data project a package transport exports")

    @classmethod
    def parse(cls, raw: Any, *, where: str = "") -> FlowOptions:
        return parse_options(raw, where=where)


OPTION_KEYS = tuple(keys_of(FlowOptions))


def options_problems(raw: Any) -> list[str]:
    """What is wrong with stored options, each as "options.<path>: …"; [] when they fit the schema."""
    problems: list[str] = []
    parse_record(FlowOptions, raw, "options", problems)
    return problems


def parse_options(raw: Any, *, where: str = "") -> FlowOptions:
    """The typed options, or FlowOptionsError naming every key that does not fit (where: e.g. "flow x")."""
    problems: list[str] = []
    parsed = parse_record(FlowOptions, raw, "options", problems)
    if parsed is None:
        raise FlowOptionsError(problems, where=where)
    return parsed


@lru_cache(maxsize=1024)
def parse_options_json(text: str, where: str = "") -> FlowOptions:
    """parse_options of options held as JSON text, remembered: each value is parsed once per process.

    Safe to share: FlowOptions and its parts are frozen, their mappings read-only.
    """
    return parse_options(json.loads(text), where=where)
