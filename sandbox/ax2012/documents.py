"""The AIF document operations (create, read, find, findKeys, update, delete, getKeys, getChangedKeys) on the
documents of one company, as AX answers them (key lists, document hashes, infolog faults)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from lxml import etree

from sandbox.ax2012 import ports
from sandbox.ax2012.aif import EMULATOR, FIRST_RECID, NUMBER_SEQUENCE, AifFault, child_of, local_name, text_of
from sandbox.ax2012.schema import NS_EK, NS_EKL, NS_EKP, NS_PAGING, NS_QC, NS_SVC, DocumentSpec, document_namespace
from sandbox.models import EmulatorRecord
from sandbox.models.store import next_change_seq


def _normalise(value: str, kind: str, field: str, table: str) -> str:
    """Check a value against the field's schema type, as AIF's schema validation does."""
    try:
        if kind == "decimal":
            return str(Decimal(value))
        if kind == "int":
            return str(int(value))
        if kind == "date":
            return datetime.strptime(value[:10], "%Y-%m-%d").date().isoformat()  # noqa: DTZ007 - a date
        if kind == "datetime":
            return datetime.fromisoformat(value).isoformat()
    except (InvalidOperation, ValueError) as exc:
        raise AifFault(
            [f"The value '{value}' of field '{table}.{field}' is not a valid {kind}."], code="SchemaValidation"
        ) from exc
    return value


def _parse_entity(spec: DocumentSpec, element: etree._Element, *, line: bool) -> tuple[dict[str, Any], list]:
    table = spec.line_table if line else spec.table
    ns = document_namespace(spec.document)
    values: dict[str, Any] = {}
    lines: list[dict[str, Any]] = []
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = local_name(child)
        if etree.QName(child).namespace != ns:
            raise AifFault([f"The element '{name}' of {table} is not in namespace '{ns}'."], code="SchemaValidation")
        if name in ("_DocumentHash", "RecId", "RecVersion"):
            values[name] = text_of(child)
            continue
        if not line and spec.line_table and name == spec.line_table:
            lines.append(_parse_entity(spec, child, line=True)[0])
            continue
        field = spec.field(name, line=line)
        if field is None:
            raise AifFault(
                [f"The document is not valid according to the schema: '{table}' has invalid child element '{name}'."],
                code="SchemaValidation",
            )
        value = text_of(child)
        values[name] = None if value is None else _normalise(value, field.type, name, table)
    return values, lines


def _parse_document(spec: DocumentSpec, parent: etree._Element) -> list[tuple[dict[str, Any], list]]:
    ns = document_namespace(spec.document)
    document = child_of(parent, ns, spec.document)
    if document is None:
        raise AifFault([f"The request has no {spec.document} document in namespace '{ns}'."], code="SchemaValidation")
    entities = document.findall(f"{{{ns}}}{spec.table}")
    if not entities:
        raise AifFault([f"The {spec.document} document has no {spec.table} record."], code="SchemaValidation")
    return [_parse_entity(spec, entity, line=False) for entity in entities]


def _document_hash(record: EmulatorRecord) -> str:
    canonical = json.dumps([record.data, record.version], sort_keys=True).encode()
    return hashlib.md5(canonical, usedforsecurity=False).hexdigest()


def _render_document(spec: DocumentSpec, records: list[EmulatorRecord], company: str) -> etree._Element:
    ns = document_namespace(spec.document)
    document = etree.Element(f"{{{ns}}}{spec.document}", nsmap={None: ns})
    etree.SubElement(document, f"{{{ns}}}DocPurpose").text = "Original"
    etree.SubElement(document, f"{{{ns}}}SenderId").text = company
    for record in records:
        entity = etree.SubElement(document, f"{{{ns}}}{spec.table}", {"class": "entity"})
        etree.SubElement(entity, f"{{{ns}}}_DocumentHash").text = _document_hash(record)
        _render_fields(entity, ns, spec.fields, record.data["fields"])
        etree.SubElement(entity, f"{{{ns}}}RecId").text = str(FIRST_RECID + record.pk)
        etree.SubElement(entity, f"{{{ns}}}RecVersion").text = str(record.version)
        for line_values in record.data.get("lines", []):
            line = etree.SubElement(entity, f"{{{ns}}}{spec.line_table}", {"class": "entity"})
            _render_fields(line, ns, spec.line_fields, line_values)
    return document


def _render_fields(parent: etree._Element, ns: str, fields: tuple, values: dict[str, Any]) -> None:
    for field in fields:  # schema order: xs:sequence
        value = values.get(field.name)
        if value is not None:
            etree.SubElement(parent, f"{{{ns}}}{field.name}").text = str(value)


def _key_list(spec: DocumentSpec, keys: list[str]) -> etree._Element:
    key_list = etree.Element(f"{{{NS_EKL}}}EntityKeyList", nsmap={None: NS_EKL})
    for key in keys:
        entity_key = etree.SubElement(key_list, f"{{{NS_EK}}}EntityKey", nsmap={None: NS_EK})
        field = etree.SubElement(etree.SubElement(entity_key, f"{{{NS_EK}}}KeyData"), f"{{{NS_EK}}}KeyField")
        etree.SubElement(field, f"{{{NS_EK}}}Field").text = spec.key_field
        etree.SubElement(field, f"{{{NS_EK}}}Value").text = key
    return key_list


def _parse_keys(spec: DocumentSpec, parent: etree._Element) -> list[str]:
    key_list = child_of(parent, NS_EKL, "EntityKeyList")
    if key_list is None:
        raise AifFault(["The request has no EntityKeyList."], code="SchemaValidation")
    keys = []
    for field in key_list.iter(f"{{{NS_EK}}}KeyField"):
        name, value = text_of(child_of(field, NS_EK, "Field")), text_of(child_of(field, NS_EK, "Value"))
        if name != spec.key_field or not value:
            raise AifFault(
                [f"The entity key field '{name}' is not the key of {spec.table} (expected {spec.key_field})."],
                code="InvalidEntityKey",
            )
        keys.append(value)
    return keys


def _records(spec: DocumentSpec, company: str):
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity=spec.document, company=company, deleted=False)


def _load(spec: DocumentSpec, company: str, keys: list[str], *, lock: bool = False) -> list[EmulatorRecord]:
    queryset = _records(spec, company)
    if lock:
        queryset = queryset.select_for_update()
    found = {record.key: record for record in queryset.filter(key__in=keys)}
    missing = [key for key in keys if key not in found]
    if missing:
        raise AifFault(
            [
                f"No valid document identified from the entity key: {spec.key_field}={key} in company {company}."
                for key in missing
            ],
            code="InvalidEntityKey",
        )
    return [found[key] for key in keys]


def _validate(spec: DocumentSpec, company: str, fields: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    """Mandatory fields and relations, collected into one infolog as AX reports them."""
    errors = [
        f"Field '{name}' in table '{spec.table}' must be filled in." for name in spec.required if not fields.get(name)
    ]
    for number, line in enumerate(lines, start=1):
        errors += [
            f"Field '{name}' in table '{spec.line_table}' (line {number}) must be filled in."
            for name in spec.line_required
            if not line.get(name)
        ]
    for reference in spec.references:
        value = fields.get(reference.field)
        if (
            value
            and not EmulatorRecord.objects.filter(
                emulator=EMULATOR, entity=reference.document, company=company, key=value, deleted=False
            ).exists()
        ):
            errors.append(
                f"The value '{value}' in field '{reference.field}' is not found in the relating table "
                f"'{reference.label}'."
            )
    if errors:
        raise AifFault(errors)


def _next_number(spec: DocumentSpec, company: str) -> str:
    try:
        with transaction.atomic():  # savepoint: the first caller in a company creates the sequence
            EmulatorRecord.objects.get_or_create(
                emulator=EMULATOR,
                entity=NUMBER_SEQUENCE,
                company=company,
                key=spec.document,
                defaults={"data": {"next": 1}},
            )
    except IntegrityError:
        pass
    sequence = EmulatorRecord.objects.select_for_update().get(
        emulator=EMULATOR, entity=NUMBER_SEQUENCE, company=company, key=spec.document
    )
    number = int(sequence.data["next"])
    sequence.data = {"next": number + 1}
    sequence.save(update_fields=["data"])
    return f"{spec.number_prefix}{number:06d}"


def _create(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    keys = []
    for fields, lines in _parse_document(spec, payload):
        fields = {
            k: v for k, v in fields.items() if k not in ("_DocumentHash", "RecId", "RecVersion") and v is not None
        }
        _validate(spec, company, fields, lines)
        key = fields.get(spec.key_field)
        if not key:
            if spec.number_prefix is None:
                raise AifFault([f"Field '{spec.key_field}' in table '{spec.table}' must be filled in."])
            key = fields[spec.key_field] = _next_number(spec, company)
        if _records(spec, company).filter(key=key).exists():
            raise AifFault(
                [f"Cannot create a record in {spec.table}. The record already exists: {spec.key_field}={key}."],
                code="RecordExists",
            )
        EmulatorRecord.objects.update_or_create(  # a deleted record's key may be used again
            emulator=EMULATOR,
            entity=spec.document,
            company=company,
            key=key,
            defaults={
                "data": {"fields": fields, "lines": lines},
                "version": 1,
                "deleted": False,
                "change_seq": next_change_seq(),
            },
        )
        keys.append(key)
    return [_key_list(spec, keys)]


def _read(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    return [_render_document(spec, _load(spec, company, _parse_keys(spec, payload)), company)]


def _update(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    keys = _parse_keys(spec, payload)
    entities = _parse_document(spec, payload)
    if len(keys) != len(entities):
        raise AifFault([f"The request has {len(keys)} entity keys but {len(entities)} {spec.table} records."])
    for record, (fields, lines) in zip(_load(spec, company, keys, lock=True), entities, strict=True):
        sent_hash = fields.pop("_DocumentHash", None)
        fields.pop("RecId", None)
        fields.pop("RecVersion", None)
        if sent_hash and sent_hash != _document_hash(record):
            raise AifFault(
                [
                    f"The document hash does not match the hash of {spec.table} {record.key}: the record was changed "
                    "by another user. Read the document again and repeat the update."
                ],
                code="DocumentHashMismatch",
            )
        if fields.get(spec.key_field, record.key) != record.key:
            raise AifFault([f"Field '{spec.key_field}' of {spec.table} {record.key} cannot be changed."])
        merged = {**record.data["fields"], **{k: v for k, v in fields.items() if v is not None}}
        merged_lines = lines or record.data.get("lines", [])
        _validate(spec, company, merged, merged_lines)
        record.data = {"fields": merged, "lines": merged_lines}
        record.version += 1
        record.change_seq = next_change_seq()
        record.save()
    return []


def _delete(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    for record in _load(spec, company, _parse_keys(spec, payload), lock=True):
        record.deleted = True
        record.change_seq = next_change_seq()
        record.save(update_fields=["deleted", "change_seq"])
    return []


_OPERATORS = {
    "Equal": lambda a, b, _: a == b,
    "NotEqual": lambda a, b, _: a != b,
    "Greater": lambda a, b, _: a > b,
    "GreaterOrEqual": lambda a, b, _: a >= b,
    "Less": lambda a, b, _: a < b,
    "LessOrEqual": lambda a, b, _: a <= b,
    "Range": lambda a, b, c: b <= a <= c,
}


def _comparable(value: Any, kind: str) -> Any:
    if kind in ("decimal", "int"):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return None
    return "" if value is None else str(value)


def _matching(spec: DocumentSpec, payload: etree._Element, company: str) -> list[EmulatorRecord]:
    criteria = child_of(payload, NS_QC, "QueryCriteria")
    if criteria is None:
        raise AifFault(["The request has no QueryCriteria."], code="SchemaValidation")
    tests = []
    for element in criteria.findall(f"{{{NS_QC}}}CriteriaElement"):
        source = text_of(child_of(element, NS_QC, "DataSourceName"))
        name = text_of(child_of(element, NS_QC, "FieldName")) or ""
        operator = text_of(child_of(element, NS_QC, "Operator")) or ""
        line = source == spec.line_table and bool(spec.line_table)
        if source != spec.table and not line:
            raise AifFault(
                [f"The data source '{source}' is not part of the {spec.document} document."], code="InvalidQuery"
            )
        field = spec.field(name, line=line)
        if field is None:
            raise AifFault([f"The field '{name}' does not exist in data source '{source}'."], code="InvalidQuery")
        if operator not in _OPERATORS:
            raise AifFault([f"The operator '{operator}' is not valid."], code="InvalidQuery")
        value1 = _comparable(text_of(child_of(element, NS_QC, "Value1")), field.type)
        value2 = _comparable(text_of(child_of(element, NS_QC, "Value2")), field.type)
        tests.append((line, name, field.type, _OPERATORS[operator], value1, value2))

    def matches(record: EmulatorRecord) -> bool:
        for line, name, kind, op, value1, value2 in tests:
            rows = record.data.get("lines", []) if line else [record.data["fields"]]
            hits = []
            for row in rows:
                actual = _comparable(row.get(name), kind)
                hits.append(actual is not None and value1 is not None and op(actual, value1, value2))
            if not any(hits):
                return False
        return True

    return [record for record in _records(spec, company).order_by("key") if matches(record)]


def _find(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    return [_render_document(spec, _matching(spec, payload, company), company)]


def _find_keys(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    return [_key_list(spec, [record.key for record in _matching(spec, payload, company)])]


def _paging(payload: etree._Element) -> tuple[int | None, tuple[int, str] | None, str]:
    """AifDocumentPaging: the page size (None: no paging, every key at once), and where the page after the
    caller's PageStatusContext starts. The context is opaque to the caller: the previous page's, echoed back.
    """
    paging = child_of(payload, NS_PAGING, "DocumentPaging")
    if paging is None:
        return None, None, ""
    raw_size = text_of(child_of(paging, NS_PAGING, "NumberOfDocuments"))
    try:
        size = int(raw_size) if raw_size else None
    except ValueError as exc:
        raise AifFault([f"NumberOfDocuments '{raw_size}' is not a number."], code="SchemaValidation") from exc
    if size is not None and size < 1:
        raise AifFault([f"NumberOfDocuments must be at least 1, not {size}."], code="InvalidPaging")
    context = text_of(child_of(paging, NS_PAGING, "PageStatusContext")) or ""
    if not context:
        return size, None, ""
    try:
        state = json.loads(base64.urlsafe_b64decode(context.encode()))
        return size, (int(state["seq"]), str(state["key"])), str(state["query"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AifFault([f"The paging context '{context[:40]}' is not valid."], code="InvalidPaging") from exc


def _key_page(spec: DocumentSpec, payload: etree._Element, records, query: str) -> list[etree._Element]:
    """One EntityKeyPage in change order; a PageStatusContext names the next page while one remains."""
    size, after, context_query = _paging(payload)
    if after is not None and context_query != query:
        raise AifFault(["The paging context belongs to another request."], code="InvalidPaging")
    records = records.order_by("change_seq", "key")
    if after is not None:
        seq, key = after
        records = records.filter(Q(change_seq__gt=seq) | Q(change_seq=seq, key__gt=key))
    filters = ports.document_filters(spec.service)
    chosen: list[EmulatorRecord] = []
    more = False
    for record in records.iterator(chunk_size=500):
        if filters is not None and not ports.passes(record.data["fields"], filters):
            continue
        if len(chosen) == size:
            more = True
            break
        chosen.append(record)
    page = etree.Element(f"{{{NS_EKP}}}EntityKeyPage", nsmap={None: NS_EKP})
    page.append(_key_list(spec, [record.key for record in chosen]))
    etree.SubElement(page, f"{{{NS_EKP}}}PageStatus").text = "Success"
    if more:
        last = chosen[-1]
        state = json.dumps({"seq": last.change_seq, "key": last.key, "query": query}).encode()
        etree.SubElement(page, f"{{{NS_EKP}}}PageStatusContext").text = base64.urlsafe_b64encode(state).decode()
    return [page]


def _get_keys(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    return _key_page(spec, payload, _records(spec, company), f"getKeys/{company}")


def _get_changed_keys(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    raw = text_of(child_of(payload, NS_SVC, "ChangedDateTime"))
    try:
        since = datetime.fromisoformat(raw or "")
    except ValueError as exc:
        raise AifFault([f"ChangedDateTime '{raw}' is not a valid date and time."], code="SchemaValidation") from exc
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # AX utcdatetime: UTC unless an offset is given
    since_ns = int(since.timestamp() * 1_000_000) * 1000
    changed = _records(spec, company).filter(change_seq__gte=since_ns)
    if ports.document_filters(spec.service) is None:
        # "Configuring AIF for change tracking": without a document filter no entity keys are returned.
        changed = changed.none()
    return _key_page(spec, payload, changed, f"getChangedKeys/{company}/{since_ns}")


DOCUMENT_OPERATIONS = {
    "create": _create,
    "read": _read,
    "find": _find,
    "findKeys": _find_keys,
    "update": _update,
    "delete": _delete,
    "getKeys": _get_keys,
    "getChangedKeys": _get_changed_keys,
}
