"""gunicorn settings read by every start (gunicorn loads ./gunicorn.conf.py on its own; Procfile names it too).

The access log never carries a query string or a referer: a Dataverse webhook key comes as ?code=…
and a browser's Referer may repeat it. The error and access logs also pass monitoring.logging's
redaction, for whatever else a line may hold (a header echoed in an error).
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from monitoring.logging import RedactionFilter

# %(U)s is the path without the query; %(r)s (the request line) and %(f)s (Referer) are left out on purpose.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s" %(L)ss pid=%(p)s'


class RedactingLogger(Logger):
    """gunicorn's logger with the hub's secret masking on both of its logs."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not any(isinstance(f, RedactionFilter) for f in handler.filters):
                    handler.addFilter(RedactionFilter())


logger_class = RedactingLogger
