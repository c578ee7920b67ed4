"""An optional mention mapper on a language model the user serves (any OpenAI-compatible endpoint).

Off by default; nothing calls it unless ``--llm-endpoint`` is given. Per sentence the model returns a
JSON array of ``{"phrase", "classes", "side", "absent"}`` (RadGrounder's keyword-extraction step, with our
schema as the category list); answers are validated against the schema (unknown classes dropped,
phrases located in the sentence) and become the same :class:`ClassMention` records as the lexicon's.
Answers are cached in a JSONL file keyed by model, prompt version and sentence, so a rerun asks nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.request
from pathlib import Path

from radscribe.labeling import split_sentences
from radscribe.volumes.mentions import ClassMention
from radscribe.volumes.schema import ClassSchema

PROMPT_VERSION = 1
_SYSTEM = (
    "You extract anatomy mentions from one radiology report sentence and map each to classes of a "
    "segmentation schema. Answer with a JSON array only, one object per mention: "
    '{{"phrase": exact words from the sentence, "classes": [class names from the list], '
    '"side": "left"|"right"|"bilateral"|null, "absent": true if the sentence says the structure is '
    "missing or removed}}. Use [] when nothing maps. Classes: {classes}"
)


class LLMMapper:
    """``endpoint`` is the server's base URL (``http://host:8000/v1``); the key, if any, is read from
    the environment variable ``api_key_env``, never from the command line."""

    def __init__(self, schema: ClassSchema, endpoint: str, model: str, cache_path: Path | str,
                 api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 60.0):
        self.schema = schema
        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self.cache_path = Path(cache_path)
        self.api_key = os.environ.get(api_key_env)
        self.timeout_s = timeout_s
        self._system = _SYSTEM.format(classes=", ".join(schema.classes.values()))
        self._cache: dict[str, list] = {}
        if self.cache_path.exists():
            for line in self.cache_path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    self._cache[record["key"]] = record["answer"]
                except (json.JSONDecodeError, KeyError):
                    continue  # a torn last line of a stopped run: asked again

    def map_report(self, text: str) -> list[ClassMention]:
        mentions: list[ClassMention] = []
        for sentence in split_sentences(text):
            for item in self._answer(sentence.text):
                mention = self._mention(item, sentence.text, sentence.start)
                if mention is not None:
                    mentions.append(mention)
        return mentions

    def _answer(self, sentence: str) -> list:
        key = hashlib.sha256(f"{self.model}\n{PROMPT_VERSION}\n{self.schema.name}\n{sentence}".encode()).hexdigest()
        if key not in self._cache:
            answer = self._ask(sentence)
            self._cache[key] = answer
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            with self.cache_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"key": key, "sentence": sentence, "answer": answer}) + "\n")
        return self._cache[key]

    def _ask(self, sentence: str) -> list:
        body = json.dumps({
            "model": self.model, "temperature": 0,
            "messages": [{"role": "system", "content": self._system}, {"role": "user", "content": sentence}],
        }).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(f"{self.endpoint}/chat/completions", body, headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                reply = json.loads(response.read())
            content = reply["choices"][0]["message"]["content"]
        except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
            raise RuntimeError(f"LLM mapper: {self.endpoint}/chat/completions gave no usable answer ({error})") from None
        found = re.search(r"\[.*\]", content, re.DOTALL)  # models wrap JSON in prose or code fences
        try:
            answer = json.loads(found.group(0)) if found else []
        except json.JSONDecodeError:
            answer = []
        return answer if isinstance(answer, list) else []

    def _mention(self, item: object, sentence: str, offset: int) -> ClassMention | None:
        if not isinstance(item, dict) or not isinstance(item.get("phrase"), str):
            return None
        known = set(self.schema.classes.values())
        classes = tuple(name for name in item.get("classes") or [] if isinstance(name, str) and name in known)
        start = sentence.lower().find(item["phrase"].lower().strip())
        if not classes or start < 0 or not item["phrase"].strip():
            return None
        end = start + len(item["phrase"].strip())
        side = item.get("side") if item.get("side") in ("left", "right", "bilateral") else None
        return ClassMention(
            text=sentence[start:end], span=(offset + start, offset + end), sentence_span=(offset, offset + len(sentence)),
            classes=classes, side=side, status="absent" if item.get("absent") is True else "present", source=f"llm:{self.model}",
        )
