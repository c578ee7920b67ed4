"""Durable storage for the workstation: SQLite (WAL) for studies, reports and accounts; images on disk by hash.

Tables: ``studies``, ``study_images``, ``images`` (metadata; the bytes live in ``images/ab/<sha256>``),
``drafts`` (model output), ``edits`` (every saved report version), ``signatures`` (a hash chain over
the signed content), ``audit`` (who read, exported, saved, signed, logged in; the reader-study clock),
``users`` and ``credentials`` (see :mod:`radscribe.serve.accounts`), ``imports`` (studies created from a
manifest, keyed by the manifest's study id and the image hashes, see :mod:`radscribe.serve.manifests`). ``edits``, ``signatures`` and
``audit`` are append-only (triggers refuse UPDATE and DELETE), and a study with a signature refuses
new edits and drafts in the database itself, not only through its ``status`` column.

``synchronous=FULL`` in WAL mode makes a commit durable before the API acknowledges it, so a server
killed at any moment keeps every acknowledged save and never a half-written one. The data folder is
readable by its owner only (0700, database 0600).

Lost updates are refused by version: every saved version has an entity tag (:func:`entity_tag`), a
save or a signature names the tag it was based on, and a stale tag raises :class:`StaleVersion`.

Signature chain: each signature stores ``previous`` (the chain value of the signature before it, or
64 zeros) and ``chain = sha256(previous | study | edit | signer | signed_at | content sha256)``.
:meth:`Storage.verify_signature` recomputes the chain up to a signature and the hash of the signed
edit's content, so an edited document, signer or time is reported instead of exported as final.

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
SCHEMA_VERSION = 2
GENESIS = "0" * 64
NO_VERSION_TAG = '"0"'

_TABLES = """
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
    edit_id INTEGER NOT NULL REFERENCES edits(id), signed_at REAL NOT NULL, signer TEXT NOT NULL, sha256 TEXT NOT NULL,
    previous TEXT NOT NULL DEFAULT '', chain TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    study_id TEXT, detail TEXT);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT, disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS credentials (
    token_hash TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name), kind TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS imports (
    source_id TEXT NOT NULL, images TEXT NOT NULL, study_id TEXT NOT NULL UNIQUE REFERENCES studies(id),
    imported_at REAL NOT NULL, origin TEXT NOT NULL, PRIMARY KEY (source_id, images));
CREATE INDEX IF NOT EXISTS edits_by_study ON edits(study_id, id);
CREATE INDEX IF NOT EXISTS drafts_by_study ON drafts(study_id, id);
CREATE INDEX IF NOT EXISTS studies_by_reader ON studies(reader, session, position);
CREATE INDEX IF NOT EXISTS audit_by_study ON audit(study_id, action, actor);
"""

_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS edits_append_only_update BEFORE UPDATE ON edits
    BEGIN SELECT RAISE(ABORT, 'the edit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS edits_append_only_delete BEFORE DELETE ON edits
    BEGIN SELECT RAISE(ABORT, 'the edit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS edits_not_after_signature BEFORE INSERT ON edits
    WHEN EXISTS (SELECT 1 FROM signatures WHERE study_id = NEW.study_id)
    BEGIN SELECT RAISE(ABORT, 'the report is signed; a signed report cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS drafts_not_after_signature BEFORE INSERT ON drafts
    WHEN EXISTS (SELECT 1 FROM signatures WHERE study_id = NEW.study_id)
    BEGIN SELECT RAISE(ABORT, 'the report is signed'); END;
CREATE TRIGGER IF NOT EXISTS signatures_final_update BEFORE UPDATE ON signatures
    BEGIN SELECT RAISE(ABORT, 'a signature is final'); END;
CREATE TRIGGER IF NOT EXISTS signatures_final_delete BEFORE DELETE ON signatures
    BEGIN SELECT RAISE(ABORT, 'a signature is final'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class NotFound(KeyError):
    """No such study (or not one the caller may see)."""


class Conflict(RuntimeError):
    """The request does not fit the study's state (e.g. saving after signing)."""


class StaleVersion(RuntimeError):
    """A save or signature based on a version that is no longer the latest; ``current`` is the latest edit."""

    def __init__(self, expected: str | None, current: dict[str, Any] | None):
        self.expected = expected
        self.current = current
        found = entity_tag(current)
        super().__init__(f"the report changed: you had version {expected or 'none'}, the latest is {found}")


class TamperedSignature(RuntimeError):
    """The stored signature does not match the signed content or the chain: the database was changed."""


def new_id() -> str:
    return secrets.token_urlsafe(12)


def canonical_json(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def document_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


def entity_tag(edit: dict[str, Any] | None) -> str:
    """The HTTP ``ETag`` of a saved version (``"0"`` while nothing is saved): version number and content hash."""
    if edit is None:
        return NO_VERSION_TAG
    return f'"{edit["version"]}-{edit["sha256"][:20]}"'


def chain_value(previous: str, study_id: str, edit_id: int, signer: str, signed_at: float, sha256: str) -> str:
    return hashlib.sha256(f"{previous}|{study_id}|{edit_id}|{signer}|{signed_at!r}|{sha256}".encode()).hexdigest()


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    format: str
    width: int
    height: int
    bytes: int


class ImageStore:
    """Image bytes by sha256 under ``root/ab/<hash>``; written atomically (owner-only), never overwritten."""

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
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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


def _owner_only(data_dir: Path) -> Path:
    """Create the folder and database file readable by the owner only, and tighten them if they exist."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    database = data_dir / DB_FILE
    os.close(os.open(database, os.O_CREAT | os.O_RDWR, 0o600))
    for path in (database, data_dir / f"{DB_FILE}-wal", data_dir / f"{DB_FILE}-shm"):
        if path.exists():
            os.chmod(path, 0o600)  # SQLite creates -wal and -shm with the database file's mode
    return database


class Storage:
    """All persistent state of one data folder; safe to share between threads (one lock, short writes)."""

    def __init__(self, data_dir: Path | str, clock: Callable[[], float] = time.time):
        self.data_dir = Path(data_dir)
        database = _owner_only(self.data_dir)
        self.images = ImageStore(self.data_dir / IMAGES_FOLDER)
        self.images.root.mkdir(mode=0o700, exist_ok=True)
        self.clock = clock
        self._lock = threading.RLock()
        self._db = sqlite3.connect(database, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_TABLES)
        self._migrate()
        self._db.executescript(_TRIGGERS)

    def _migrate(self) -> None:
        """Bring a version-1 folder up to date: chain its signatures, move its events into the audit log."""
        found = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if found is not None and int(found[0]) < 2:
            with self.transaction() as db:
                columns = {row[1] for row in db.execute("PRAGMA table_info(signatures)")}
                if "chain" not in columns:
                    db.execute("ALTER TABLE signatures ADD COLUMN previous TEXT NOT NULL DEFAULT ''")
                    db.execute("ALTER TABLE signatures ADD COLUMN chain TEXT NOT NULL DEFAULT ''")
                db.execute("DROP TRIGGER IF EXISTS signatures_final_update")
                previous = GENESIS
                for row in db.execute("SELECT * FROM signatures ORDER BY id").fetchall():
                    chain = chain_value(previous, row["study_id"], row["edit_id"], row["signer"], row["signed_at"], row["sha256"])
                    db.execute("UPDATE signatures SET previous = ?, chain = ? WHERE id = ?", (previous, chain, row["id"]))
                    previous = chain
                if db.execute("SELECT name FROM sqlite_master WHERE name = 'events'").fetchone():
                    db.execute("INSERT INTO audit (at, actor, action, study_id) SELECT at, actor, kind, study_id FROM events ORDER BY id")
                    db.execute("DROP TABLE events")
                db.execute("INSERT INTO audit (at, actor, action, detail) VALUES (?, 'radscribe', 'migrate', 'schema 1 -> 2')", (self.clock(),))
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

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

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def integrity_check(self) -> str:
        return str(self.query("PRAGMA integrity_check")[0][0])

    # ----- images and studies -------------------------------------------------------------------
    def add_image(self, data: bytes, format: str, width: int, height: int) -> StoredImage:
        sha256 = self.images.put(data)
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO images VALUES (?, ?, ?, ?, ?, ?)", (sha256, format, width, height, len(data), self.clock())
            )
        return StoredImage(sha256, format, width, height, len(data))

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

    def import_study(
        self, source_id: str, image_hashes: list[str], template: str, draft: dict[str, Any], origin: dict[str, Any], actor: str
    ) -> tuple[str, bool]:
        """A study with its images and a draft (``model``, ``markdown``, ``document``, ``result``), made once per
        (``source_id``, images): returns ``(study id, created)``, the existing study when it was imported before.

        Study, draft, import record and audit entry are one transaction, so an import killed at any
        moment leaves each study either fully imported or not at all.
        """
        images = ",".join(image_hashes)
        with self.transaction() as db:
            found = db.execute("SELECT study_id FROM imports WHERE source_id = ? AND images = ?", (source_id, images)).fetchone()
            if found is not None:
                return str(found[0]), False
            study_id, now = new_id(), self.clock()
            db.execute("INSERT INTO studies (id, created_at, template, status) VALUES (?, ?, ?, 'drafted')", (study_id, now, template))
            for index, sha256 in enumerate(image_hashes):
                db.execute("INSERT INTO study_images VALUES (?, ?, ?)", (study_id, index, sha256))
            db.execute(
                "INSERT INTO drafts (study_id, created_at, model, markdown, document, result) VALUES (?, ?, ?, ?, ?, ?)",
                (study_id, now, draft["model"], draft["markdown"], json.dumps(draft["document"]), json.dumps(draft["result"])),
            )
            db.execute("INSERT INTO imports VALUES (?, ?, ?, ?, ?)", (source_id, images, study_id, now, json.dumps(origin)))
            db.execute("INSERT INTO audit (at, actor, action, study_id, detail) VALUES (?, ?, 'import', ?, ?)",
                       (now, actor, study_id, f"{origin.get('manifest')}:{origin.get('line')} study {source_id} ({draft['model']})"[:500]))
        return study_id, True

    def imported_study(self, source_id: str, image_hashes: list[str]) -> str | None:
        """The study imported before from manifest study ``source_id`` with these images, if any."""
        rows = self.query("SELECT study_id FROM imports WHERE source_id = ? AND images = ?", (source_id, ",".join(image_hashes)))
        return str(rows[0][0]) if rows else None

    def import_origin(self, study_id: str) -> dict[str, Any] | None:
        """Where an imported study came from (``source_id`` and the ``origin`` recorded at import); ``None`` if uploaded."""
        rows = self.query("SELECT source_id, origin FROM imports WHERE study_id = ?", (study_id,))
        return {"source_id": rows[0]["source_id"], **json.loads(rows[0]["origin"])} if rows else None

    def _with_images(self, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
        studies = [dict(row) for row in rows]
        if not studies:
            return studies
        marks = ",".join("?" * len(studies))
        images: dict[str, list[dict[str, Any]]] = {}
        for r in self.query(
            f"SELECT s.study_id, i.sha256, i.format, i.width, i.height FROM study_images s JOIN images i ON i.sha256 = s.sha256"
            f" WHERE s.study_id IN ({marks}) ORDER BY s.study_id, s.idx", tuple(s["id"] for s in studies)
        ):
            images.setdefault(r["study_id"], []).append({"sha256": r["sha256"], "format": r["format"], "width": r["width"], "height": r["height"]})
        for study in studies:
            study["images"] = images.get(study["id"], [])
        return studies

    def study(self, study_id: str) -> dict[str, Any]:
        rows = self.query("SELECT * FROM studies WHERE id = ?", (study_id,))
        if not rows:
            raise NotFound(study_id)
        return self._with_images(rows)[0]

    def studies(self, reader: str | None = None, offset: int = 0, limit: int = -1) -> list[dict[str, Any]]:
        """Studies with their images, oldest first (a reader's in worklist order); ``limit=-1`` for all."""
        if reader is None:
            rows = self.query("SELECT * FROM studies ORDER BY created_at, id LIMIT ? OFFSET ?", (limit, offset))
        else:
            rows = self.query("SELECT * FROM studies WHERE reader = ? ORDER BY session, position LIMIT ? OFFSET ?", (reader, limit, offset))
        return self._with_images(rows)

    def count_studies(self, reader: str | None = None) -> int:
        if reader is None:
            return int(self.query("SELECT COUNT(*) FROM studies")[0][0])
        return int(self.query("SELECT COUNT(*) FROM studies WHERE reader = ?", (reader,))[0][0])

    def _set_status(self, db: sqlite3.Connection, study_id: str, status: str) -> None:
        db.execute("UPDATE studies SET status = ? WHERE id = ?", (status, study_id))

    def _status(self, db: sqlite3.Connection, study_id: str) -> str:
        row = db.execute("SELECT status FROM studies WHERE id = ?", (study_id,)).fetchone()
        if row is None:
            raise NotFound(study_id)
        return str(row[0])

    # ----- drafts, edits, signatures ------------------------------------------------------------
    def add_draft(self, study_id: str, model: str, markdown: str, document: dict, result: dict) -> int:
        with self.transaction() as db:
            status = self._status(db, study_id)
            try:
                cursor = db.execute(
                    "INSERT INTO drafts (study_id, created_at, model, markdown, document, result) VALUES (?, ?, ?, ?, ?, ?)",
                    (study_id, self.clock(), model, markdown, json.dumps(document), json.dumps(result)),
                )
            except sqlite3.IntegrityError as error:
                raise Conflict(str(error)) from None
            if status == "new":
                self._set_status(db, study_id, "drafted")
            return int(cursor.lastrowid)

    def latest_draft(self, study_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM drafts WHERE study_id = ? ORDER BY id DESC LIMIT 1", (study_id,))
        if not rows:
            return None
        row = dict(rows[0])
        row["document"] = json.loads(row["document"])
        row["result"] = json.loads(row["result"])
        return row

    def _latest_edit(self, db: sqlite3.Connection, study_id: str) -> dict[str, Any] | None:
        row = db.execute("SELECT * FROM edits WHERE study_id = ? ORDER BY id DESC LIMIT 1", (study_id,)).fetchone()
        if row is None:
            return None
        item = dict(row)
        item["document"] = json.loads(item["document"])
        item["version"] = int(db.execute("SELECT COUNT(*) FROM edits WHERE study_id = ?", (study_id,)).fetchone()[0])
        item["etag"] = entity_tag(item)
        return item

    def save_edit(self, study_id: str, author: str, document: dict[str, Any], if_match: str | None) -> dict[str, Any]:
        """Append a report version based on the version tagged ``if_match``; returns the new version once committed.

        Raises :class:`StaleVersion` when ``if_match`` is not the latest version's tag (nobody's save
        is silently overwritten) and :class:`Conflict` when the report is signed.
        """
        digest = document_hash(document)
        with self.transaction() as db:
            self._status(db, study_id)
            if db.execute("SELECT 1 FROM signatures WHERE study_id = ?", (study_id,)).fetchone():
                raise Conflict("the report is signed; a signed report cannot be changed")
            latest = self._latest_edit(db, study_id)
            if if_match != entity_tag(latest):
                raise StaleVersion(if_match, latest)
            now = self.clock()
            cursor = db.execute(
                "INSERT INTO edits (study_id, created_at, author, document, sha256) VALUES (?, ?, ?, ?, ?)",
                (study_id, now, author, json.dumps(document, sort_keys=True), digest),
            )
            version = (latest["version"] if latest else 0) + 1
            self._set_status(db, study_id, "saved")
        saved = {"version": version, "edit_id": int(cursor.lastrowid), "saved_at": now, "sha256": digest, "author": author}
        return {**saved, "etag": entity_tag(saved)}

    def edits(self, study_id: str, offset: int = 0, limit: int = -1) -> list[dict[str, Any]]:
        """Saved versions oldest first, each with its ``version`` number (1-based)."""
        rows = self.query("SELECT * FROM edits WHERE study_id = ? ORDER BY id LIMIT ? OFFSET ?", (study_id, limit, offset))
        out = []
        for number, row in enumerate(rows, start=offset + 1):
            item = dict(row)
            item["document"] = json.loads(item["document"])
            item["version"] = number
            out.append(item)
        return out

    def count_edits(self, study_id: str) -> int:
        return int(self.query("SELECT COUNT(*) FROM edits WHERE study_id = ?", (study_id,))[0][0])

    def latest_edit(self, study_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._latest_edit(self._db, study_id)

    def edit(self, study_id: str, edit_id: int) -> dict[str, Any]:
        rows = self.query("SELECT * FROM edits WHERE study_id = ? AND id = ?", (study_id, edit_id))
        if not rows:
            raise NotFound(f"{study_id} edit {edit_id}")
        item = dict(rows[0])
        item["document"] = json.loads(item["document"])
        return item

    def sign(self, study_id: str, signer: str, if_match: str | None) -> dict[str, Any]:
        """Sign the version tagged ``if_match`` (the one the signer reviewed); it must still be the latest."""
        with self.transaction() as db:
            self._status(db, study_id)
            if db.execute("SELECT 1 FROM signatures WHERE study_id = ?", (study_id,)).fetchone():
                raise Conflict("the report is already signed")
            latest = self._latest_edit(db, study_id)
            if latest is None:
                raise Conflict("nothing saved to sign: save the report first")
            if if_match != latest["etag"]:
                raise StaleVersion(if_match, latest)
            previous = db.execute("SELECT chain FROM signatures ORDER BY id DESC LIMIT 1").fetchone()
            previous = previous[0] if previous else GENESIS
            now = self.clock()
            chain = chain_value(previous, study_id, latest["id"], signer, now, latest["sha256"])
            db.execute(
                "INSERT INTO signatures (study_id, edit_id, signed_at, signer, sha256, previous, chain) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (study_id, latest["id"], now, signer, latest["sha256"], previous, chain),
            )
            db.execute("INSERT INTO audit (at, actor, action, study_id, detail) VALUES (?, ?, 'sign', ?, ?)",
                       (now, signer, study_id, latest["etag"]))
            self._set_status(db, study_id, "signed")
        return {"signed_at": now, "signer": signer, "edit_id": latest["id"], "version": latest["version"],
                "sha256": latest["sha256"], "etag": latest["etag"], "chain": chain}

    def signature(self, study_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT signed_at, signer, edit_id, sha256, chain FROM signatures WHERE study_id = ?", (study_id,))
        return dict(rows[0]) if rows else None

    def verify_signature(self, study_id: str) -> dict[str, Any] | None:
        """The study's signature after checking it (``None`` when unsigned); :class:`TamperedSignature` if it does not hold."""
        rows = self.query("SELECT * FROM signatures WHERE id <= (SELECT id FROM signatures WHERE study_id = ?) ORDER BY id", (study_id,))
        if not rows:
            return None
        self._verify_chain(rows)
        mine = dict(rows[-1])
        self._verify_content(mine)
        return {key: mine[key] for key in ("signed_at", "signer", "edit_id", "sha256", "chain")}

    def verify_all_signatures(self) -> dict[str, str]:
        """Every signature checked once (chain and content): study id -> problem, for the ones that do not hold."""
        problems: dict[str, str] = {}
        previous = GENESIS
        for row in self.query("SELECT * FROM signatures ORDER BY id"):
            try:
                if row["previous"] != previous or row["chain"] != chain_value(
                        row["previous"], row["study_id"], row["edit_id"], row["signer"], row["signed_at"], row["sha256"]):
                    raise TamperedSignature(f"study {row['study_id']}: the signature chain is broken at signature {row['id']}")
                self._verify_content(dict(row))
            except TamperedSignature as error:
                problems[row["study_id"]] = str(error)
            previous = row["chain"]
        return problems

    @staticmethod
    def _verify_chain(rows: list[sqlite3.Row]) -> None:
        previous = GENESIS
        for row in rows:
            expected = chain_value(row["previous"], row["study_id"], row["edit_id"], row["signer"], row["signed_at"], row["sha256"])
            if row["previous"] != previous or row["chain"] != expected:
                raise TamperedSignature(f"study {row['study_id']}: the signature chain is broken at signature {row['id']}")
            previous = row["chain"]

    def _verify_content(self, signature: dict[str, Any]) -> None:
        rows = self.query("SELECT document, sha256 FROM edits WHERE id = ? AND study_id = ?", (signature["edit_id"], signature["study_id"]))
        if not rows:
            raise TamperedSignature(f"study {signature['study_id']}: the signed version {signature['edit_id']} is missing")
        content = document_hash(json.loads(rows[0]["document"]))
        if content != signature["sha256"] or rows[0]["sha256"] != signature["sha256"]:
            raise TamperedSignature(f"study {signature['study_id']}: the signed content was changed after signing")

    # ----- audit log (and the reader-study clock) -----------------------------------------------
    def audit(self, actor: str, action: str, study_id: str | None = None, detail: str | None = None) -> float:
        now = self.clock()
        with self.transaction() as db:
            db.execute("INSERT INTO audit (at, actor, action, study_id, detail) VALUES (?, ?, ?, ?, ?)", (now, actor, action, study_id, detail))
        return now

    def first_view(self, study_id: str, actor: str) -> float:
        """When ``actor`` was first sent an image of the study (recorded now if never): the reader's clock start."""
        with self.transaction() as db:
            row = db.execute("SELECT at FROM audit WHERE study_id = ? AND action = 'view-image' AND actor = ? ORDER BY id LIMIT 1",
                             (study_id, actor)).fetchone()
            if row is not None:
                return float(row[0])
            now = self.clock()
            db.execute("INSERT INTO audit (at, actor, action, study_id) VALUES (?, ?, 'view-image', ?)", (now, actor, study_id))
            return now

    def audit_log(self, study_id: str | None = None, offset: int = 0, limit: int = -1) -> list[dict[str, Any]]:
        if study_id is None:
            rows = self.query("SELECT at, actor, action, study_id, detail FROM audit ORDER BY id LIMIT ? OFFSET ?", (limit, offset))
        else:
            rows = self.query("SELECT at, actor, action, study_id, detail FROM audit WHERE study_id = ? ORDER BY id LIMIT ? OFFSET ?",
                              (study_id, limit, offset))
        return [dict(row) for row in rows]

    # ----- key/value (reader-study plan) --------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None
