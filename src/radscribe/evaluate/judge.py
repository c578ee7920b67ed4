"""LLM-as-judge: any OpenAI-compatible ``/v1/chat/completions`` endpoint the user runs (vLLM, llama.cpp,
Ollama...), off unless a URL is given. Prompts are data (``prompts/*.yaml``): a system and a user
message with ``{reference}``/``{candidate}`` slots, and a strict output pattern whose named groups
are parsed and range-checked.

* ``llmscore``: a 0-100 rating; the corpus value is the mean over judged samples.
* ``green``: GREEN-style counts; per sample GREEN = matched / (matched + Σ significant errors (a)-(f)),
  0 when nothing matched (as in GREEN); also the mean counts.

A reply that does not fit the pattern is asked again (up to ``retries``); a sample whose replies never
fit counts as *unjudged*: left out of the mean, counted in ``details['unjudged']``, never invented.
Transport errors (unreachable, HTTP 4xx) stop the run with a clear message; timeouts, 429 and 5xx are
retried with backoff. Only the standard library is used.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
import yaml

from radscribe.evaluate.base import Score

PROMPTS_PACKAGE = "radscribe.evaluate"
GREEN_ERROR_FIELDS: tuple[str, ...] = ("a", "b", "c", "d", "e", "f")


class JudgeError(RuntimeError):
    """The judge endpoint could not be used (unreachable, refused, bad reply)."""


class JudgeOutputError(ValueError):
    """A judge reply that does not follow the prompt's output format."""


@dataclass(frozen=True)
class JudgePrompt:
    name: str
    version: int
    system: str
    user: str
    pattern: re.Pattern[str]
    fields: dict[str, dict[str, float]]

    def messages(self, reference: str, candidate: str) -> list[dict[str, str]]:
        user = self.user.replace("{reference}", reference).replace("{candidate}", candidate)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def parse(self, reply: str) -> dict[str, int]:
        """The named integer fields of a reply, range-checked; :class:`JudgeOutputError` otherwise."""
        match = self.pattern.search(reply)
        if match is None:
            raise JudgeOutputError(f"reply does not follow the '{self.name}' output format: {reply[:200]!r}")
        values: dict[str, int] = {}
        for name, limits in self.fields.items():
            value = int(match.group(name))
            if value < limits.get("min", float("-inf")) or value > limits.get("max", float("inf")):
                raise JudgeOutputError(f"'{self.name}' field '{name}' = {value} is outside {limits}")
            values[name] = value
        return values


def list_prompts() -> list[str]:
    folder = resources.files(PROMPTS_PACKAGE) / "prompts"
    return sorted(item.name.removesuffix(".yaml") for item in folder.iterdir() if item.name.endswith(".yaml"))


def load_prompt(name: str) -> JudgePrompt:
    """A shipped judge prompt by name (``llmscore``, ``green``)."""
    path = resources.files(PROMPTS_PACKAGE) / "prompts" / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown judge prompt '{name}'; known: {', '.join(list_prompts())}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        output = data["output"]
        return JudgePrompt(
            name=data["name"],
            version=int(data["version"]),
            system=data["system"],
            user=data["user"],
            pattern=re.compile(output["pattern"]),
            fields={key: dict(value or {}) for key, value in output["fields"].items()},
        )
    except (KeyError, TypeError, re.error) as error:
        raise ValueError(f"judge prompt {path}: malformed ({error})") from None


def _chat_url(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


class JudgeClient:
    """Minimal OpenAI-compatible chat client: one completion per call, temperature 0."""

    def __init__(
        self,
        url: str,
        model: str = "default",
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 1.0,
        max_tokens: int = 256,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.url = _chat_url(url)
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_tokens = max_tokens
        self.sleep = sleep

    def complete(self, messages: list[dict[str, str]]) -> str:
        body = json.dumps(
            {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": self.max_tokens}
        ).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last_error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as error:
                detail = error.read().decode("utf-8", "replace")[:300]
                if error.code == 429 or error.code >= 500:
                    last_error = f"HTTP {error.code}: {detail}"
                    continue
                raise JudgeError(f"judge at {self.url} refused the request: HTTP {error.code}: {detail}") from None
            except (TimeoutError, urllib.error.URLError) as error:
                reason = getattr(error, "reason", error)
                if isinstance(reason, ConnectionRefusedError) or "refused" in str(reason).lower():
                    raise JudgeError(f"cannot reach the judge at {self.url}: {reason}") from None
                last_error = f"{type(error).__name__}: {reason}"
                continue
            except json.JSONDecodeError:
                raise JudgeError(f"judge at {self.url} did not return JSON") from None
            try:
                return payload["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                raise JudgeError(f"judge at {self.url} returned no choices[0].message.content: {str(payload)[:300]}") from None
        raise JudgeError(f"judge at {self.url} failed after {self.retries + 1} attempts ({last_error})")


def judge_pairs(client: JudgeClient, prompt: JudgePrompt, refs: Sequence[str], hyps: Sequence[str], retries: int = 1) -> list[dict[str, int] | None]:
    """Parsed judge fields per pair; ``None`` for a pair whose replies never fit the format."""
    results: list[dict[str, int] | None] = []
    for ref, hyp in zip(refs, hyps):
        parsed = None
        for _ in range(retries + 1):
            try:
                parsed = prompt.parse(client.complete(prompt.messages(ref, hyp)))
                break
            except JudgeOutputError:
                continue
        results.append(parsed)
    return results


def green_score(counts: dict[str, int]) -> float:
    matched = counts["matched"]
    significant = sum(counts[key] for key in GREEN_ERROR_FIELDS)
    return matched / (matched + significant) if matched > 0 else 0.0


def judge_scores(client: JudgeClient, prompt_name: str, refs: Sequence[str], hyps: Sequence[str]) -> list[Score]:
    """Judge every (reference, candidate) pair and summarise: ``llmscore`` or ``green`` (+ mean counts)."""
    prompt = load_prompt(prompt_name)
    results = judge_pairs(client, prompt, refs, hyps)
    protocol = f"judge:{client.model}/{prompt.name}-v{prompt.version}"
    unjudged = sum(r is None for r in results)
    judged = [r for r in results if r is not None]

    def summarise(name: str, per_sample: list[float]) -> Score:
        present = [v for v in per_sample if v == v]
        value = sum(present) / len(present) if present else float("nan")
        return Score(name, value, per_sample, protocol, {"unjudged": unjudged, "judged": len(judged)})

    if prompt.name == "green":
        scores = [summarise("green", [green_score(r) if r else float("nan") for r in results])]
        for key in (*GREEN_ERROR_FIELDS, "insignificant", "matched"):
            scores.append(summarise(f"green-{key}", [float(r[key]) if r else float("nan") for r in results]))
        return scores
    return [summarise(prompt.name, [float(r["score"]) if r else float("nan") for r in results])]
