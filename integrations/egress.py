"""Where the hub may connect to: an allow-list of hosts and networks (ICBRIDGE_EGRESS_ALLOW).

Read when a URL is configured (System, InboundEndpoint JWKS), before a JWKS fetch, before every
connector call (once per host and connector), for each WSDL and schema zeep loads, and before an alert
webhook is posted. Cloud metadata addresses (link-local) are always refused: a System URL must not
turn the hub into a proxy to them.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

_ALWAYS_REFUSED = [ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10")]


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        return [ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(host, None)]
    except (socket.gaierror, UnicodeError, ValueError):
        return []  # unresolvable here: the connection itself will fail, nothing to reach


def _allowed_by(entry: str, host: str, addresses: list) -> bool:
    if "/" in entry:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
        return bool(addresses) and all(address in network for address in addresses)
    return fnmatch.fnmatch(host, entry.lower())


def egress_refusal(url: str) -> str | None:
    """Why the hub may not connect to url, or None if it may."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return f"{url!r} is not an http(s) URL"
    addresses = _addresses(host)
    if any(address in network for address in addresses for network in _ALWAYS_REFUSED):
        return f"{host} is a link-local (cloud metadata) address"
    allow = settings.ICBRIDGE_EGRESS_ALLOW
    if allow and not any(_allowed_by(entry.strip(), host, addresses) for entry in allow if entry.strip()):
        return f"{host} is not in ICBRIDGE_EGRESS_ALLOW"
    return None
