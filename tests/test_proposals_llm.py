"""LLM proposer against a real HTTP server on loopback speaking the OpenAI chat-completions JSON shape."""

from __future__ import annotations

import json
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core import store
from core.describe.proposals import (
    BACKGROUND,
    COLOUR,
    LLMAuthError,
    LLMConfig,
    LLMError,
    LLMKeyMissingError,
    LLMOutputError,
    LLMProposer,
    LLMRateLimitError,
    LLMRefusalError,
    LLMTimeoutError,
    ProposalError,
    custom_attribute,
    propose,
)
from core.describe.proposals.llm import _endpoint, parse_answer
from core.errors import BackdropError, Cancelled, InvalidInputError, MissingResourceError

KEY = "sk-test-SECRET0123456789abcdef"


def chat(content: str | None, finish_reason: str = "stop", refusal: str | None = None) -> dict:
    message = {"role": "assistant", "content": content}
    if refusal is not None:
        message["refusal"] = refusal
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "test-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


def ok(content: str, **kw) -> tuple:
    return (200, chat(content, **kw), {}, 0.0)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        srv.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        step = srv.script.pop(0) if len(srv.script) > 1 else srv.script[0]
        if callable(step):
            step = step(self, body)
        status, payload, headers, delay = step
        if delay:
            srv.release.wait(delay)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = dict(headers)
        drip = headers.pop("x-drip", None)  # seconds between single bytes of the body
        length = headers.pop("x-length", None)  # a Content-Length that differs from the body (truncation)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(length if length is not None else len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if drip is None:
                self.wfile.write(data)
                return
            for i in range(len(data)):
                if srv.release.wait(float(drip)):
                    return
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server(fresh_cache):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.requests, srv.script, srv.release = [], [ok('{"values": ["desert"]}')], threading.Event()
    srv.base_url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def llm(srv, **kw) -> LLMProposer:
    cfg = dict(model="test-model", base_url=srv.base_url, timeout=5.0, max_retries=0)
    cfg.update(kw)
    return LLMProposer(LLMConfig(**cfg), api_key=KEY)


def test_valid_list_and_request_shape(server):
    server.script = [ok('{"values": ["Desert", "Snowy mountains", "Outer space"]}')]
    out = propose(BACKGROUND, ["camel"], proposer=llm(server))
    p = out["camel"]
    assert p.values == ["Desert", "Snowy mountains", "Outer space"]
    assert p.source == "llm:test-model" and p.attribute == "background"
    assert "What are the uncommon backgrounds that a camel can appear in?" in p.prompt
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == f"Bearer {KEY}"
    assert req["body"]["model"] == "test-model"
    assert req["body"]["response_format"] == {"type": "json_object"}
    assert "camel" in req["body"]["messages"][-1]["content"]


def test_colour_and_custom_attribute_questions(server):
    server.script = [ok('["red"]')]
    propose(COLOUR, ["frog"], proposer=llm(server))
    texture = custom_attribute("texture", "Which unusual textures can a {class_name} have?")
    propose(texture, ["frog"], proposer=llm(server))
    asked = [r["body"]["messages"][-1]["content"] for r in server.requests]
    assert "What are the uncommon colours that a frog can have?" in asked[0]
    assert "Which unusual textures can a frog have?" in asked[1]


@pytest.mark.parametrize(
    "content",
    [
        'Sure! Here are some uncommon backgrounds: ["Desert", "Snowy mountains"]. Hope this helps!',
        'Here you go:\n```json\n{"backgrounds": ["Desert", "Snowy mountains"]}\n```',
        "1. **Desert**: camels rarely...\n2. **Snowy mountains** - cold places",
        '{"answer": {"values": [{"name": "Desert"}, {"name": "Snowy mountains"}]}}',
    ],
)
def test_list_wrapped_in_prose_fence_or_markdown(server, content):
    server.script = [ok(content)]
    assert propose(BACKGROUND, ["camel"], proposer=llm(server))["camel"].values == ["Desert", "Snowy mountains"]


def test_duplicates_and_markup_are_collapsed(server):
    server.script = [ok('["Desert", "desert", "  DESERT ", "- Beach", "Beach\\n", "<b>sky</b>"]')]
    p = propose(BACKGROUND, ["camel"], proposer=llm(server))["camel"]
    assert p.values == ["Desert", "Beach", "<b>sky</b>"]  # HTML stays literal text


def test_refusal_is_a_clear_error(server):
    server.script = [ok("I'm sorry, but I can't help with that request.")]
    with pytest.raises(LLMRefusalError) as e:
        propose(BACKGROUND, ["camel"], proposer=llm(server))
    assert isinstance(e.value, BackdropError) and "declined" in str(e.value) and "camel" in str(e.value)


def test_structured_refusal_field(server):
    server.script = [ok(None, refusal="I cannot assist with that.")]
    with pytest.raises(LLMRefusalError, match="refused"):
        propose(BACKGROUND, ["camel"], proposer=llm(server))


def test_rate_limit_is_retried_then_succeeds(server):
    busy = (
        429,
        {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
        {"retry-after-ms": "20"},
        0.0,
    )
    server.script = [busy, busy, ok('["Desert"]')]
    p = propose(BACKGROUND, ["camel"], proposer=llm(server, max_retries=3))["camel"]
    assert p.values == ["Desert"] and len(server.requests) == 3


def test_rate_limit_that_persists_is_an_error(server):
    server.script = [(429, {"error": {"message": "Rate limit reached"}}, {"retry-after-ms": "10"}, 0.0)]
    with pytest.raises(LLMRateLimitError) as e:
        propose(BACKGROUND, ["camel"], proposer=llm(server, max_retries=2))
    assert len(server.requests) == 3
    assert "429" in str(e.value) and "max_retries" in str(e.value)


def test_hang_past_timeout(server):
    server.script = [(200, chat('["Desert"]'), {}, 10.0)]
    with pytest.raises(LLMTimeoutError) as e:
        propose(BACKGROUND, ["camel"], proposer=llm(server, timeout=1.0, max_retries=0))
    assert "1 s" in str(e.value) and "timeout" in str(e.value)


def test_missing_key(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMKeyMissingError) as e:
        propose(BACKGROUND, ["camel"], proposer="llm", base_url=server.base_url, model="test-model")
    assert isinstance(e.value, MissingResourceError) and "OPENAI_API_KEY" in str(e.value)
    assert server.requests == []


def test_key_from_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server.script = [ok('["Desert"]')]
    propose(BACKGROUND, ["camel"], proposer="llm", base_url=server.base_url, model="test-model", max_retries=0)
    assert server.requests[0]["auth"] == f"Bearer {KEY}"


def _echo_key(status):
    def step(handler, body):
        return (
            status,
            {
                "error": {
                    "message": f"Incorrect API key provided: {handler.headers['Authorization']} (prefix {KEY[:12]})"
                }
            },
            {},
            0.0,
        )

    return step


@pytest.mark.parametrize("status,error", [(401, LLMAuthError), (500, LLMError)])
def test_key_never_in_errors_reprs_or_cache(server, status, error):
    server.script = [ok('["Desert"]'), _echo_key(status)]
    proposer = llm(server)
    propose(BACKGROUND, ["camel"], proposer=proposer)
    with pytest.raises(error) as e:
        propose(BACKGROUND, ["goldfish"], proposer=proposer)
    texts = [
        str(e.value),
        repr(e.value),
        "".join(traceback.format_exception(e.value)),
        repr(proposer),
        str(proposer),
        json.dumps(proposer.cache_id()),
    ]
    assert all(KEY not in t and KEY[:12] not in t for t in texts)
    assert e.value.__cause__ is None and e.value.__context__ is None
    assert str(status) in str(e.value)
    cached = [p.read_text() for p in store.cache_root().rglob("*.json")]
    assert cached and all(KEY not in t for t in cached)


def test_over_long_outputs(server):
    server.script = [ok('["Desert", "Des', finish_reason="length")]
    with pytest.raises(LLMOutputError, match="max_tokens"):
        propose(BACKGROUND, ["camel"], proposer=llm(server))
    server.script = [ok(json.dumps([f"place {i}" for i in range(30)]))]
    with pytest.raises(LLMOutputError, match="30 values"):
        propose(BACKGROUND, ["goldfish"], proposer=llm(server))


def test_long_items_are_dropped_and_reported(server):
    long = "a desert at noon where the sand stretches to the horizon and nothing moves at all"
    server.script = [ok(json.dumps(["Desert", long]))]
    p = propose(BACKGROUND, ["camel"], proposer=llm(server))["camel"]
    assert p.values == ["Desert"] and p.rejected and p.rejected[0].startswith("a desert at noon")


def test_malformed_answer(server):
    server.script = [ok("Deserts are nice, maybe beaches?")]
    with pytest.raises(LLMOutputError, match="Could not find a list"):
        propose(BACKGROUND, ["camel"], proposer=llm(server))


def test_server_without_json_mode(server):
    reject = (400, {"error": {"message": "Unknown parameter: 'response_format'."}}, {}, 0.0)
    server.script = [reject, ok('Backgrounds: ["Desert"]')]
    proposer = llm(server)
    assert propose(BACKGROUND, ["camel"], proposer=proposer)["camel"].values == ["Desert"]
    assert "response_format" in server.requests[0]["body"]
    assert "response_format" not in server.requests[1]["body"]


def test_resume_after_a_failing_class(server):
    server.script = [ok('["Desert"]'), ok('["Lake"]'), ok("I cannot answer that.")]
    with pytest.raises(ProposalError) as e:
        propose(BACKGROUND, ["camel", "goldfish", "cow"], proposer=llm(server))
    assert e.value.class_name == "cow" and set(e.value.partial) == {"camel", "goldfish"}
    assert "2 of 3" in str(e.value)
    server.script = [ok('["Beach"]')]
    n_before = len(server.requests)
    out = propose(BACKGROUND, ["camel", "goldfish", "cow"], proposer=llm(server))
    assert [out[c].values for c in ("camel", "goldfish", "cow")] == [["Desert"], ["Lake"], ["Beach"]]
    assert len(server.requests) == n_before + 1  # only the missing class was asked
    propose(BACKGROUND, ["camel", "goldfish", "cow"], proposer=llm(server))
    assert len(server.requests) == n_before + 1  # everything cached now
    propose(BACKGROUND, ["camel"], proposer=llm(server, model="other-model"))
    assert len(server.requests) == n_before + 2  # another model is another cache entry


def test_cancel_keeps_finished_classes(server):
    server.script = [ok('["Desert"]')]
    calls = []
    with pytest.raises(Cancelled):
        propose(
            BACKGROUND,
            ["camel", "goldfish"],
            proposer=llm(server),
            progress=lambda d, t, m: calls.append((d, t)),
            should_stop=lambda: (1, 2) in calls,
        )
    assert calls == [(0, 2), (1, 2)] and len(server.requests) == 1  # "asking about camel", then camel done
    propose(BACKGROUND, ["camel"], proposer=llm(server))
    assert len(server.requests) == 1


def test_parse_answer_units():
    assert parse_answer('{"values": ["a", "b"]}')[0] == ["a", "b"]
    assert parse_answer('["x"] and then {"values": ["y"]}')[0] == ["x"]
    with pytest.raises(LLMRefusalError):
        parse_answer("")
    with pytest.raises(LLMOutputError):
        parse_answer('["", "  ", 3]')


def test_endpoint_shown_without_credentials_and_config_checks(server):
    assert _endpoint("http://user:pw@host:8000/v1?key=abc") == "http://host:8000/v1"
    assert _endpoint(None) == "api.openai.com"
    with pytest.raises(InvalidInputError):
        LLMProposer(LLMConfig(timeout=0), api_key=KEY)
    with pytest.raises(InvalidInputError, match="constructor"):
        propose(BACKGROUND, ["camel"], proposer=llm(server), model="x")


# -- issue 11: secrets, deadlines, endpoints, long items ---------------------------------------------------------


def cache_files_holding(secret: str) -> list[str]:
    """Every file under the cache whose bytes contain ``secret`` (binary files included)."""
    root = store.cache_root()
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def _echo_everywhere(handler, body):
    """An endpoint echoing the key (as sent) in every value, next to one clean value."""
    key = handler.headers["Authorization"].removeprefix("Bearer ")
    values = [f"key is {key}", "on ice", key, f"Bearer {key}", f"{key[:14]}…"]
    return (200, chat(json.dumps({"values": values})), {}, 0.0)


def test_echoed_key_never_reaches_values_cache_lists_or_output(server, capsys):
    from core.describe.curation import CuratedLists

    server.script = [_echo_everywhere]
    props = propose(BACKGROUND, ["zero", "one"], proposer=llm(server))
    p = props["zero"]
    assert p.values == ["on ice"]  # every value that held the key was rejected
    assert len(p.rejected) == 4 and all("key" in r for r in p.rejected)
    assert p.notice and "4 item(s)" in p.notice
    CuratedLists("ds", "background").seed_from_proposals(props)
    print(props, [q.to_dict() for q in props.values()])
    out = capsys.readouterr()
    for secret in (KEY, KEY[8:22]):
        assert secret not in out.out + out.err
        assert cache_files_holding(secret) == []
    assert CuratedLists("ds", "background").get("zero").values == ["on ice"]


def test_key_in_prose_or_all_rejected_answer_is_redacted_in_errors(server):
    server.script = [ok(f"I'm sorry. Your key {KEY} was received.")]
    with pytest.raises(LLMRefusalError) as e:
        propose(BACKGROUND, ["zero"], proposer=llm(server))
    assert KEY not in str(e.value) and "***" in str(e.value)
    server.script = [ok(json.dumps([KEY, f"Bearer {KEY}"]))]
    with pytest.raises(LLMOutputError) as e:
        propose(BACKGROUND, ["one"], proposer=llm(server))
    assert KEY not in str(e.value) and KEY[8:22] not in str(e.value) and "key" in str(e.value)
    assert cache_files_holding(KEY) == []


def test_key_like_tokens_of_other_keys_are_rejected_too(server):
    other = "sk-proj-abcdefghijklmnopqrstuvwx"
    server.script = [ok(json.dumps(["desert", f"token {other}", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"]))]
    p = propose(BACKGROUND, ["camel"], proposer=llm(server))["camel"]
    assert p.values == ["desert"] and len(p.rejected) == 2
    assert other not in json.dumps(p.to_dict()) and "eyJhbGciOiJIUzI1NiJ9" not in json.dumps(p.to_dict())


def test_dripping_endpoint_hits_the_overall_deadline(server):
    # One byte every 0.3 s keeps every socket read alive (timeout 1 s); only an overall deadline ends it.
    server.script = [(200, chat('["Desert"]'), {"x-drip": "0.3"}, 0.0)]
    start = time.monotonic()
    with pytest.raises(LLMTimeoutError) as e:
        propose(BACKGROUND, ["camel"], proposer=llm(server, timeout=1.0, deadline=1.5))
    assert time.monotonic() - start < 4.0
    assert "1.5 s" in str(e.value) and "127.0.0.1" in str(e.value)


def test_run_deadline_keeps_finished_classes(server):
    server.script = [(200, chat('["Desert"]'), {}, 0.8)]
    with pytest.raises(LLMTimeoutError) as e:
        propose(BACKGROUND, ["camel", "cow", "goat"], proposer=llm(server, run_deadline=1.2))
    assert "run_deadline" in str(e.value) and set(e.value.partial) == {"camel"}


def test_progress_names_the_waiting_class(server):
    server.script = [(200, chat('["Desert"]'), {}, 1.6)]
    seen = []
    propose(BACKGROUND, ["camel"], proposer=llm(server), progress=lambda d, t, m: seen.append(m))
    assert any("'camel'" in m and "waiting 1 s" in m for m in seen)


def test_errors_name_the_endpoint_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    server.script = [(503, {"error": {"message": "down"}}, {}, 0.0)]
    with pytest.raises(LLMError) as e:
        propose(BACKGROUND, ["camel"], proposer=LLMProposer(LLMConfig(model="m", max_retries=0), api_key=KEY))
    assert "127.0.0.1" in str(e.value) and "api.openai.com" not in str(e.value)


def test_cache_is_keyed_by_the_endpoint_actually_used(server, monkeypatch):
    server.script = [ok('["Desert"]')]
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    propose(BACKGROUND, ["camel"], proposer=LLMProposer(LLMConfig(model="m", max_retries=0), api_key=KEY))
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url.replace("127.0.0.1", "localhost"))
    propose(BACKGROUND, ["camel"], proposer=LLMProposer(LLMConfig(model="m", max_retries=0), api_key=KEY))
    assert len(server.requests) == 2  # another server is asked, not answered from the first one's cache


def test_ten_thousand_character_item_is_reported(server):
    server.script = [ok(json.dumps(["Desert", "x" * 10_000]))]
    p = propose(BACKGROUND, ["camel"], proposer=llm(server))["camel"]
    assert p.values == ["Desert"]
    assert p.notice and "10000 characters" in p.notice and "limit is 60" in p.notice
    assert len(p.notice) < 400  # reported, not pasted whole


@pytest.mark.parametrize(
    "bad",
    [dict(deadline=0), dict(timeout=-1), dict(run_deadline=1e9), dict(max_retries=2.5), dict(n_values=10**6)],
)
def test_llm_settings_are_bounded(bad):
    with pytest.raises(InvalidInputError):
        LLMProposer(LLMConfig(**bad), api_key=KEY)
