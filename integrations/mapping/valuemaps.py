"""ValueMap tables as the engine reads them: loaded once, cached per process for a short while.

A mapping runs thousands of times a minute; it must not query the database for
every lookup. Saving or deleting a ValueMap or an entry in this process clears
the cache at once (signals); other processes see the change within
ICBRIDGE_VALUE_MAP_CACHE_SECONDS (default 30).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from integrations.mapping.syntax import Failure
from integrations.models import ValueMap, ValueMapEntry

_lock = threading.Lock()
_tables: dict[str, tuple[float, dict[str, str]]] = {}


def ttl() -> float:
    return float(getattr(settings, "ICBRIDGE_VALUE_MAP_CACHE_SECONDS", 30))


def get_table(name: str) -> dict[str, str]:
    """The entries of one value map; a Failure if it does not exist (deleted since the spec was saved)."""
    now = time.monotonic()
    cached = _tables.get(name)
    if cached is not None and cached[0] > now:
        return cached[1]
    value_map = ValueMap.objects.filter(name=name).first()
    if value_map is None:
        raise Failure(f"value map '{name}' does not exist")
    table = value_map.as_dict()
    with _lock:
        _tables[name] = (now + ttl(), table)
    return table


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
@receiver([post_save, post_delete], sender=ValueMapEntry)
def _changed(**kwargs: Any) -> None:
    clear()
