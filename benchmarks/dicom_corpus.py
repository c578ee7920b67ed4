"""`radscribe report` and the workstation upload over a DICOM corpus nobody here wrote: pydicom's test files.

The corpus is every ``pydicom/data/test_files/*.dcm`` on disk (pydicom indexes more that its data
manager would download; those are absent here and not used): CT, MR, NM, ultrasound, secondary
captures, RT objects, SR, waveforms, in every common transfer syntax, some deliberately damaged.

Per file: transfer syntax, modality, SOP class, frames, the outcome of one ``radscribe report`` run
over all of them (reported, or refused with its code and reason; ``crashed`` = neither, or an
unexpected exception), and the outcome of the server's upload check
(:func:`radscribe.serve.uploads.check_upload`) on the same bytes, with whether it agrees with the CLI.
Two times, medians of --repeats: ``decode_ms``, pydicom with the ``[dicom]`` decoders decoding the
first frame (file parse included) of every object with pixel data, whatever its SOP class (RT Dose
and colour pixel data count: this is the decoders' speed), summarised per transfer syntax; and
``read_ms``, the whole reading contract (header checks, decode, display transform) on the files that
pass it. Both are process CPU time (``time.process_time``): on the shared 2-core machine wall time
follows other people's load (it is recorded too, with the load average). Also: whether every
compressed grayscale object decodes.

    python benchmarks/dicom_corpus.py                 # the embedded default model
    python benchmarks/dicom_corpus.py --model PATH

Writes benchmarks/results/dicom_corpus.json. The report run uses one torch thread (OMP_NUM_THREADS=1):
on this busy 2-core machine two threads make generation far slower.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from provenance import write_result

NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"}


def corpus() -> tuple[Path, list[Path], int]:
    import pydicom

    data = Path(pydicom.__file__).parent / "data"
    files = sorted((data / "test_files").glob("*.dcm"))
    indexed = json.loads((data / "urls.json").read_text())
    absent = sum(1 for name in indexed if name.endswith(".dcm") and not (data / "test_files" / name).exists())
    return data / "test_files", files, absent


def header_facts(path: Path) -> dict[str, object]:
    """What the file says about itself, read by pydicom directly (force=True for files without a meta header)."""
    import pydicom
    from pydicom.uid import UID

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as error:  # reported as a fact about the file, not a failure of the benchmark
        return {"transfer_syntax": "-", "header_error": f"{type(error).__name__}: {error}"}
    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    sop = dataset.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    return {
        "transfer_syntax": UID(syntax).name if syntax else "(none: no meta header)",
        "transfer_syntax_uid": str(syntax) if syntax else None,
        "modality": str(dataset.get("Modality", "") or "-"),
        "sop_class": UID(str(sop)).name if sop else "-",
        "photometric": str(dataset.get("PhotometricInterpretation", "") or "-"),
        "samples": int(dataset.get("SamplesPerPixel") or 1) if "SamplesPerPixel" in dataset else None,
        "frames": str(dataset.get("NumberOfFrames", 1) or 1),
    }


def median_ms(function, repeats: int) -> tuple[dict[str, float] | None, BaseException | None]:
    """Median CPU and wall milliseconds of ``function()`` over ``repeats`` calls, or the exception it raised."""
    cpu, wall = [], []
    for _ in range(repeats):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        try:
            function()
        except Exception as error:  # a refusal or a decoder failure is a result here
            return None, error
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return {"cpu_ms": round(statistics.median(cpu) * 1000, 2), "wall_ms": round(statistics.median(wall) * 1000, 2)}, None


def run_cli(files: list[Path], model: str | None, batch_size: int) -> dict[str, object]:
    out = Path(tempfile.mkdtemp(prefix="dicom-corpus-"))
    command = [sys.executable, "-c", "from radscribe.cli.main import main; main()", "report", *map(str, files), "--out", str(out), "--batch-size", str(batch_size)]
    if model:
        command += ["--model", model]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    start, children = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    finished = subprocess.run(command, capture_output=True, text=True, env=environment)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    log = finished.stdout + finished.stderr
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else None
    reported = {}
    for report_file in out.glob("*/report.json"):
        record = json.loads(report_file.read_text())
        reported[record["image"]] = {"valid": record["valid"], "issues": len(record["issues"])}
    return {"out": out, "exit_status": finished.returncode, "wall_s": wall, "cpu_s": cpu, "log": log, "summary": summary, "reported": reported}


def upload_outcome(path: Path) -> dict[str, object]:
    from radscribe.serve.uploads import UploadRejected, check_upload

    try:
        checked = check_upload(path.read_bytes(), path.name)
        return {"accepted": True, "size": [checked.width, checked.height]}
    except UploadRejected as rejected:
        return {"accepted": False, "status": rejected.status, "reason": rejected.reason}
    except Exception as error:  # the server would answer 500 here: counted as a crash
        return {"accepted": False, "status": 500, "reason": f"crash: {type(error).__name__}: {error}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="saved model folder or registered name (default: the embedded model)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5, help="reads per file for the read time (median)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # pydicom warns about every odd value of this corpus; outcomes are what is measured

    import pydicom
    from pydicom.pixels import pixel_array

    from radscribe.data import check_radiograph, read_frames

    folder, files, absent = corpus()
    print(f"{len(files)} DICOM files in {folder} (pydicom {pydicom.__version__}; {absent} more indexed for download, absent)")
    cli = run_cli(files, args.model, args.batch_size)
    summary = cli["summary"] or {"failures": []}
    failures = {failure["image"]: failure for failure in summary["failures"]}

    rows = []
    for path in files:
        facts = header_facts(path)
        has_pixels = facts.get("samples") is not None
        # Decoded from the dataset, as the reader does (pydicom's path-based pixel_array mis-reads two of these files).
        decode, decode_error = median_ms(lambda: pixel_array(pydicom.dcmread(path, force=True), index=0), args.repeats) if has_pixels else (None, None)
        read, _ = median_ms(lambda: check_radiograph(read_frames(path, "first")[0]), args.repeats)
        failure = failures.get(str(path))
        if str(path) in cli["reported"]:
            outcome = {"outcome": "reported", **cli["reported"][str(path)]}
        elif failure is not None and failure["code"] != "unexpected":
            outcome = {"outcome": "refused", "stage": failure["stage"], "code": failure["code"], "reason": failure["reason"]}
        else:
            outcome = {"outcome": "crashed", "reason": failure["reason"] if failure else "no report and no failure recorded"}
        upload = upload_outcome(path)
        upload["same_as_cli"] = upload["accepted"] == (outcome["outcome"] == "reported")
        row = {
            "file": path.name, **facts, **outcome, "upload": upload,
            "decode_ms": decode, "read_ms": read,
        }
        if decode_error is not None:
            row["decode_error"] = " ".join(f"{type(decode_error).__name__}: {decode_error}".split())
        if facts.get("transfer_syntax_uid") not in NATIVE_SYNTAXES | {None} and facts.get("samples") == 1:
            row["compressed_grayscale"] = True
        rows.append(row)
        shown = outcome["outcome"] if outcome["outcome"] == "reported" else f"{outcome['outcome']} ({outcome.get('code', '-')}): {outcome['reason']}"
        timing = f"{decode['cpu_ms']:.1f} ms" if decode is not None else "-"
        upload_text = "accepted" if upload["accepted"] else f"rejected {upload['status']}"
        print(f"{path.name:42s} {facts['transfer_syntax'][:34]:34s} {facts.get('modality', '-'):7s} {timing:>9s}  upload {upload_text:13s} {shown}"[:400])

    refused_by_code: dict[str, int] = {}
    for row in rows:
        if row["outcome"] == "refused":
            refused_by_code[row["code"]] = refused_by_code.get(row["code"], 0) + 1
    by_syntax: dict[str, list[float]] = {}
    for row in rows:
        if row["decode_ms"] is not None:
            by_syntax.setdefault(row["transfer_syntax"], []).append(row["decode_ms"]["cpu_ms"])
    compressed = [row for row in rows if row.get("compressed_grayscale")]
    payload = {
        "corpus": {"folder": "pydicom/data/test_files/*.dcm", "pydicom": pydicom.__version__, "files_on_disk": len(files), "indexed_but_absent": absent},
        "cli": {
            "exit_status": cli["exit_status"],
            "wall_s": round(cli["wall_s"], 1),
            "cpu_s": round(cli["cpu_s"], 1),
            "traceback_in_output": "Traceback" in cli["log"],
            "summary_written": cli["summary"] is not None,
            "summary_complete": bool(cli["summary"] and cli["summary"]["complete"]),
            "model": args.model or "embedded default",
            "batch_size": args.batch_size,
            "load_average_at_end": [round(value, 2) for value in os.getloadavg()],  # times depend on it: 2 shared cores
        },
        "outcomes": {
            "reported": sum(row["outcome"] == "reported" for row in rows),
            "refused": sum(row["outcome"] == "refused" for row in rows),
            "crashed": sum(row["outcome"] == "crashed" for row in rows),
            "refused_by_code": dict(sorted(refused_by_code.items())),
        },
        "compressed_grayscale": {
            "files": len(compressed),
            "decoded": sum(row["decode_ms"] is not None for row in compressed),
            "not_decoded": [{"file": row["file"], "reason": row["decode_error"]} for row in compressed if row["decode_ms"] is None],
        },
        "decode_cpu_ms_by_transfer_syntax": {
            syntax: {"files": len(values), "median_ms": round(statistics.median(values), 2), "max_ms": round(max(values), 2)}
            for syntax, values in sorted(by_syntax.items())
        },
        "upload": {
            "same_as_cli": sum(row["upload"]["same_as_cli"] for row in rows),
            "of": len(rows),
            "different": [
                {"file": row["file"], "cli": row["outcome"], "upload": row["upload"].get("reason") or "accepted"}
                for row in rows if not row["upload"]["same_as_cli"]
            ],
            "crashed": sum(row["upload"].get("status") == 500 for row in rows),
        },
        "files": rows,
    }
    write_result("dicom_corpus", payload)


if __name__ == "__main__":
    main()
