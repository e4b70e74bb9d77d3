"""ValueMap tables as the engine reads them: cached per process, checked against the database per message.

A mapping runs thousands of times a minute; it must not read a table for every lookup, nor keep using
one after an operator fixed it. Each cached table carries its stamp, ValueMap.updated_at (saving or
deleting an entry touches its map's, in the same transaction). sync(), called once for each message
mapped (mapping.apply), reads the stamps of the cached tables in one query and drops every table whose
map changed or vanished: a fix saved in any process is what the next message, in every worker, reads.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from integrations.mapping.syntax import Failure
from integrations.models import ValueMap, ValueMapEntry

_lock = threading.Lock()
_tables: dict[str, tuple[datetime, dict[str, str]]] = {}


def get_table(name: str) -> dict[str, str]:
    """The entries of one value map; a Failure if it does not exist (deleted since the spec was saved)."""
    cached = _tables.get(name)
    if cached is not None:
        return cached[1]
    # The stamp is read before the entries: a change committed in between is newer than the stamp
    # kept with it, so the next sync() drops the table again rather than keep an old one.
    value_map = ValueMap.objects.filter(name=name).first()
    if value_map is None:
        raise Failure(f"value map '{name}' does not exist")
    table = value_map.as_dict()
    with _lock:
        _tables[name] = (value_map.updated_at, table)
    return table


def sync() -> None:
    """Drop the cached tables whose map changed or vanished since they were read (one query; none if empty)."""
    if not _tables:
        return
    names = list(_tables)
    stamps = _stamps(names)
    with _lock:
        for name in names:
            cached = _tables.get(name)
            if cached is not None and stamps.get(name) != cached[0]:
                del _tables[name]


# The stamps' SQL per number of names, compiled once per process: on PostgreSQL, building the query
# cost three times the CPU of running it, once for every message mapped.
_stamps_sql: dict[int, str] = {}


def _stamps(names: list[str]) -> dict[str, datetime]:
    sql = _stamps_sql.get(len(names)) if connection.vendor == "postgresql" else None
    if sql is None:
        query = ValueMap.objects.filter(name__in=names).values_list("name", "updated_at")
        # Elsewhere the driver's datetimes need the ORM's converters; an IN the ORM wrote otherwise
        # (fewer parameters than names) is run as it is, and not kept.
        compiled, params = query.query.sql_with_params()
        if connection.vendor != "postgresql" or list(params) != names:
            return dict(query)
        sql = _stamps_sql[len(names)] = compiled
    with connection.cursor() as cursor:
        cursor.execute(sql, names)
        return dict(cursor.fetchall())


def existing(names: set[str]) -> set[str]:
    return set(ValueMap.objects.filter(name__in=names).values_list("name", flat=True))


def static(tables: dict[str, dict[str, Any]]) -> Any:
    """A provider over given tables (tests, benchmarks, previews with inline maps)."""

    def get(name: str) -> dict[str, str]:
        try:
            return tables[name]
        except KeyError:
            raise Failure(f"value map '{name}' does not exist") from None

    return get


def clear() -> None:
    with _lock:
        _tables.clear()


@receiver([post_save, post_delete], sender=ValueMap)
def _changed(**kwargs: Any) -> None:
    clear()


@receiver([post_save, post_delete], sender=ValueMapEntry)
def _entry_changed(instance: ValueMapEntry, **kwargs: Any) -> None:
    # The map's stamp moves with its entries, in the saving transaction: other processes see it at sync().
    ValueMap.objects.filter(pk=instance.value_map_id).update(updated_at=timezone.now())
    clear()
