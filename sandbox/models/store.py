"""A document store any emulator may use: records keyed by entity, company and key, with change tracking."""

from __future__ import annotations

import re
import time

from django.db import models
from django.db.models import Q
from django.db.models.fields.json import KT
from django.db.models.functions import Lower
from django.db.models.lookups import In

from integrations.protocols.odata.filter import V4
from integrations.protocols.odata.keys import string_value


def next_change_seq() -> int:
    """A change sequence that only grows (ns clock), for delta links and getChangedKeys."""
    return time.time_ns()


class EmulatorRecord(models.Model):
    emulator = models.SlugField(max_length=40)
    entity = models.CharField(max_length=120)
    company = models.CharField(max_length=20, blank=True, help_text="dataAreaId / AX company; blank where none.")
    key = models.CharField(max_length=255)
    data = models.JSONField()
    version = models.PositiveBigIntegerField(default=1, help_text="Row version: the ETag.")
    change_seq = models.BigIntegerField(default=next_change_seq, db_index=True)
    deleted = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    modified_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["emulator", "entity", "company", "key"], name="emulator_record_unique_key")
        ]
        indexes = [models.Index(fields=["emulator", "entity", "change_seq"], name="emulator_record_changes")]

    def __str__(self) -> str:
        company = f"{self.company}/" if self.company else ""
        return f"{self.emulator}:{self.entity}/{company}{self.key} v{self.version}"


class EmulatorSubscription(models.Model):
    """Where an emulator pushes its events (business events, CloudEvents)."""

    emulator = models.SlugField(max_length=40)
    event_type = models.CharField(max_length=200, blank=True, help_text="Blank: every event.")
    url = models.URLField(max_length=500)
    headers = models.JSONField(default=dict, blank=True, help_text="Sent with every push (e.g. auth).")
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"{self.emulator} {self.event_type or '*'} → {self.url}"


# --- lookups: answering a $filter from the table's columns instead of reading every row ----------------

Equalities = list[list[tuple[str, str]]]
_PROPERTY = re.compile(r"[A-Za-z_]\w*")


def equality_groups(text: str) -> Equalities | None:
    """A $filter of the shape `(a eq 'x' and b eq 'y') or (a eq 'z')` as its groups, else None.

    These are the reads by key (a connector reading written rows back, a page of one company): the
    emulator narrows them in SQL (equal_rows) and still applies the whole $filter to what is left, so
    only the shape has to be recognised here, none of its meaning. Parentheses may wrap a group or a
    comparison; any other operator, a function, `not` or a non-text literal answers None (read the table).
    """
    tokens: list[tuple[str, str]] = []
    position = 0
    pattern = V4().pattern
    while position < len(text) and text[position:].strip():
        match = pattern.match(text, position)
        if not match:
            return None
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    groups: Equalities = [[]]
    depth = 0
    index = 0
    while index < len(tokens):
        kind, value = tokens[index]
        if value == "(":
            depth += 1
            if depth > 2:
                return None
        elif value == ")":
            depth -= 1
            if depth < 0:
                return None
        elif kind == "name" and value.lower() == "or":
            if depth != 0 or not groups[-1]:
                return None  # an `or` inside parentheses is not a group of this shape
            groups.append([])
        elif kind == "name" and value.lower() == "and":
            if not groups[-1]:
                return None
        elif (
            kind == "name"
            and _PROPERTY.fullmatch(value)
            and value.lower() not in ("true", "false", "null", "not")
            and index + 2 < len(tokens)
            and tokens[index + 1][1].lower() == "eq"
            and tokens[index + 2][0] == "string"
        ):
            literal = string_value(tokens[index + 2][1])
            if not literal.isascii():
                return None  # PostgreSQL's lower() and Python's agree on ASCII; leave the rest to Python
            groups[-1].append((value, literal))
            index += 2
        else:
            return None
        index += 1
    if depth != 0 or not all(groups):
        return None
    return groups


def equal_rows(groups: Equalities, columns: dict[str, str] | None = None) -> Q:
    """The rows that may match the groups: each comparison case-insensitive (as OData v4 strings compare).

    columns maps a property to the stored column that holds it in lower case (F&O's dataAreaId → company),
    which the unique (emulator, entity, company, key) index answers; other properties are read from the
    JSON document. A group of one comparison per property becomes one IN list.
    """
    columns = columns or {}
    condition = Q()
    singles: dict[str, list[str]] = {}
    for group in groups:
        if len(group) == 1:
            singles.setdefault(group[0][0], []).append(group[0][1].lower())
            continue
        both = Q()
        for name, value in group:
            both &= _equal(name, [value.lower()], columns)
        condition |= both
    for name, values in singles.items():
        condition |= _equal(name, sorted(set(values)), columns)
    return condition


def _equal(name: str, values: list[str], columns: dict[str, str]) -> Q:
    if name in columns:
        return Q(**{f"{columns[name]}__in": values})
    # lower(data ->> 'name') IN (...): PostgreSQL hashes a long IN list, one pass over the table's rows.
    return Q(In(Lower(KT(f"data__{name}")), values))
