"""Who may use the workstation: named accounts with roles, argon2 passwords, sessions and API tokens.

Roles and what they may do (``PERMISSIONS``):

- ``radiologist``: upload, draft, edit, sign and export any study outside a reader study;
- ``reader`` (a reader-study participant): only the cases assigned to them, blinded;
- ``organiser``: upload and read everything, export, read the audit log; never edits or signs;
- ``admin``: what an organiser may, plus the account list; accounts are managed with
  ``radscribe serve user add|list|disable|token``.

With no account in the data folder the server runs in single-user local mode (loopback only): every
request is the ``local`` user, a radiologist. As soon as one account exists, every request needs a
session cookie (``POST /api/session``) or a per-user API token (``Authorization: Bearer``).

Passwords are hashed with argon2id (``argon2-cffi``); session and API tokens are random and only
their SHA-256 is stored, so a copy of the database logs nobody in.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from radscribe.serve.storage import Storage

ROLES = ("radiologist", "reader", "organiser", "admin")
PERMISSIONS: dict[str, frozenset[str]] = {
    "radiologist": frozenset({"read", "upload", "draft", "edit", "sign", "export"}),
    "reader": frozenset({"read", "draft", "edit", "sign", "export"}),
    "organiser": frozenset({"read", "upload", "export", "audit"}),
    "admin": frozenset({"read", "upload", "export", "audit", "users"}),
}
LOCAL_USER = "local"
SESSION_SECONDS = 12 * 3600
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10


class AccountError(ValueError):
    """A refused account operation (unknown user, bad name or role, weak password)."""


@dataclass(frozen=True)
class Principal:
    """The authenticated user of a request; ``reader`` is set for reader-study participants."""

    name: str
    role: str

    @property
    def is_reader(self) -> bool:
        return self.role == "reader"

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]


LOCAL = Principal(LOCAL_USER, "radiologist")


def _hasher():
    try:
        from argon2 import PasswordHasher
    except ImportError:
        raise ImportError("user accounts need argon2-cffi: pip install 'radscribe[serve]'") from None
    return PasswordHasher()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """Accounts, sessions and API tokens of one data folder (tables ``users`` and ``credentials``)."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self._hasher = None
        self._dummy_hash: str | None = None

    @property
    def hasher(self):
        if self._hasher is None:
            self._hasher = _hasher()
        return self._hasher

    # ----- accounts ---------------------------------------------------------------------------
    def any(self) -> bool:
        return bool(self.storage.query("SELECT 1 FROM users LIMIT 1"))

    def add(self, name: str, role: str, password: str | None) -> None:
        if not NAME_PATTERN.match(name or "") or name == LOCAL_USER:
            raise AccountError(f"user name {name!r}: expected 1-64 letters, digits, '.', '_', '@' or '-' (and not '{LOCAL_USER}')")
        if role not in ROLES:
            raise AccountError(f"role {role!r}: expected one of {', '.join(ROLES)}")
        if password is not None and len(password) < MIN_PASSWORD:
            raise AccountError(f"password for {name}: expected at least {MIN_PASSWORD} characters")
        hashed = self.hasher.hash(password) if password is not None else None
        with self.storage.transaction() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise AccountError(f"user {name!r} already exists")
            db.execute("INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                       (name, role, hashed, self.storage.clock()))
            db.execute("INSERT INTO audit (at, actor, action, detail) VALUES (?, 'admin-cli', 'user-add', ?)",
                       (self.storage.clock(), f"{name} ({role})"))

    def list(self) -> list[dict[str, Any]]:
        rows = self.storage.query("SELECT name, role, disabled, created_at, password_hash IS NOT NULL AS has_password FROM users ORDER BY name")
        return [{**dict(row), "disabled": bool(row["disabled"]), "has_password": bool(row["has_password"])} for row in rows]

    def disable(self, name: str) -> None:
        """Disable an account and end its sessions and API tokens at once."""
        with self.storage.transaction() as db:
            if db.execute("UPDATE users SET disabled = 1 WHERE name = ?", (name,)).rowcount == 0:
                raise AccountError(f"no user {name!r}")
            db.execute("DELETE FROM credentials WHERE user = ?", (name,))
            db.execute("INSERT INTO audit (at, actor, action, detail) VALUES (?, 'admin-cli', 'user-disable', ?)", (self.storage.clock(), name))

    def _user(self, name: str) -> dict[str, Any] | None:
        rows = self.storage.query("SELECT * FROM users WHERE name = ?", (name,))
        return dict(rows[0]) if rows else None

    def check_password(self, name: str, password: str) -> Principal | None:
        """The principal when ``name`` exists, is enabled and ``password`` is its password (constant work either way)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        user = self._user(name)
        stored = user["password_hash"] if user and not user["disabled"] else None
        if stored is None:
            if self._dummy_hash is None:
                self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
            stored, user = self._dummy_hash, None  # same work as a real check: no user-name oracle by timing
        try:
            self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        return Principal(user["name"], user["role"]) if user else None

    # ----- sessions and API tokens ------------------------------------------------------------
    def issue(self, name: str, kind: str = "session", lifetime_s: float | None = SESSION_SECONDS) -> str:
        """A new random credential for ``name`` (``session`` cookie or ``api`` token); only its hash is stored."""
        user = self._user(name)
        if user is None or user["disabled"]:
            raise AccountError(f"no enabled user {name!r}")
        token = secrets.token_urlsafe(32)
        now = self.storage.clock()
        with self.storage.transaction() as db:
            db.execute("DELETE FROM credentials WHERE expires_at IS NOT NULL AND expires_at < ?", (now,))
            db.execute("INSERT INTO credentials VALUES (?, ?, ?, ?, ?)",
                       (_token_hash(token), name, kind, now, None if lifetime_s is None else now + lifetime_s))
        return token

    def principal_for_token(self, token: str, kind: str) -> Principal | None:
        rows = self.storage.query(
            "SELECT u.name, u.role, c.expires_at FROM credentials c JOIN users u ON u.name = c.user"
            " WHERE c.token_hash = ? AND c.kind = ? AND u.disabled = 0", (_token_hash(token), kind))
        if not rows or (rows[0]["expires_at"] is not None and rows[0]["expires_at"] < self.storage.clock()):
            return None
        return Principal(rows[0]["name"], rows[0]["role"])

    def revoke(self, token: str) -> None:
        with self.storage.transaction() as db:
            db.execute("DELETE FROM credentials WHERE token_hash = ?", (_token_hash(token),))


class LoginThrottle:
    """At most ``attempts`` failed log-ins per user name (and per client address) in ``window_s``; then 429."""

    def __init__(self, attempts: int = 5, window_s: float = 900.0):
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> int:
        """Seconds until another attempt is allowed for all ``keys`` (0: now)."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            for key in keys:
                failures = self._failures.get(key)
                while failures and failures[0] < now - self.window_s:
                    failures.popleft()
                if failures and len(failures) >= self.attempts:
                    wait = max(wait, failures[0] + self.window_s - now)
        return int(wait) + (1 if wait else 0)

    def failed(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures[key].append(time.monotonic())

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
