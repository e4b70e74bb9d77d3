"""Running a $batch inside an emulator: each change set in one transaction, all of it or none.

A change set whose request fails (status ≥ 400) is rolled back and answered by that one response, as
Dataverse, F&O and SAP Gateway do. A later request of a change set may name an earlier one's result as
$<Content-ID> (where the emulator says which header holds its URL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from django.db import transaction

from integrations.protocols.odata.batch import BatchRequest, BatchResponse, ChangeSet
from sandbox.common.result import Result

# dispatch(request, scope) → its result; scope is one dict per change set (a fresh one per lone request).
Dispatch = Callable[[BatchRequest, dict[str, Any]], Result]


class _ChangeSetFailed(Exception):
    def __init__(self, response: BatchResponse) -> None:
        super().__init__(response.status)
        self.response = response


def run_batch(
    items: Sequence[BatchRequest | ChangeSet],
    dispatch: Dispatch,
    *,
    stop_on_error: bool = False,
    location_header: str = "",
    content_ids: bool = True,
) -> list[BatchResponse | list[BatchResponse]]:
    """The answers, ready for encode_responses.

    stop_on_error: nothing after the first failure runs (Dataverse without odata.continue-on-error).
    location_header: the header whose URL a $<Content-ID> reference stands for ("" for none).
    content_ids: whether answers carry their request's Content-ID.
    """
    results: list[BatchResponse | list[BatchResponse]] = []
    for item in items:
        if isinstance(item, BatchRequest):
            result = dispatch(item, {})
            results.append(_answer(result, item, content_ids))
            if result.status >= 400 and stop_on_error:
                break
            continue
        try:
            results.append(_changeset(item, dispatch, location_header, content_ids))
        except _ChangeSetFailed as failed:
            results.append(failed.response)
            if stop_on_error:
                break
    return results


def _changeset(
    changeset: ChangeSet, dispatch: Dispatch, location_header: str, content_ids: bool
) -> list[BatchResponse]:
    scope: dict[str, Any] = {}
    locations: dict[str, str] = {}
    answers: list[BatchResponse] = []
    with transaction.atomic():
        for request in changeset.requests:
            result = dispatch(_resolved(request, locations), scope)
            answer = _answer(result, request, content_ids)
            if result.status >= 400:
                raise _ChangeSetFailed(answer)  # rolls the change set back
            if location_header and request.content_id and location_header in result.headers:
                locations[request.content_id] = result.headers[location_header]
            answers.append(answer)
    return answers


def _resolved(request: BatchRequest, locations: dict[str, str]) -> BatchRequest:
    """$1/rest → <the URL request 1 answered with>/rest."""
    url = request.url
    ref = url[1:].split("/", 1)[0] if url.startswith("$") else ""
    if ref in locations:
        return replace(request, url=locations[ref] + url[1 + len(ref) :])
    return request


def _answer(result: Result, request: BatchRequest, content_ids: bool) -> BatchResponse:
    return BatchResponse(result.status, dict(result.headers), result.body, request.content_id if content_ids else "")
