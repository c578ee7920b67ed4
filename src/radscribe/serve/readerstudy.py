"""Reader studies: unassisted vs draft-assisted reporting, crossover with washout, analysed with CIs.

A definition (YAML) names the cases (images plus a reference report in the study's template), the
readers and the design::

    name: cadma-pilot
    template: spine-ap-alignment
    seed: 7
    washout_days: 28
    readers: [alice, bob]
    cases:
      - id: case-1
        images: [images/a.jpg]            # relative to the YAML file
        reference: references/a.md        # template markdown, or an inline {template, sections} mapping

:func:`create_study` turns it into a study folder the server runs on: images stored by hash, one
study row per (reader, case, arm) with a random id, an account per reader (role ``reader``, a
random password written once to ``reader-accounts.txt``, owner-readable only), and ``study.json``,
the plan (references included; never served). Organisers get accounts of their own with
``radscribe serve user add NAME --role organiser --data-dir STUDY``.

Design (two-period crossover): the cases are shuffled (seeded) into blocks A and B. Readers with an
even index read A unassisted and B assisted in session 1, then A assisted and B unassisted in
session 2; odd readers the other way round. Each session's order is shuffled per reader (seeded), and
session 2 opens only when the reader has signed all of session 1 and ``washout_days`` have passed
since their last signature. Readers see opaque ids, never case names or references.

:func:`analyze_study` scores every signed report against its reference (diagnostic F1 from
:mod:`radscribe.evaluate.structured`) and times each read from the moment the server first sent
that reader an image of the case to their signature (server clock; one clock per reader, which
nobody else's viewing starts), per reader and arm, with percentile bootstrap CIs; assisted vs unassisted is compared on the
(reader, case) pairs read in both arms (paired bootstrap).
"""

from __future__ import annotations

import json
import math
import random
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from radscribe.data.manifest import atomic_write
from radscribe.serve.accounts import NAME_PATTERN
from radscribe.templates import FilledTemplate, TemplateParseError, list_templates, load_template, parse, render
from radscribe.types import SchemaError

PLAN_FILE = "study.json"
ACCOUNTS_FILE = "reader-accounts.txt"
ARMS = ("unassisted", "assisted")
DAY = 86_400.0


class StudyDefinitionError(ValueError):
    def __init__(self, source: Path | str, where: str, expected: str, got: Any = None):
        detail = f"{source}: {where}: expected {expected}"
        if got is not None:
            detail += f", got {got!r}"[:240]
        super().__init__(detail)


@dataclass
class StudyPlan:
    name: str
    template: str
    seed: int
    washout_days: float
    readers: list[str]                               # reader-study participants' account names
    references: dict[str, dict[str, Any]]           # case id -> FilledTemplate dict
    assignments: list[dict[str, Any]] = field(default_factory=list)  # reader, case_id, arm, session, position, study_id

    def locked_reason(self, storage: Any, reader: str, session: int | None) -> str | None:
        """Why ``reader`` may not open session ``session`` yet (None: open)."""
        if not session or session <= 1:
            return None
        earlier = [row for row in storage.studies(reader) if (row["session"] or 0) < session]
        unsigned = sum(row["status"] != "signed" for row in earlier)
        if unsigned:
            return f"session {session} opens after session {session - 1} is complete ({unsigned} case(s) left) and the washout"
        signed_at = [storage.signature(row["id"])["signed_at"] for row in earlier]
        opens = max(signed_at, default=0.0) + self.washout_days * DAY
        if storage.clock() < opens:
            days = (opens - storage.clock()) / DAY
            return f"session {session} opens after the {self.washout_days:g}-day washout ({days:.1f} day(s) left)"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "template": self.template, "seed": self.seed, "washout_days": self.washout_days,
            "readers": self.readers, "references": self.references,
            "assignments": self.assignments,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyPlan:
        return cls(**{key: data[key] for key in (
            "name", "template", "seed", "washout_days", "readers", "references", "assignments")})


def load_plan(folder: Path | str) -> StudyPlan | None:
    """The reader-study plan of a data folder, or None when the folder is not a reader study."""
    path = Path(folder) / PLAN_FILE
    if not path.exists():
        return None
    return StudyPlan.from_dict(json.loads(path.read_text(encoding="utf-8")))


# ----------------------------------------------------------------------------------------------- create


def _load_definition(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"study definition not found: {path}") from None
    except yaml.YAMLError as error:
        raise StudyDefinitionError(path, "file", "valid YAML", str(error).splitlines()[0]) from None
    if not isinstance(data, dict):
        raise StudyDefinitionError(path, "file", "a mapping with name, template, readers and cases", type(data).__name__)
    for key, kind in (("name", str), ("template", str), ("readers", list), ("cases", list)):
        if not isinstance(data.get(key), kind) or not data[key]:
            raise StudyDefinitionError(path, key, f"a non-empty {kind.__name__}", data.get(key))
    if data["template"] not in list_templates() and not Path(data["template"]).suffix:
        raise StudyDefinitionError(path, "template", f"one of {', '.join(list_templates())}", data["template"])
    readers = data["readers"]
    if len(set(map(str, readers))) != len(readers) or not all(isinstance(r, str) and NAME_PATTERN.match(r) for r in readers):
        raise StudyDefinitionError(path, "readers", "distinct reader names (letters, digits, '.', '_', '@', '-')", readers)
    if len(data["cases"]) < 2:
        raise StudyDefinitionError(path, "cases", "at least 2 cases (a crossover needs two blocks)", len(data["cases"]))
    washout = data.get("washout_days", 28)
    if not isinstance(washout, (int, float)) or washout < 0:
        raise StudyDefinitionError(path, "washout_days", "a number of days >= 0", washout)
    if not isinstance(data.get("seed", 0), int):
        raise StudyDefinitionError(path, "seed", "an integer", data.get("seed"))
    return data


def _reference(case: dict[str, Any], template: str, base: Path, where: str, source: Path) -> FilledTemplate:
    reference = case.get("reference")
    try:
        if isinstance(reference, str):
            return parse((base / reference).read_text(encoding="utf-8"), template)
        if isinstance(reference, dict):
            filled = FilledTemplate.from_dict({"template": template, **reference})
            parse(render(filled, template), template)  # must be expressible in the template
            return filled
    except FileNotFoundError:
        raise StudyDefinitionError(source, f"{where}.reference", "an existing markdown file", reference) from None
    except (TemplateParseError, SchemaError) as error:
        raise StudyDefinitionError(source, f"{where}.reference", f"a report in template '{template}' ({error})") from None
    raise StudyDefinitionError(source, f"{where}.reference", "a markdown file path or a {sections: ...} mapping", reference)


def design(case_ids: list[str], readers: list[str], seed: int) -> list[dict[str, Any]]:
    """The crossover assignment (module docstring): one row per reader x case x arm."""
    rng = random.Random(seed)
    shuffled = list(case_ids)
    rng.shuffle(shuffled)
    half = len(shuffled) // 2
    blocks = (shuffled[:half], shuffled[half:])
    rows = []
    for index, reader in enumerate(readers):
        first = ARMS if index % 2 == 0 else ARMS[::-1]      # arms of blocks A and B in session 1
        for session, arms in ((1, first), (2, first[::-1])):
            reads = [(case, arms[0]) for case in blocks[0]] + [(case, arms[1]) for case in blocks[1]]
            random.Random(f"{seed}:{reader}:{session}").shuffle(reads)
            rows += [
                {"reader": reader, "case_id": case, "arm": arm, "session": session, "position": position}
                for position, (case, arm) in enumerate(reads, start=1)
            ]
    return rows


def create_study(definition: Path | str, out_dir: Path | str) -> tuple[StudyPlan, dict[str, str]]:
    """Build a reader-study folder from a definition; returns the plan and each reader's initial password."""
    from radscribe.serve.accounts import Accounts
    from radscribe.serve.storage import Storage
    from radscribe.serve.uploads import UploadRejected, check_upload

    source = Path(definition)
    data = _load_definition(source)
    out = Path(out_dir)
    if (out / PLAN_FILE).exists():
        raise FileExistsError(f"{out} already holds a reader study ({PLAN_FILE}); choose a new folder")
    template = load_template(data["template"]).name
    base = source.resolve().parent
    storage = Storage(out)
    case_images: dict[str, list[str]] = {}
    references: dict[str, dict[str, Any]] = {}
    for index, case in enumerate(data["cases"]):
        where = f"cases[{index}]"
        if not isinstance(case, dict) or not isinstance(case.get("id"), str) or not case["id"]:
            raise StudyDefinitionError(source, f"{where}.id", "a case id (string)", case)
        if case["id"] in case_images:
            raise StudyDefinitionError(source, f"{where}.id", "a unique case id", case["id"])
        images = case.get("images")
        if not isinstance(images, list) or not images:
            raise StudyDefinitionError(source, f"{where}.images", "a non-empty list of image paths", images)
        hashes = []
        for position, name in enumerate(images):
            path = base / str(name)
            try:
                checked = check_upload(path.read_bytes(), str(path))
            except FileNotFoundError:
                raise StudyDefinitionError(source, f"{where}.images[{position}]", "an existing image file", str(path)) from None
            except UploadRejected as error:
                raise StudyDefinitionError(source, f"{where}.images[{position}]", "a PNG, JPEG or DICOM radiograph", error.reason) from None
            hashes.append(storage.add_image(checked.data, checked.format, checked.width, checked.height).sha256)
        case_images[case["id"]] = hashes
        references[case["id"]] = _reference(case, template, base, where, source).to_dict()
    readers = [str(r) for r in data["readers"]]
    passwords = {reader: secrets.token_urlsafe(18) for reader in readers}
    accounts = Accounts(storage)
    for reader, password in passwords.items():
        accounts.add(reader, "reader", password)
    assignments = design(list(case_images), readers, int(data.get("seed", 0)))
    for row in assignments:
        row["study_id"] = storage.create_study(template, case_images[row["case_id"]], **row)
    plan = StudyPlan(
        name=str(data["name"]), template=template, seed=int(data.get("seed", 0)),
        washout_days=float(data.get("washout_days", 28)), readers=readers,
        references=references, assignments=assignments,
    )
    storage.close()
    with atomic_write(out / PLAN_FILE) as handle:
        json.dump(plan.to_dict(), handle, indent=1)
    with atomic_write(out / ACCOUNTS_FILE) as handle:  # mkstemp: owner-readable only
        handle.write("".join(f"{reader}\t{password}\n" for reader, password in passwords.items()))
    return plan, passwords


# ----------------------------------------------------------------------------------------------- analyze


@dataclass
class Read:
    reader: str
    case_id: str
    arm: str
    session: int
    seconds: float
    markdown: str


def collect_reads(study_dir: Path | str) -> tuple[StudyPlan, list[Read], int]:
    """Signed reads with their time from the reader's first view to signature, and how many assigned reads are not signed."""
    from radscribe.serve import reports
    from radscribe.serve.storage import Storage

    plan = load_plan(study_dir)
    if plan is None:
        raise FileNotFoundError(f"{study_dir}: not a reader-study folder (no {PLAN_FILE}); create one with `radscribe study create`")
    storage = Storage(study_dir)
    template = load_template(plan.template)
    reads, unsigned = [], 0
    try:
        for row in plan.assignments:
            signature = storage.signature(row["study_id"])
            opened = [e["at"] for e in storage.audit_log(row["study_id"]) if e["action"] == "view-image" and e["actor"] == row["reader"]]
            if signature is None or not opened:
                unsigned += 1
                continue
            edit = storage.edit(row["study_id"], signature["edit_id"])
            reads.append(Read(
                row["reader"], row["case_id"], row["arm"], row["session"], signature["signed_at"] - min(opened),
                reports.export_markdown(edit["document"], template),
            ))
    finally:
        storage.close()
    return plan, reads, unsigned


def _f1_vectors(plan: StudyPlan, reads: list[Read]):
    import numpy as np

    from radscribe.evaluate.structured import StructuredScorer, sample_vector

    refs = [FilledTemplate.from_dict(plan.references[read.case_id]) for read in reads]
    samples = StructuredScorer(plan.template).samples(refs, [read.markdown for read in reads])
    return np.array([sample_vector(s) for s in samples], dtype=float)


def _f1_statistic(vectors):
    from radscribe.evaluate.bootstrap import SufficientStatistic
    from radscribe.evaluate.structured import corpus_from_sums

    return SufficientStatistic(vectors, lambda sums: corpus_from_sums(sums)["diagnostic-f1"])


def _interval(result) -> dict[str, float]:
    return {"estimate": result.estimate, "low": result.low, "high": result.high}


def analyze_study(study_dir: Path | str, out_dir: Path | str | None = None, n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Write ``analysis.md``, ``analysis.json``, ``reading_time.png`` and ``diagnostic_f1.png``; return the JSON."""
    import numpy as np

    from radscribe.evaluate.bootstrap import SampleMean, bootstrap, paired_bootstrap

    plan, reads, unsigned = collect_reads(study_dir)
    if not reads:
        raise ValueError(f"{study_dir}: no signed reads yet; nothing to analyze")
    out = Path(out_dir) if out_dir is not None else Path(study_dir) / "analysis"
    options = {"n_resamples": n_resamples, "seed": seed}
    groups: list[dict[str, Any]] = []
    for reader in [*plan.readers, None]:
        for arm in ARMS:
            chosen = [r for r in reads if r.arm == arm and (reader is None or r.reader == reader)]
            if not chosen:
                continue
            vectors = _f1_vectors(plan, chosen)
            times = np.array([r.seconds for r in chosen])
            groups.append({
                "reader": reader or "all", "arm": arm, "reads": len(chosen),
                "diagnostic_f1": _interval(bootstrap(_f1_statistic(vectors), **options)),
                "seconds": _interval(bootstrap(SampleMean(times), **options)),
            })
    comparisons = []
    for reader in [*plan.readers, None]:
        by_key = {(r.reader, r.case_id, r.arm): r for r in reads if reader is None or r.reader == reader}
        pairs = [(by_key[(rd, case, "assisted")], by_key[(rd, case, "unassisted")])
                 for (rd, case, arm) in by_key if arm == "assisted" and (rd, case, "unassisted") in by_key]
        if not pairs:
            continue
        assisted, unassisted = [p[0] for p in pairs], [p[1] for p in pairs]
        f1 = paired_bootstrap(_f1_statistic(_f1_vectors(plan, assisted)), _f1_statistic(_f1_vectors(plan, unassisted)), **options)
        t_a = np.array([r.seconds for r in assisted])
        t_u = np.array([r.seconds for r in unassisted])

        def relative(indices: np.ndarray) -> float:
            base = t_u[indices].mean()
            return float(t_a[indices].mean() / base - 1.0) if base > 0 else math.nan

        change = bootstrap(relative, len(pairs), **options)
        comparisons.append({
            "reader": reader or "all", "pairs": len(pairs),
            "diagnostic_f1_difference": {"estimate": f1.difference, "low": f1.low, "high": f1.high, "p_value": f1.p_value},
            "time_relative_change": _interval(change),
            "seconds_assisted": float(t_a.mean()), "seconds_unassisted": float(t_u.mean()),
        })
    result = {
        "study": plan.name, "template": plan.template, "readers": plan.readers, "signed_reads": len(reads),
        "unsigned_reads": unsigned, "bootstrap": {**options, "alpha": 0.05, "method": "percentile"},
        "f1_protocol": "diagnostic-f1@radscribe-template (pooled abnormal findings vs the reference)",
        "time": "seconds from the server first sending the reader an image of the case to their signature, server clock",
        "groups": groups, "comparisons": comparisons,
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "analysis.json") as handle:
        json.dump(result, handle, indent=1)
    with atomic_write(out / "analysis.md") as handle:
        handle.write(analysis_markdown(result))
    _plots(result, out)
    return result


def _ci(interval: dict[str, float], digits: int = 3, scale: float = 1.0) -> str:
    return f"{interval['estimate'] * scale:.{digits}f} [{interval['low'] * scale:.{digits}f}, {interval['high'] * scale:.{digits}f}]"


def analysis_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Reader study: {result['study']}",
        "",
        f"Template `{result['template']}`; {result['signed_reads']} signed reads ({result['unsigned_reads']} not signed, left out). "
        f"95% percentile bootstrap CIs ({result['bootstrap']['n_resamples']} resamples, seed {result['bootstrap']['seed']}).",
        "",
        "| Reader | Arm | Reads | Diagnostic F1 [95% CI] | Time per case, s [95% CI] |",
        "|---|---|---:|---|---|",
    ]
    for group in result["groups"]:
        lines.append(f"| {group['reader']} | {group['arm']} | {group['reads']} | {_ci(group['diagnostic_f1'])} | {_ci(group['seconds'], 1)} |")
    lines += [
        "",
        "Assisted vs unassisted, on (reader, case) pairs read in both arms:",
        "",
        "| Reader | Pairs | F1 difference [95% CI] | p | Time change [95% CI] |",
        "|---|---:|---|---:|---|",
    ]
    for c in result["comparisons"]:
        lines.append(
            f"| {c['reader']} | {c['pairs']} | {_ci(c['diagnostic_f1_difference'])} | {c['diagnostic_f1_difference']['p_value']:.3f} "
            f"| {_ci(c['time_relative_change'], 1, 100.0)} % |"
        )
    return "\n".join(lines) + "\n"


def _plots(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for key, filename, label in (("seconds", "reading_time.png", "seconds per case (first view to sign)"),
                                 ("diagnostic_f1", "diagnostic_f1.png", "diagnostic F1 vs reference")):
        readers = list(dict.fromkeys(g["reader"] for g in result["groups"]))
        figure, axes = plt.subplots(figsize=(1.6 + 1.4 * len(readers), 3.6))
        for offset, arm, color in ((-0.18, "unassisted", "#8a8f98"), (0.18, "assisted", "#2f6fb2")):
            for position, reader in enumerate(readers):
                group = next((g for g in result["groups"] if g["reader"] == reader and g["arm"] == arm), None)
                if group is None:
                    continue
                value = group[key]
                axes.bar(position + offset, value["estimate"], width=0.34, color=color, label=arm if position == 0 else None)
                axes.errorbar(position + offset, value["estimate"], yerr=[[value["estimate"] - value["low"]], [value["high"] - value["estimate"]]],
                              color="black", capsize=3, linewidth=1)
        axes.set_xticks(range(len(readers)), readers)
        axes.set_ylabel(label)
        axes.set_title(f"{result['study']}: {label} (95% CI)", fontsize=9)
        axes.legend(fontsize=8)
        figure.tight_layout()
        with atomic_write(out / filename, "wb") as handle:
            figure.savefig(handle, format="png", dpi=110)
        plt.close(figure)
