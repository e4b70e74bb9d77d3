"""Connector for the sandbox recorder: a plain JSON target that records every write.

It is the test target of the pipeline: upsert by key over real HTTP, with the
same fault injection as every emulator.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import quote

from integrations.errors import ConnectorError
from integrations.protocols.transport import ConnectionReport, DeliveryRequest, DeliveryResult, HttpConnector


class RecorderConnector(HttpConnector):
    kind = "recorder"
    batch_capable = True

    def _record_url(self, entity: str, key: str) -> str:
        return f"{self.base_url}/records/{quote(entity, safe='')}/{quote(key, safe='')}"

    @staticmethod
    def _key(request: DeliveryRequest) -> str:
        return "|".join(str(v) for v in request.key.values()) or request.idempotency_key

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        key = self._key(request)
        headers = {"Idempotency-Key": request.idempotency_key, "X-Correlation-Id": request.correlation_id}
        if request.etag:
            headers["If-Match"] = request.etag
        url = self._record_url(request.entity, key)
        response = self.request("PUT", url, json=request.payload, headers=headers)
        body = response.json()
        return DeliveryResult(
            target_key=str(body["id"]),
            etag=response.headers.get("ETag", ""),
            created=response.status_code == 201,
            status_code=response.status_code,
            request_summary=f"PUT {url}",
            response_excerpt=response.text[:500],
            body=body,
        )

    def deliver_many(self, requests_: Sequence[DeliveryRequest]) -> list[DeliveryResult | ConnectorError]:
        """All records in one POST to the batch endpoint; each answer is classified on its own."""
        url = f"{self.base_url}/batch"
        records = [
            {
                "entity": r.entity,
                "key": self._key(r),
                "payload": r.payload,
                "idempotency_key": r.idempotency_key,
                "correlation_id": r.correlation_id,
                "if_match": r.etag,
            }
            for r in requests_
        ]
        body = self.request("POST", url, json={"records": records}).json()
        results: list[DeliveryResult | ConnectorError] = []
        for answer in body["results"]:
            summary = f"POST {url} ({len(records)} records)"
            try:
                self.raise_for_status(answer["status"], json.dumps(answer["body"]), summary, retry_after=None)
            except ConnectorError as exc:
                results.append(exc)
                continue
            results.append(
                DeliveryResult(
                    target_key=str(answer["body"]["id"]),
                    etag=answer["etag"],
                    created=answer["status"] == 201,
                    status_code=answer["status"],
                    request_summary=summary,
                    body=answer["body"],
                )
            )
        return results

    def fetch(self, *, entity: str, key: dict, company: str = "") -> dict | None:
        url = self._record_url(entity, "|".join(str(v) for v in key.values()))
        try:
            return self.request("GET", url).json()["payload"]
        except ConnectorError as exc:
            if exc.status_code == 404:
                return None
            raise

    def check_connection(self) -> ConnectionReport:
        report = ConnectionReport()
        try:
            self.request("GET", f"{self.base_url}/records/")
        except ConnectorError as exc:
            report.add("reachability", False, exc.message)
        else:
            report.add("reachability", True, f"{self.base_url} answers")
        return report
