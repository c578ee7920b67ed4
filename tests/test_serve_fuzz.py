"""Property-based fuzz of the whole API against its own OpenAPI schema (schemathesis), bounded for CI.

Every operation gets ``RADSCRIBE_FUZZ_EXAMPLES`` generated requests (default 15), signed in with a
radiologist's API token; half of the requests that name a study use a real one (with a saved report)
so the fuzz reaches past the 404s. Each response must not be a server error and must conform to the
schema: documented status code, content type, headers and body. ``benchmarks/serve_fuzz.py`` runs
this file with more examples and records the counts.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance, response_headers_conformance, response_schema_conformance, status_code_conformance,
)

from radscribe.serve import Accounts, ServeSettings, Storage, create_app  # noqa: E402

EXAMPLES = int(os.environ.get("RADSCRIBE_FUZZ_EXAMPLES", "15"))
SAMPLE = sorted((Path(__file__).resolve().parents[1] / "src/radscribe/samples/cadma/valid/images").glob("*.jpg"))[0]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
TALLY: Counter = Counter()


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    """(app, token, study id): a workstation with a radiologist account and one study with a saved report."""
    from fastapi.testclient import TestClient

    from radscribe.infer import Reporter
    from radscribe.models import create_model

    data = tmp_path_factory.mktemp("fuzz") / "data"
    storage = Storage(data)
    accounts = Accounts(storage)
    accounts.add("fuzzer", "radiologist", "fuzzer-password-1")
    token = accounts.issue("fuzzer", "api", None)
    storage.close()
    app = create_app(ServeSettings(data_dir=data, allowed_hosts=["testserver"]), reporter=Reporter(create_model("radscribe-tiny-test"), grounding_boxes=4))
    with TestClient(app, base_url="http://127.0.0.1:8000", headers={"Authorization": f"Bearer {token}"}) as client:
        study = client.post("/api/studies", files=[("files", (SAMPLE.name, SAMPLE.read_bytes()))]).json()["id"]
        saved = client.put(f"/api/studies/{study}/report", json={"fields": {"technique.projection": "AP"}}, headers={"If-Match": '"0"'})
        assert saved.status_code == 200, saved.text
        yield app, token, study
    report = os.environ.get("RADSCRIBE_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(dict(TALLY), indent=1))


def test_api_conforms_and_never_errs(fuzz_target, one_torch_thread):
    from hypothesis import given

    app, token, study = fuzz_target
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            if "study_id" in (case.path_parameters or {}) and TALLY["cases"] % 2 == 0:
                case.path_parameters["study_id"] = study
            TALLY["cases"] += 1
            try:
                response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS, timeout=300)
            except Exception:
                TALLY["failures"] += 1
                raise
            TALLY["server_errors"] += response.status_code >= 500
            TALLY[f"status_{response.status_code}"] += 1

        fuzz()
    assert TALLY["cases"] >= len(operations) and TALLY["server_errors"] == 0
