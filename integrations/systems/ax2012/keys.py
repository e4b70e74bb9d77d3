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

    AX key fields are strings, so a predicate names its value as a quoted literal (AccountNum='C-1'); a bare
    key that merely contains "=" (A=1, a legal AccountNum) is no predicate and stays whole.
    """
    text = (text or "").strip()
    try:
        parts = [(name, raw) for name, raw in key_parts(text) if (name or "").lower() != COMPANY]
    except ODataError:  # a bare AX key (C-1, SO-000123) is no OData literal: it is the normal form already
        return text
    if len(parts) != 1 or not parts[0][0] or not parts[0][1].startswith("'"):
        return text
    return string_value(parts[0][1])


def canonical_value(field: str, value: Any) -> Any:
    return value
