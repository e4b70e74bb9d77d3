"""A batch's claims are renewed while it is prepared, and not once per message when a renewal is slow (issue 17).

A renewal's new deadline counts from before its UPDATE; an UPDATE of a 1,000-message batch that took longer
than RENEW_SLACK_SECONDS (a loaded box) left the batch short again at once, so each message renewed the whole
batch once more, and a 1,000-row package stayed minutes in preparing. A statement trigger with pg_sleep makes
every UPDATE of the messages slower than the slack here, on the real database.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integrations.models import Message
from integrations.pipeline import deliver
from integrations.pipeline.delivery import RENEW_SLACK_SECONDS, Delivery
from tests.integrations.test_pipeline import ingest

pytestmark = pytest.mark.django_db(transaction=True)
SLOW_UPDATE_SECONDS = RENEW_SLACK_SECONDS + 0.1


@pytest.fixture
def slow_message_updates() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION icb_test_slow_update() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_sleep({SLOW_UPDATE_SECONDS}); RETURN NULL; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER icb_test_slow_update BEFORE UPDATE ON integrations_message "
            "FOR EACH STATEMENT EXECUTE FUNCTION icb_test_slow_update()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER icb_test_slow_update ON integrations_message")
            cursor.execute("DROP FUNCTION icb_test_slow_update()")


def test_a_renewal_slower_than_the_slack_does_not_renew_the_batch_again_for_each_message(
    recorder_flow, slow_message_updates
):
    messages = [ingest(recorder_flow, f"SO-S{n}") for n in range(6)]
    fresh = list(deliver._messages().filter(pk__in=[m.pk for m in messages]).order_by("pk"))
    claimed = [Delivery.claim(fresh[0]), *Delivery.claim_many(fresh[1:])]
    for delivery in claimed:
        delivery.deadline -= 5  # as if preparing the batch had used part of the budget

    with CaptureQueriesContext(connection) as queries:
        ready = deliver._prepared(claimed)

    assert len(ready) == 6
    renewals = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "integrations_message"')]
    # One renewal for the batch (a second, should the box be slow); before, at least one more per message.
    assert 1 <= len(renewals) <= 2
    assert all("lease_expires_at" in sql for sql in renewals)
    # Every claim still holds, under the lease of the batch's renewal.
    leases = set(Message.objects.filter(pk__in=[m.pk for m in messages]).values_list("lease_expires_at", flat=True))
    assert leases == {ready[0].lease}
    assert all(delivery.lease == ready[0].lease for delivery in ready)
