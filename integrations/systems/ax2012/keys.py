"""AX 2012 record keys in one normal form: the document's key field value, as AIF carries it.

getChangedKeys, getKeys and create's EntityKeyList name a document by its key field alone (SalesId,
AccountNum…), and a flow reads one AX company (options.ax_company or its company link), so the company is
not part of the key. An initial load names a row dataAreaId='dk01',AccountNum='C-1' and a poll C-1: both
become C-1, so a record loaded and then polled has one RecordLink, and reconciliation's source pass finds
it linked.
"""

from __future__ import annotations

from typing import Any

from integrations.protocols.odata.errors import ODataError
from integrations.protocols.odata.keys import key_parts, string_value

COMPANY = "dataareaid"


def canonical_key(text: str) -> str:
    """A predicate of one key field (with or without dataAreaId) as that field's value; anything else as given.

    A predicate names a string value quoted (AccountNum='C-1') and a number bare, with the company
    (dataAreaId='dk01',RecId=5637144577: an initial load's form). A bare key that merely contains "=" (A=1,
    a legal AccountNum) names neither a quoted value nor a company: it is no predicate and stays whole.
    """
    text = (text or "").strip()
    try:
        every = key_parts(text)
    except ODataError:  # a bare AX key (C-1, SO-000123) is no OData literal: it is the normal form already
        return text
    parts = [(name, raw) for name, raw in every if (name or "").lower() != COMPANY]
    if len(parts) != 1 or not parts[0][0]:
        return text
    raw = parts[0][1]
    if raw.startswith("'"):
        return string_value(raw)
    return raw if len(every) > 1 else text


def canonical_value(field: str, value: Any) -> Any:
    return value
