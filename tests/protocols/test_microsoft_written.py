"""What a Microsoft OData write answered, as a DeliveryResult (shared by the Dataverse and F&O connectors)."""

from __future__ import annotations

from integrations.protocols.microsoft import MicrosoftConnector


def test_the_etag_header_wins_over_the_body() -> None:
    body = {"@odata.etag": 'W/"1"', "name": "x"}
    result = MicrosoftConnector.written("k1", 201, {"ETag": 'W/"2"'}, body, "POST /accounts")
    assert (result.target_key, result.etag, result.created, result.status_code) == ("k1", 'W/"2"', True, 201)
    assert result.body == body
    assert result.request_summary == "POST /accounts"


def test_without_a_header_the_etag_comes_from_the_body_and_an_empty_body_is_none() -> None:
    assert MicrosoftConnector.written("k", 204, {}, {"@odata.etag": 'W/"7"'}, "PATCH").etag == 'W/"7"'
    empty = MicrosoftConnector.written("k", 204, {}, {}, "PATCH")
    assert (empty.etag, empty.body, empty.response_excerpt, empty.created) == ("", None, "", False)
