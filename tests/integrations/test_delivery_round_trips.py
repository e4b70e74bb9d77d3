"""What a delivery costs in SQL statements (issue 17): guards against regressions, not timings."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integrations.mapping import valuemaps
from integrations.models import Flow, Message, ValueMap, ValueMapEntry
from tests.integrations.test_pipeline import ingest, process

pytestmark = pytest.mark.django_db(transaction=True)

# Screening echoes reads the record's links of the forward flows (2), and the value maps' stamps (1).
PER_MESSAGE = 3


def _statements(flow: Flow, prefix: str, count: int) -> int:
    messages = [ingest(flow, f"{prefix}{n}", u="pcs") for n in range(count)]
    with CaptureQueriesContext(connection) as queries:
        process(messages[0])
    assert set(Message.objects.filter(pk__in=[m.pk for m in messages]).values_list("status", flat=True)) == {
        Message.Status.DELIVERED
    }
    return len(queries.captured_queries)


def test_a_batch_costs_a_fixed_number_of_statements_and_three_per_message(
    recorder_flow: Flow, django_assert_max_num_queries: Any
) -> None:
    # given a flow mapping through a value map, its table cached by an earlier delivery
    value_map = ValueMap.objects.create(name="uom")
    ValueMapEntry.objects.create(value_map=value_map, source_value="pcs", target_value="PC")
    recorder_flow.mapping_spec = {
        "fields": {"OrderNumber": {"path": "OrderNumber"}, "Unit": {"path": "u", "lookup": "uom"}}
    }
    recorder_flow.save()
    valuemaps.clear()
    _statements(recorder_flow, "SO-W", 1)
    # when batches of two and of six are delivered
    two, six = _statements(recorder_flow, "SO-A", 2), _statements(recorder_flow, "SO-B", 6)
    # then four more messages cost no more than their preparation, and a batch of one stays small
    assert six - two <= 4 * PER_MESSAGE
    with django_assert_max_num_queries(17 + PER_MESSAGE):
        process(ingest(recorder_flow, "SO-C1", u="pcs"))
