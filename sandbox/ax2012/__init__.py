"""Dynamics AX 2012 AIF emulator: document services over SOAP, as the AIF HTTP adapter serves them.

GET  MicrosoftDynamicsAXAif60/<Port>/xppservice.svc?wsdl       the port's WSDL (zeep loads it)
GET  MicrosoftDynamicsAXAif60/<Port>/xppservice.svc?xsd=<name> its schemas (Service, CallContext, Fault, …)
POST MicrosoftDynamicsAXAif60/<Port>/xppservice.svc            SOAP 1.1; SOAPAction names the operation

Operations: create, read, find, findKeys, update, delete, getKeys, getChangedKeys (schema.OPERATIONS).
The CallContext header is honoured: Company selects the legal entity's data (default DAT, as AX does for
a user without one), MessageId is remembered and a repeat is answered with AIF's DuplicateMessage fault,
LogonAsUser must be a domain\\user name and is recorded as the acting user. Bad documents get a SOAP fault
whose detail is an AifFault carrying the infolog, as AX does.

Auth (auth.py): Windows authentication (an NTLM handshake) or basic, for the users of SANDBOX_AX2012_USERS
(default icbridge/sandbox), or an Azure AD token; behind Azure AD Application Proxy (ports.set_app_proxy) a
user token only. getChangedKeys answers keys only for a port with a document filter (ports.py), page by page.

Modules: schema (the WSDL and XSDs, what each port's document holds), soap (the HTTP side: envelope,
CallContext, faults), auth, ports (document filters, App Proxy), documents (the operations on the
documents), aif (what both sides use).
"""

from __future__ import annotations

from sandbox.ax2012.aif import EMULATOR
from sandbox.models import EmulatorRecord
from sandbox.registry import Emulator


def reset() -> None:
    EmulatorRecord.objects.filter(emulator=EMULATOR).delete()


DESCRIPTOR = Emulator(name=EMULATOR, urls="sandbox.ax2012.urls", reset=reset)
