"""Services on Systems: the connection test an operator runs from the console."""

from __future__ import annotations

import logging
from typing import Any

from integrations.errors import ConnectorError
from integrations.kinds import KINDS
from integrations.models import System
from integrations.protocols.transport import ConnectionReport
from integrations.services.audit import audit_record
from integrations.systems import get_connector

logger = logging.getLogger(__name__)


def system_test_connection(*, system: System, actor: Any = None) -> ConnectionReport:
    """Token, reachability and permissions of one System, in plain words; audited, never raises.

    1. A kind without a connector, or a connector that fails to build, is one failed step.
    2. The connector checks in its own order and stops at the first step that makes the rest moot.
    3. Anything unexpected becomes a failed step naming the error class; the text goes to the log.
    """
    report = ConnectionReport()
    if system.kind not in KINDS:
        report.add("connector", False, f"no connector for kind '{system.kind}'")
    elif not system.enabled:
        report.add("enabled", False, f"{system.name} is disabled; enable it to test the connection")
    else:
        try:
            report = get_connector(system).check_connection()
        except ConnectorError as exc:
            report.add("connection", False, exc.message)
        except Exception as exc:  # the operator gets a line, the log gets the traceback
            logger.exception("connection test of system %s failed unexpectedly", system.pk)
            report.add("connection", False, f"unexpected {type(exc).__name__}; see the server log")
    audit_record(
        actor=actor,
        action="test_connection",
        obj=system,
        reason="OK" if report.ok else "FAILED",
        details={"steps": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in report.steps]},
    )
    return report
