"""LLM-as-judge against a local stub server speaking the OpenAI chat-completions protocol."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from radscribe.evaluate.judge import JudgeClient, JudgeError, green_score, judge_scores, list_prompts, load_prompt

GREEN_REPLY = """(a) False report of a finding: 1
(b) Missing a finding: 0
(c) Wrong location of a finding: 0
(d) Wrong severity of a finding: 1
(e) Comparison not in the reference: 0
(f) Omitted comparison: 0
Clinically insignificant errors: 2
Matched findings: 3
Explanation: one extra nodule."""


class StubJudge:
    """Replies from a queue; records requests. Status codes other than 200 answer with an error body."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append((self.path, body, self.headers.get("Authorization")))
                status, content = stub.replies.pop(0) if stub.replies else (200, "<score>50</score>")
                payload = {"choices": [{"message": {"role": "assistant", "content": content}}]} if status == 200 else {"error": content}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _client(url, **kw):
    return JudgeClient(url, model="stub-model", timeout=5, sleep=lambda _: None, **kw)


def test_prompts_are_data_and_parse_strictly():
    assert {"llmscore", "green"} <= set(list_prompts())
    prompt = load_prompt("llmscore")
    assert prompt.parse("<score> 87 </score>\n<reason>ok</reason>") == {"score": 87}
    with pytest.raises(ValueError, match="outside"):
        prompt.parse("<score>140</score>")
    with pytest.raises(ValueError, match="output format"):
        prompt.parse("I would give it 80/100")
    counts = load_prompt("green").parse(GREEN_REPLY)
    assert counts == {"a": 1, "b": 0, "c": 0, "d": 1, "e": 0, "f": 0, "insignificant": 2, "matched": 3}
    assert green_score(counts) == pytest.approx(3 / 5)


def test_llmscore_against_stub_with_retry_on_bad_format_and_5xx():
    replies = [(200, "<score>80</score><reason>fine</reason>"), (200, "no idea"), (503, "busy"), (200, "<score>40</score>")]
    with StubJudge(replies) as stub:
        scores = judge_scores(_client(stub.url, api_key="k"), "llmscore", ["ref one", "ref two"], ["hyp one", "hyp two"])
    score = scores[0]
    assert score.key == "llmscore@judge:stub-model/llmscore-v1"
    assert score.per_sample == [80.0, 40.0] and score.value == 60.0
    path, body, auth = stub.requests[0]
    assert path == "/v1/chat/completions" and body["model"] == "stub-model" and body["temperature"] == 0
    assert "ref one" in body["messages"][1]["content"] and "hyp one" in body["messages"][1]["content"]
    assert auth == "Bearer k"


def test_green_and_unjudged_samples_are_counted_not_invented():
    replies = [(200, GREEN_REPLY), (200, "garbage"), (200, "still garbage")]
    with StubJudge(replies) as stub:
        scores = {s.name: s for s in judge_scores(_client(stub.url), "green", ["r1", "r2"], ["h1", "h2"])}
    assert scores["green"].value == pytest.approx(0.6)
    assert scores["green"].details == {"unjudged": 1, "judged": 1}
    assert scores["green-matched"].value == 3.0


def test_clear_errors_for_refusal_and_unreachable():
    with StubJudge([(401, "bad key")]) as stub:
        with pytest.raises(JudgeError, match="HTTP 401"):
            _client(stub.url).complete([{"role": "user", "content": "x"}])
    with StubJudge([(500, "down")] * 3) as stub:
        with pytest.raises(JudgeError, match="after 3 attempts"):
            _client(stub.url).complete([{"role": "user", "content": "x"}])
    with StubJudge([]) as stub:
        url = stub.url
    with pytest.raises(JudgeError, match="cannot reach|failed after"):
        _client(url, retries=0).complete([{"role": "user", "content": "x"}])
