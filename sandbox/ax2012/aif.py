"""What the AIF emulator's SOAP side and its document operations share: AifFault, constants, XML helpers."""

from __future__ import annotations

from lxml import etree

EMULATOR = "ax2012"
DEFAULT_COMPANY = "DAT"
MESSAGE_LOG = "AifMessageLog"
NUMBER_SEQUENCE = "NumberSequence"
FIRST_RECID = 5637144576  # AX hands out RecIds from here
REQUEST_FAILED = "Request Failed. See the Exception Log for details."
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


class AifFault(Exception):
    """A failed request, answered as a SOAP fault whose detail is AIF's AifFault."""

    def __init__(self, messages: list[str], *, code: str = "", faultstring: str = REQUEST_FAILED) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages
        self.code = code
        self.faultstring = faultstring


def local_name(element: etree._Element) -> str:
    return etree.QName(element).localname


def child_of(parent: etree._Element, namespace: str, name: str) -> etree._Element | None:
    return parent.find(f"{{{namespace}}}{name}")


def text_of(element: etree._Element | None) -> str | None:
    if element is None or element.get(XSI_NIL) == "true":
        return None
    return (element.text or "").strip()
