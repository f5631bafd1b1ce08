"""Review caches: SQLite for the embedded mode (the DynamoDB one lives in ``aws``)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from functions.core.errors import StorageError


class SqliteReviewCache:
    """Finished reviews in a SQLite file, expiring after ``ttl_seconds``."""

    def __init__(self, path: Path, ttl_seconds: float = 7 * 24 * 3600) -> None:
        self._path = path
        self._ttl = ttl_seconds
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, timeout=5.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS review_cache "
                "(key TEXT PRIMARY KEY, suggestions TEXT NOT NULL, expires_at REAL NOT NULL)"
            )
            self._local.conn = conn
        return conn

    def get(self, key: str) -> list[str] | None:
        """Return the cached suggestions, or None when absent or expired."""
        try:
            row = (
                self._conn()
                .execute(
                    "SELECT suggestions FROM review_cache WHERE key = ? AND expires_at > ?",
                    (key, time.time()),
                )
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise StorageError(f"review cache {self._path} failed: {exc}") from exc
        if row is None:
            return None
        value = json.loads(row[0])
        return [str(item) for item in value] if isinstance(value, list) else None

    def put(self, key: str, suggestions: list[str]) -> None:
        """Remember ``suggestions`` for ``key``."""
        try:
            self._conn().execute(
                "INSERT OR REPLACE INTO review_cache (key, suggestions, expires_at) VALUES (?,?,?)",
                (key, json.dumps(suggestions), time.time() + self._ttl),
            )
        except sqlite3.Error as exc:
            raise StorageError(f"review cache {self._path} failed: {exc}") from exc
