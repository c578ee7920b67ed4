"""Reader-study mode: crossover design, blinding and isolation per reader token, washout, analysis."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from radscribe.annotate import analyze_spine, spine_template  # noqa: E402
from radscribe.cli.main import app as cli  # noqa: E402
from radscribe.serve import Accounts, ServeSettings, Storage, create_app, design, load_plan  # noqa: E402
from radscribe.serve.readerstudy import collect_reads  # noqa: E402
from radscribe.serve.reports import from_filled  # noqa: E402
from radscribe.templates import FilledTemplate, load_template, render  # noqa: E402
from radscribe.types import Box  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "radscribe" / "samples" / "cadma" / "valid"


def cadma_reference(image: Path):
    """The reference report derived from the image's real vertebra labels (radscribe.annotate)."""
    width, height = Image.open(image).size
    boxes = []
    for line in (SAMPLES / "labels" / f"{image.stem}.txt").read_text().split("\n"):
        if line.strip():
            _, cx, cy, w, h = map(float, line.split())
            boxes.append(Box.from_xyxy("vertebra", (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    return spine_template(analyze_spine(boxes, (width, height)))


@pytest.fixture(scope="module")
def reporter():
    from radscribe.infer import Reporter
    from radscribe.models import create_model

    return Reporter(create_model("radscribe-tiny-test"), grounding_boxes=4)


def write_definition(folder: Path, washout_days: float) -> Path:
    cases = []
    for index, image in enumerate(sorted((SAMPLES / "images").glob("*.jpg"))):
        reference = folder / f"reference-{index}.md"
        reference.write_text(render(cadma_reference(image)))
        cases.append({"id": f"case-{index}", "images": [str(image)], "reference": reference.name})
    definition = {"name": "cadma-pilot", "template": "spine-ap-alignment", "seed": 11, "washout_days": washout_days,
                  "readers": ["alice", "bob"], "cases": cases}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(definition))
    return path


def test_crossover_design_is_balanced_and_seeded():
    cases = [f"c{i}" for i in range(6)]
    rows = design(cases, ["r1", "r2", "r3"], seed=3)
    assert rows == design(cases, ["r1", "r2", "r3"], seed=3)
    assert rows != design(cases, ["r1", "r2", "r3"], seed=4)
    for reader in ("r1", "r2", "r3"):
        mine = [r for r in rows if r["reader"] == reader]
        assert Counter((r["case_id"], r["arm"]) for r in mine) == Counter({(c, a): 1 for c in cases for a in ("assisted", "unassisted")})
        for session in (1, 2):
            arms = Counter(r["arm"] for r in mine if r["session"] == session)
            assert arms == {"assisted": 3, "unassisted": 3}
    first = {r["case_id"]: r["arm"] for r in rows if r["reader"] == "r1" and r["session"] == 1}
    second = {r["case_id"]: r["arm"] for r in rows if r["reader"] == "r2" and r["session"] == 1}
    assert all(first[c] != second[c] for c in cases)  # neighbouring readers start in opposite arms


def test_session_two_waits_for_the_washout(tmp_path):
    runner = CliRunner()
    created = runner.invoke(cli, ["study", "create", str(write_definition(tmp_path, 28)), "--out", str(tmp_path / "study")])
    assert created.exit_code == 0, created.output
    plan = load_plan(tmp_path / "study")
    now = [1_000_000.0]
    storage = Storage(tmp_path / "study", clock=lambda: now[0])
    assert "complete" in plan.locked_reason(storage, "alice", 2)
    for row in storage.studies("alice"):
        if row["session"] == 1:
            edit = storage.save_edit(row["id"], "alice", {"impression": "x"}, '"0"')
            storage.sign(row["id"], "alice", edit["etag"])
    assert "washout" in plan.locked_reason(storage, "alice", 2)
    now[0] += 28 * 86_400 + 1
    assert plan.locked_reason(storage, "alice", 2) is None
    assert "complete" in plan.locked_reason(storage, "bob", 2)  # bob's own progress, not alice's
    storage.close()


def test_reader_study_end_to_end(tmp_path, reporter):
    runner = CliRunner()
    created = runner.invoke(cli, ["study", "create", str(write_definition(tmp_path, 0)), "--out", str(tmp_path / "study")])
    assert created.exit_code == 0, created.output
    accounts_file = tmp_path / "study" / "reader-accounts.txt"
    passwords = dict(line.split("\t") for line in accounts_file.read_text().splitlines())
    assert set(passwords) == {"alice", "bob"} and accounts_file.stat().st_mode & 0o077 == 0
    plan = load_plan(tmp_path / "study")
    database = (tmp_path / "study" / "radscribe.db").read_bytes()
    assert all(p not in json.dumps(plan.to_dict()) and p.encode() not in database for p in passwords.values())  # only argon2 hashes

    storage = Storage(tmp_path / "study")
    accounts = Accounts(storage)
    accounts.add("olga", "organiser", "organiser-password")
    tokens = {name: accounts.issue(name, "api", 3600) for name in ("alice", "bob", "olga")}
    storage.close()
    client = TestClient(create_app(ServeSettings(data_dir=tmp_path / "study"), reporter=reporter), base_url="http://127.0.0.1:8000")
    assert client.get("/api/studies").status_code == 401  # study mode: readers always sign in
    login = client.post("/api/session", json={"name": "alice", "password": passwords["alice"]}, headers={"Origin": "http://127.0.0.1:8000"})
    assert login.status_code == 200 and login.json()["role"] == "reader"
    client.cookies.clear()
    headers = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
    worklists = {name: client.get("/api/studies", headers=headers[name]).json()["items"] for name in ("alice", "bob")}
    template = load_template("spine-ap-alignment")
    references = {case: plan.references[case] for case in plan.references}
    drafted = False
    for reader, worklist in worklists.items():
        assert len(worklist) == 6 and all(row["case_id"] is None and row["reader"] is None for row in worklist)  # blinded
        assert [row["locked"] is not None for row in worklist] == [False] * 3 + [True] * 3
        other = next(name for name in worklists if name != reader)
        foreign = worklists[other][0]["id"]
        assert client.get(f"/api/studies/{foreign}", headers=headers[reader]).status_code == 404
        assert client.get(f"/api/studies/{foreign}/export", headers=headers[reader]).status_code == 404
        assert client.post("/api/studies", headers=headers[reader],
                           files=[("files", ("a.jpg", (SAMPLES / "images").glob("*.jpg").__next__().read_bytes()))]).status_code == 403
        locked = worklist[3]["id"]
        assert client.get(f"/api/studies/{locked}/images/0.png", headers=headers[reader]).status_code == 403
        for session in (1, 2):
            for row in [r for r in worklist if r["session"] == session]:
                study_id = row["id"]
                # The organiser looking first does not start the reader's clock; the first image sent to the reader does.
                assert client.get(f"/api/studies/{study_id}/images/0.png", headers=headers["olga"]).status_code == 200
                assert client.get(f"/api/studies/{study_id}/images/0.png", headers=headers[reader]).status_code == 200
                case = next(a["case_id"] for a in plan.assignments if a["study_id"] == study_id)
                if row["arm"] == "unassisted":
                    assert client.post(f"/api/studies/{study_id}/draft", headers=headers[reader]).status_code == 403
                    # An unassisted reader here calls every study normal.
                    document = from_filled(template.normal(), template, [])
                else:
                    if not drafted:
                        response = client.post(f"/api/studies/{study_id}/draft", headers=headers[reader])
                        assert response.status_code == 200 and response.json()["boxes"]
                        drafted = True
                    document = from_filled(FilledTemplate.from_dict(references[case]), template, [])
                saved = client.put(f"/api/studies/{study_id}/report", json=document, headers={**headers[reader], "If-Match": '"0"'})
                assert saved.status_code == 200, saved.text
                signed = client.post(f"/api/studies/{study_id}/sign", json={"signer": "someone else"},
                                     headers={**headers[reader], "If-Match": saved.headers["etag"]})
                assert signed.status_code == 200 and signed.json()["signer"] == reader

    client.app.state.workstation.close()
    storage = Storage(tmp_path / "study")
    _, reads, _ = collect_reads(tmp_path / "study")
    for read in reads:  # each read is timed from the reader's own first view, never from the organiser's
        row = next(r for r in plan.assignments if (r["reader"], r["case_id"], r["arm"]) == (read.reader, read.case_id, read.arm))
        views = {entry["actor"]: entry["at"] for entry in reversed(storage.audit_log(row["study_id"])) if entry["action"] == "view-image"}
        signed_at = storage.signature(row["study_id"])["signed_at"]
        assert read.seconds == pytest.approx(signed_at - views[read.reader]) and read.seconds < signed_at - views["olga"]
    storage.close()

    analyzed = runner.invoke(cli, ["study", "analyze", str(tmp_path / "study"), "--resamples", "200"])
    assert analyzed.exit_code == 0, analyzed.output
    out = tmp_path / "study" / "analysis"
    result = json.loads((out / "analysis.json").read_text())
    assert result["signed_reads"] == 12 and result["unsigned_reads"] == 0
    groups = {(g["reader"], g["arm"]): g for g in result["groups"]}
    assert set(groups) == {(r, a) for r in ("alice", "bob", "all") for a in ("assisted", "unassisted")}
    # Assisted reads copied the reference: perfect F1; "all normal" finds none of the abnormal findings.
    assert groups[("all", "assisted")]["diagnostic_f1"]["estimate"] == pytest.approx(1.0)
    assert groups[("all", "unassisted")]["diagnostic_f1"]["estimate"] == pytest.approx(0.0)
    overall = next(c for c in result["comparisons"] if c["reader"] == "all")
    assert overall["pairs"] == 6 and overall["diagnostic_f1_difference"]["estimate"] == pytest.approx(1.0)
    change = overall["time_relative_change"]
    assert change["low"] <= change["estimate"] <= change["high"]
    assert "| all | assisted | 6 |" in (out / "analysis.md").read_text()
    for picture in ("reading_time.png", "diagnostic_f1.png"):
        assert Image.open(out / picture).size[0] > 100
