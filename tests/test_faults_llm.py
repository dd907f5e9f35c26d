"""Hostile and broken OpenAI-compatible endpoints (issue 11): every scenario ends in a clear LLMError (or a valid
answer) within its deadline, and the key never appears in what users see or what is cached."""

from __future__ import annotations

import json
import time

import pytest

from core import store
from core.describe.proposals import (
    BACKGROUND,
    LLMConnectionError,
    LLMError,
    LLMOutputError,
    LLMRateLimitError,
    LLMTimeoutError,
    propose,
)
from tests.test_proposals_llm import KEY, chat, llm, ok, server  # noqa: F401  (server is a fixture)

pytestmark = pytest.mark.faults


def _no_key_anywhere(*texts: str) -> None:
    for t in texts:
        assert KEY not in t and KEY[8:22] not in t
    for p in store.cache_root().rglob("*"):
        if p.is_file():
            assert KEY.encode() not in p.read_bytes(), p


def _timed(fn):
    start = time.monotonic()
    try:
        return fn(), time.monotonic() - start
    except Exception as e:
        return e, time.monotonic() - start


def test_500_storm_is_one_clear_error_naming_the_endpoint(server):
    server.script = [(500, {"error": {"message": f"internal error for key {KEY}"}}, {}, 0.0)]
    e, took = _timed(lambda: propose(BACKGROUND, ["camel", "cow"], proposer=llm(server, max_retries=2)))
    assert isinstance(e, LLMError) and "HTTP 500" in str(e) and "127.0.0.1" in str(e)
    assert len(server.requests) == 3 and e.partial == {} and took < 20
    _no_key_anywhere(str(e))


def test_429_with_retry_after_waits_then_succeeds(server):
    busy = (429, {"error": {"message": "slow down"}}, {"Retry-After": "1"}, 0.0)
    server.script = [busy, ok('["Desert"]')]
    out, took = _timed(lambda: propose(BACKGROUND, ["camel"], proposer=llm(server, max_retries=2)))
    assert out["camel"].values == ["Desert"] and len(server.requests) == 2 and took >= 0.9


def test_429_with_a_long_retry_after_is_bounded_by_the_deadline(server):
    server.script = [(429, {"error": {"message": "quota"}}, {"Retry-After": "50"}, 0.0)]
    e, took = _timed(lambda: propose(BACKGROUND, ["camel"], proposer=llm(server, max_retries=3, deadline=1.5)))
    assert isinstance(e, (LLMTimeoutError, LLMRateLimitError)) and took < 5


def test_slow_drip_across_classes_hits_the_run_deadline(server):
    server.script = [(200, chat('["Desert"]'), {"x-drip": "0.2"}, 0.0)]
    e, took = _timed(
        lambda: propose(BACKGROUND, ["a", "b", "c"], proposer=llm(server, timeout=1.0, deadline=30, run_deadline=2))
    )
    assert isinstance(e, LLMTimeoutError) and "run_deadline" in str(e) and took < 5


@pytest.mark.parametrize(
    "content",
    ['{"values": ["desert", "sn', '```json\n["desert", "snow"', '{"values": [', "[[[[[[[[[[[[[[[[[["],
)
def test_truncated_json_answers_are_output_errors(server, content):
    server.script = [ok(content)]
    with pytest.raises(LLMOutputError):
        propose(BACKGROUND, ["camel"], proposer=llm(server))
    assert not list(store.cache_root().rglob("proposals/**/*.json"))  # nothing cached for a failed class


def test_truncated_http_body_is_a_connection_error(server):
    body = json.dumps(chat('["Desert"]')).encode()
    server.script = [(200, body[: len(body) // 2], {"x-length": str(len(body))}, 0.0)]
    with pytest.raises(LLMConnectionError, match="127.0.0.1"):
        propose(BACKGROUND, ["camel"], proposer=llm(server))


def test_non_json_body_is_an_error(server):
    server.script = [(200, b"<html>gateway says hi</html>", {}, 0.0)]
    with pytest.raises(LLMError):
        propose(BACKGROUND, ["camel"], proposer=llm(server))


def test_giant_answers_are_refused_or_trimmed_quickly(server):
    server.script = [ok(json.dumps([f"place {i}" for i in range(50_000)]))]
    e, took = _timed(lambda: propose(BACKGROUND, ["camel"], proposer=llm(server)))
    assert isinstance(e, LLMOutputError) and "50000 values" in str(e) and took < 10
    server.script = [ok(json.dumps(["Desert", "y" * 1_000_000, f"{KEY} " * 1000]))]
    p, took = _timed(lambda: propose(BACKGROUND, ["cow"], proposer=llm(server))["cow"])
    assert p.values == ["Desert"] and len(p.rejected) == 2 and took < 10
    assert len(json.dumps(p.to_dict())) < 2_100_000  # the raw answer is kept (redacted); rejected items are short
    assert all(len(r) < 200 for r in p.rejected) and "1000000 characters" in p.notice
    _no_key_anywhere(json.dumps(p.to_dict()))


@pytest.mark.parametrize("status", [400, 403, 404, 422, 429, 502])
def test_key_echoed_in_error_bodies_never_shows(server, status):
    def echo(handler, body):
        auth = handler.headers["Authorization"]
        return (status, {"error": {"message": f"bad request from {auth}", "param": KEY, "code": KEY}}, {}, 0.0)

    server.script = [echo]
    with pytest.raises(LLMError) as e:
        propose(BACKGROUND, ["camel"], proposer=llm(server))
    _no_key_anywhere(str(e.value), repr(e.value))
    assert e.value.__cause__ is None and e.value.__context__ is None
