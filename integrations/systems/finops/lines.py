"""F&O lines: data entities take no deep insert, so a header and its lines are written in one change set.

A new header is POSTed with its lines; an existing one is PATCHed, its lines read and matched on
options.lines.match: changed lines are PATCHed, new ones POSTed, lines that are gone DELETEd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from integrations import errors
from integrations.flow_options import LinesSpec
from integrations.protocols.microsoft import BatchPart
from integrations.protocols.transport import DeliveryRequest, DeliveryResult
from integrations.systems.finops.keys import company_filter

if TYPE_CHECKING:
    pass

# options.lines: {"field": "SalesOrderLines", "entity": "SalesOrderLines", "key": ["InventoryLotId"],
# "match": "LineCreationSequenceNumber"}: field holds the lines in the mapped payload; entity is where they go;
# key is the line entity's key (besides dataAreaId); match identifies a line across updates.
LineSpec = LinesSpec


@dataclass(frozen=True)
class HeaderLines:
    """A header's lines taken out of its payload, and how they are written (options.lines)."""

    spec: LineSpec
    rows: list[dict[str, Any]]


class HeaderLinesMixin:
    """The line half of FinOpsConnector (self is the connector)."""

    def _split_lines(self, request: DeliveryRequest) -> tuple[dict[str, Any], HeaderLines | None]:
        """The header's fields, and its lines when the flow says lines travel separately (options.lines)."""
        payload = {k: v for k, v in request.payload.items() if k != "dataAreaId"}
        spec = request.options.lines
        if spec is None or spec.field not in payload:
            return payload, None
        lines = payload.pop(spec.field)
        if not isinstance(lines, list) or not all(isinstance(line, dict) for line in lines):
            raise errors.RejectedError(f"{self.system.name}: {spec.field} must be a list of line records")
        if not request.key:
            raise errors.RejectedError(
                f"{self.system.name}: {request.entity} with separate lines needs the header's key "
                "(the flow's target key fields), so the lines can name their header"
            )
        for number, line in enumerate(lines, 1):
            if line.get(spec.match) in (None, ""):
                raise errors.RejectedError(
                    f"{self.system.name}: {spec.field} line {number} has no {spec.match}, which identifies a line "
                    "across updates (options.lines.match)"
                )
        return payload, HeaderLines(spec, lines)

    def _deliver_with_lines(
        self, request: DeliveryRequest, company: str, payload: dict[str, Any], lines: HeaderLines
    ) -> DeliveryResult:
        """Header and lines in one change set: all written or none, header first (F&O has no deep insert).

        A new header gets POSTs only; an existing one a PATCH, and its lines are matched on
        options.lines.match (LineCreationSequenceNumber): changed lines PATCHed, new ones POSTed, lines
        no longer sent DELETEd.
        """
        if request.operation == "create" or self._create_first(request):
            try:
                return self._write_changeset(request, company, self._create_parts(request, company, payload, lines))
            except errors.DuplicateError:
                if request.operation == "create":
                    raise
        existing = self._existing_lines(lines.spec, company, request.key)
        header = BatchPart("PATCH", self._entity_url(request.entity, company, request.key), payload)
        header.headers["If-Match"] = request.etag or "*"
        parts = [header, *self._line_parts(lines, company, request.key, existing)]
        try:
            return self._write_changeset(request, company, parts)
        except errors.ConflictError as exc:
            raise self._with_current(exc, request, company) from exc
        except errors.RejectedError as exc:
            if exc.status_code != 404 or request.operation != "upsert" or request.etag:
                raise
        return self._write_changeset(request, company, self._create_parts(request, company, payload, lines))

    def _create_parts(
        self, request: DeliveryRequest, company: str, payload: dict[str, Any], lines: HeaderLines
    ) -> list[BatchPart]:
        return [self._post_part(request, company, payload), *self._line_parts(lines, company, request.key, {})]

    def _post_part(self, request: DeliveryRequest, company: str, payload: dict[str, Any]) -> BatchPart:
        """The POST that creates the record, as a $batch part."""
        key = {name: value for name, value in request.key.items() if value not in (None, "")}
        body = {**payload, **key, "dataAreaId": company}
        return BatchPart("POST", f"{self.data}/{request.entity}?cross-company=true", body)

    def _line_parts(
        self, lines: HeaderLines, company: str, header_key: dict[str, Any], existing: dict[str, dict[str, Any]]
    ) -> list[BatchPart]:
        spec = lines.spec
        parent = {name: value for name, value in header_key.items() if name != "dataAreaId"}
        parts = []
        for line in lines.rows:
            values = {**line, **parent, "dataAreaId": company}
            current = existing.pop(str(line[spec.match]), None)
            if current is None:
                parts.append(BatchPart("POST", f"{self.data}/{spec.entity}?cross-company=true", values))
            else:
                url = self._entity_url(spec.entity, company, {k: current[k] for k in spec.key})
                parts.append(BatchPart("PATCH", url, values, {"If-Match": "*"}))
        for gone in existing.values():  # lines the source no longer has
            url = self._entity_url(spec.entity, company, {k: gone[k] for k in spec.key})
            parts.append(BatchPart("DELETE", url, None, {"If-Match": "*"}))
        return parts

    def _existing_lines(self, spec: LineSpec, company: str, header_key: dict[str, Any]) -> dict[str, dict[str, Any]]:
        rows = self.query(
            spec.entity, filter=company_filter(company, header_key), select=",".join([*spec.key, spec.match])
        )
        return {str(row.get(spec.match)): row for row in rows}

    def _write_changeset(self, request: DeliveryRequest, company: str, parts: list[BatchPart]) -> DeliveryResult:
        """Send one change set; the header's answer is the record's result, the first failure its error."""
        [(_, answer)] = self._send([parts], [None])
        summary = f"{parts[0].method} {parts[0].url} + {len(parts) - 1} line request(s) in one change set"
        if isinstance(answer, errors.ConnectorError):
            raise answer
        failure = self.classify(self.system.name, answer[0].status, answer[0].headers, answer[0].text, summary)
        if failure:
            raise failure
        return self._result(request, company, answer[0].status, answer[0].headers, answer[0].json(), summary)
