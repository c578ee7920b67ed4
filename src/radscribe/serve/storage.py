"""Durable storage for the workstation: SQLite (WAL) for studies and reports, images on disk by hash.

Tables: ``studies``, ``study_images``, ``images`` (metadata; the bytes live in ``images/ab/<sha256>``),
``drafts`` (model output), ``edits`` (every saved report version, append-only: triggers refuse UPDATE
and DELETE), ``signatures`` and ``events`` (server-side timestamps of opening and signing, for reader
studies). ``synchronous=FULL`` in WAL mode makes a commit durable before the API acknowledges it, so a
server killed at any moment keeps every acknowledged save and never a half-written one.

Ids are generated here (``secrets.token_urlsafe``), and image paths come from hashes only: nothing a
client sends is ever used as a path.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radscribe.data.manifest import atomic_write

DB_FILE = "radscribe.db"
IMAGES_FOLDER = "images"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    sha256 TEXT PRIMARY KEY, format TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    bytes INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    id TEXT PRIMARY KEY, created_at REAL NOT NULL, template TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'new',
    reader TEXT, case_id TEXT, arm TEXT, session INTEGER, position INTEGER);
CREATE TABLE IF NOT EXISTS study_images (
    study_id TEXT NOT NULL REFERENCES studies(id), idx INTEGER NOT NULL, sha256 TEXT NOT NULL REFERENCES images(sha256),
    PRIMARY KEY (study_id, idx));
CREATE TABLE IF NOT EXISTS drafts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, study_id TEXT NOT NULL REFERENCES studies(id), created_at REAL NOT NULL,
    model TEXT NOT NULL, markdown TEXT NOT NULL, document TEXT NOT NULL, result TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS edits (
    id INTEGER PRIMARY KEY AUTOINCREMENT, study_id TEXT NOT NULL REFERENCES studies(id), created_at REAL NOT NULL,
    author TEXT NOT NULL, document TEXT NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signatures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, study_id TEXT NOT NULL UNIQUE REFERENCES studies(id),
    edit_id INTEGER NOT NULL REFERENCES edits(id), signed_at REAL NOT NULL, signer TEXT NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, study_id TEXT NOT NULL REFERENCES studies(id), at REAL NOT NULL,
    kind TEXT NOT NULL, actor TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS edits_by_study ON edits(study_id, id);
CREATE INDEX IF NOT EXISTS drafts_by_study ON drafts(study_id, id);
CREATE INDEX IF NOT EXISTS studies_by_reader ON studies(reader, session, position);
CREATE TRIGGER IF NOT EXISTS edits_append_only_update BEFORE UPDATE ON edits
    BEGIN SELECT RAISE(ABORT, 'the edit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS edits_append_only_delete BEFORE DELETE ON edits
    BEGIN SELECT RAISE(ABORT, 'the edit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS signatures_final_update BEFORE UPDATE ON signatures
    BEGIN SELECT RAISE(ABORT, 'a signature is final'); END;
CREATE TRIGGER IF NOT EXISTS signatures_final_delete BEFORE DELETE ON signatures
    BEGIN SELECT RAISE(ABORT, 'a signature is final'); END;
"""


class NotFound(KeyError):
    """No such study (or not one the caller may see)."""


class Conflict(RuntimeError):
    """The request does not fit the study's state (e.g. saving after signing)."""


def new_id() -> str:
    return secrets.token_urlsafe(12)


def document_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    format: str
    width: int
    height: int
    bytes: int


class ImageStore:
    """Image bytes by sha256 under ``root/ab/<hash>``; written atomically, never overwritten."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256[:80]!r}")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if not target.exists():
            with atomic_write(target, "wb") as handle:
                handle.write(data)
            _fsync_dir(target.parent)
        return sha256

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()


def _fsync_dir(folder: Path) -> None:
    # The rename is only durable once the folder entry is on disk.
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class Storage:
    """All persistent state of one data folder; safe to share between threads (one lock, short writes)."""

    def __init__(self, data_dir: Path | str, clock: Callable[[], float] = time.time):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.images = ImageStore(self.data_dir / IMAGES_FOLDER)
        self.clock = clock
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.data_dir / DB_FILE, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def integrity_check(self) -> str:
        return str(self._query("PRAGMA integrity_check")[0][0])

    # ----- images and studies -------------------------------------------------------------------
    def add_image(self, data: bytes, format: str, width: int, height: int) -> StoredImage:
        sha256 = self.images.put(data)
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO images VALUES (?, ?, ?, ?, ?, ?)", (sha256, format, width, height, len(data), self.clock())
            )
        return StoredImage(sha256, format, width, height, len(data))

    def image(self, sha256: str) -> StoredImage:
        rows = self._query("SELECT sha256, format, width, height, bytes FROM images WHERE sha256 = ?", (sha256,))
        if not rows:
            raise NotFound(sha256)
        return StoredImage(*rows[0])

    def create_study(self, template: str, image_hashes: list[str], **assignment: Any) -> str:
        """A new study; ``assignment`` (reader, case_id, arm, session, position) for reader-study cases."""
        study_id = new_id()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO studies (id, created_at, template, reader, case_id, arm, session, position)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (study_id, self.clock(), template, assignment.get("reader"), assignment.get("case_id"),
                 assignment.get("arm"), assignment.get("session"), assignment.get("position")),
            )
            for index, sha256 in enumerate(image_hashes):
                db.execute("INSERT INTO study_images VALUES (?, ?, ?)", (study_id, index, sha256))
        return study_id

    def study(self, study_id: str) -> dict[str, Any]:
        rows = self._query("SELECT * FROM studies WHERE id = ?", (study_id,))
        if not rows:
            raise NotFound(study_id)
        study = dict(rows[0])
        study["images"] = [
            {"sha256": r["sha256"], "format": r["format"], "width": r["width"], "height": r["height"]}
            for r in self._query(
                "SELECT i.* FROM study_images s JOIN images i ON i.sha256 = s.sha256 WHERE s.study_id = ? ORDER BY s.idx",
                (study_id,),
            )
        ]
        return study

    def studies(self, reader: str | None = None) -> list[dict[str, Any]]:
        if reader is None:
            rows = self._query("SELECT * FROM studies ORDER BY created_at")
        else:
            rows = self._query("SELECT * FROM studies WHERE reader = ? ORDER BY session, position", (reader,))
        return [dict(row) for row in rows]

    def _set_status(self, db: sqlite3.Connection, study_id: str, status: str) -> None:
        db.execute("UPDATE studies SET status = ? WHERE id = ?", (status, study_id))

    # ----- drafts, edits, signatures ------------------------------------------------------------
    def add_draft(self, study_id: str, model: str, markdown: str, document: dict, result: dict) -> int:
        with self.transaction() as db:
            status = db.execute("SELECT status FROM studies WHERE id = ?", (study_id,)).fetchone()
            if status is None:
                raise NotFound(study_id)
            cursor = db.execute(
                "INSERT INTO drafts (study_id, created_at, model, markdown, document, result) VALUES (?, ?, ?, ?, ?, ?)",
                (study_id, self.clock(), model, markdown, json.dumps(document), json.dumps(result)),
            )
            if status[0] == "new":
                self._set_status(db, study_id, "drafted")
            return int(cursor.lastrowid)

    def latest_draft(self, study_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM drafts WHERE study_id = ? ORDER BY id DESC LIMIT 1", (study_id,))
        if not rows:
            return None
        row = dict(rows[0])
        row["document"] = json.loads(row["document"])
        row["result"] = json.loads(row["result"])
        return row

    def save_edit(self, study_id: str, author: str, document: dict[str, Any]) -> dict[str, Any]:
        """Append a report version; returns ``{"version", "edit_id", "saved_at", "sha256"}`` once committed."""
        digest = document_hash(document)
        with self.transaction() as db:
            row = db.execute("SELECT status FROM studies WHERE id = ?", (study_id,)).fetchone()
            if row is None:
                raise NotFound(study_id)
            if row[0] == "signed":
                raise Conflict("the report is signed; a signed report cannot be changed")
            now = self.clock()
            cursor = db.execute(
                "INSERT INTO edits (study_id, created_at, author, document, sha256) VALUES (?, ?, ?, ?, ?)",
                (study_id, now, author, json.dumps(document, sort_keys=True), digest),
            )
            version = db.execute("SELECT COUNT(*) FROM edits WHERE study_id = ?", (study_id,)).fetchone()[0]
            self._set_status(db, study_id, "saved")
        return {"version": int(version), "edit_id": int(cursor.lastrowid), "saved_at": now, "sha256": digest}

    def edits(self, study_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM edits WHERE study_id = ? ORDER BY id", (study_id,))
        out = []
        for row in rows:
            item = dict(row)
            item["document"] = json.loads(item["document"])
            out.append(item)
        return out

    def latest_edit(self, study_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM edits WHERE study_id = ? ORDER BY id DESC LIMIT 1", (study_id,))
        if not rows:
            return None
        item = dict(rows[0])
        item["document"] = json.loads(item["document"])
        return item

    def sign(self, study_id: str, signer: str, edit_id: int, sha256: str) -> dict[str, Any]:
        with self.transaction() as db:
            row = db.execute("SELECT status FROM studies WHERE id = ?", (study_id,)).fetchone()
            if row is None:
                raise NotFound(study_id)
            if row[0] == "signed":
                raise Conflict("the report is already signed")
            latest = db.execute("SELECT MAX(id) FROM edits WHERE study_id = ?", (study_id,)).fetchone()[0]
            if latest != edit_id:
                raise Conflict("the report changed since it was checked; save and sign again")
            now = self.clock()
            db.execute(
                "INSERT INTO signatures (study_id, edit_id, signed_at, signer, sha256) VALUES (?, ?, ?, ?, ?)",
                (study_id, edit_id, now, signer, sha256),
            )
            db.execute("INSERT INTO events (study_id, at, kind, actor) VALUES (?, ?, 'sign', ?)", (study_id, now, signer))
            self._set_status(db, study_id, "signed")
        return {"signed_at": now, "signer": signer, "edit_id": edit_id, "sha256": sha256}

    def signature(self, study_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT signed_at, signer, edit_id, sha256 FROM signatures WHERE study_id = ?", (study_id,))
        return dict(rows[0]) if rows else None

    # ----- events (reader-study timing) ---------------------------------------------------------
    def record_open(self, study_id: str, actor: str) -> float:
        """The first time ``actor`` opened the study (recorded now if never before)."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT at FROM events WHERE study_id = ? AND kind = 'open' ORDER BY id LIMIT 1", (study_id,)
            ).fetchone()
            if row is not None:
                return float(row[0])
            now = self.clock()
            db.execute("INSERT INTO events (study_id, at, kind, actor) VALUES (?, ?, 'open', ?)", (study_id, now, actor))
            return now

    def events(self, study_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query("SELECT at, kind, actor FROM events WHERE study_id = ? ORDER BY id", (study_id,))]

    # ----- key/value (reader-study plan) --------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None
