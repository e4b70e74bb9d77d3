"""complete_truncated: a Dataverse event cut for size is completed from the source, not lost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from integrations import errors
from integrations.models import Flow, Message, System
from integrations.pipeline.ingest import message_ingest
from integrations.pipeline.prepare import complete_truncated
from integrations.systems.dataverse.inbound import dataverse_event
from sandbox.common.faults import set_faults
from tests.api.conftest import CONTACT_ID, dataverse_truncated, dataverse_update

TRUNCATED_HEADERS = {"x-ms-dynamics-msg-size-exceeded": "true"}


def _ingest(flow: Flow, context: dict[str, Any], headers: dict[str, str]) -> Message:
    event = dataverse_event(context, headers=headers)
    message, _ = message_ingest(
        flow=flow,
        payload=event.payload,
        idempotency_key=event.idempotency_key,
        source_record_key=event.source_record_key,
        headers=event.headers,
    )
    return message


@pytest.fixture
def source_flow(make_flow: Callable[..., Flow], recorder_system: System) -> Flow:
    """A contact flow whose source answers reads: the sandbox recorder over real HTTP."""
    return make_flow(source=recorder_system, entity="contact")


def test_truncated_message_is_filled_from_the_source(source_flow: Flow, recorder_system: System) -> None:
    # given the source holds the full contact, and a truncated event about it was stored
    requests.put(
        f"{recorder_system.base_url}/records/contact/{CONTACT_ID}",
        json={"contactid": CONTACT_ID, "firstname": "James", "lastname": "Glynn", "@odata.etag": 'W/"1"'},
        timeout=5,
    ).raise_for_status()
    message = _ingest(source_flow, dataverse_truncated(), TRUNCATED_HEADERS)
    # when the pipeline completes it
    complete_truncated(message=message)
    # then the stored message has the record's attributes and is no longer flagged
    message.refresh_from_db()
    assert message.payload_fetched["attributes"] == {"contactid": CONTACT_ID, "firstname": "James", "lastname": "Glynn"}
    assert message.payload_in == dataverse_event(dataverse_truncated(), headers=TRUNCATED_HEADERS).payload
    assert message.headers["truncated"] is False
    assert message.headers["completed_from_source"] is True


def test_truncated_message_of_a_deleted_record_is_rejected(source_flow: Flow) -> None:
    # given a truncated update of a record the source no longer has
    message = _ingest(source_flow, dataverse_truncated(), TRUNCATED_HEADERS)
    # when the pipeline completes it, then it is a rejection the pipeline parks (no retry)
    with pytest.raises(errors.RejectedError, match="no longer exists"):
        complete_truncated(message=message)


def test_whole_message_is_left_alone(make_flow: Callable[..., Flow], db: None) -> None:
    # given an event that was not truncated (no source read is possible: the source is unreachable)
    message = _ingest(make_flow(entity="contact"), dataverse_update(), {})
    before = dict(message.payload_in)
    # when completed, then nothing changes
    assert complete_truncated(message=message).payload_in == before


def test_source_outage_is_a_transient_error(source_flow: Flow) -> None:
    # given a truncated event, and the source is down (503 from the sandbox's outage switch)
    message = _ingest(source_flow, dataverse_truncated(), TRUNCATED_HEADERS)
    set_faults("recorder", down=True)
    # when completed, then the error is transient, so the pipeline retries, and the flag stays
    with pytest.raises(errors.TransientError):
        complete_truncated(message=message)
    message.refresh_from_db()
    assert message.headers["truncated"] is True
