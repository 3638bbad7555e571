"""The results store: every run, with its records and provenance, in one SQLite file.

SQLite (standard library, no server) gives atomic writes and safe concurrent writers: each run is
one ``BEGIN IMMEDIATE`` transaction, WAL mode lets readers work during writes, and a generous busy
timeout makes parallel ``compbench run`` processes queue instead of failing. Default location:
``.compbench/results.sqlite`` in the working directory (``--store PATH`` or ``$COMPBENCH_STORE``).
Artifacts with bytes (trained dictionaries, models) are kept beside it under ``artifacts/`` by
fingerprint, which is where ``compbench decode`` looks for them.

Schema version lives in table ``meta``; a store written by a newer compbench is refused clearly.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from .errors import StoreError
from .fsutil import atomic_write

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    command TEXT,
    compbench_version TEXT,
    commit_id TEXT,
    commit_dirty INTEGER,
    machine TEXT NOT NULL,
    packages TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    coder TEXT NOT NULL, spec TEXT NOT NULL, corpus TEXT NOT NULL, split TEXT NOT NULL,
    chunk_size INTEGER NOT NULL, file TEXT NOT NULL,
    corpus_sha256 TEXT NOT NULL, file_sha256 TEXT NOT NULL, artifact_sha256 TEXT NOT NULL,
    bpb REAL, roundtrip_ok INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_run ON records(run_id);
CREATE INDEX IF NOT EXISTS records_by_key ON records(spec, corpus, split, chunk_size);
"""


def default_store_path() -> Path:
    return Path(os.environ.get("COMPBENCH_STORE") or Path(".compbench") / "results.sqlite")


class Store:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_store_path()
        self.artifact_dir = self.path.parent / "artifacts"

    def _connect(self, create: bool) -> sqlite3.Connection:
        if not self.path.exists() and not create:
            raise StoreError(f"no results store at {self.path} (run `compbench run` first, or pass --store)")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=120, isolation_level=None)
            db.execute("PRAGMA busy_timeout = 120000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("BEGIN IMMEDIATE")
            for statement in filter(str.strip, _SCHEMA.split(";")):  # CREATE ... IF NOT EXISTS: idempotent
                db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                db.execute("ROLLBACK")
                raise StoreError(f"store {self.path} has schema version {row[0]}; this compbench reads "
                                 f"up to {SCHEMA_VERSION}. Upgrade compbench or use another --store.")
            db.execute("COMMIT")
            return db
        except sqlite3.DatabaseError as err:
            raise StoreError(f"cannot open results store {self.path}: {err}") from None
        except OSError as err:
            raise StoreError(f"cannot create results store {self.path}: {err.strerror}") from None

    # -- writing --------------------------------------------------------------------------------
    def add_run(self, records: list[dict], *, command: str = "", environment: dict | None = None) -> int:
        """Append one run and its records atomically; returns the run id."""
        return self._write(None, records, command, environment)

    def begin_run(self, *, command: str = "", environment: dict | None = None) -> int:
        """Open a run that records are added to as its cells finish (:meth:`add_records`): a sweep
        interrupted half-way keeps what it finished. Returns the run id."""
        return self._write(None, [], command, environment)

    def add_records(self, run_id: int, records: list[dict]) -> None:
        """Append records to run ``run_id`` in one transaction (the driver is the only writer)."""
        self._write(run_id, records)

    def _write(self, run_id: int | None, records: list[dict], command: str = "", environment: dict | None = None) -> int:
        env = environment or {}
        db = self._connect(create=True)
        try:
            db.execute("BEGIN IMMEDIATE")
            if run_id is None:
                cur = db.execute(
                    "INSERT INTO runs (created, command, compbench_version, commit_id, commit_dirty, machine, packages)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), command,
                        env.get("packages", {}).get("compbench"), env.get("commit", {}).get("id"),
                        env.get("commit", {}).get("dirty"), json.dumps(env.get("machine", {})),
                        json.dumps(env.get("packages", {})),
                    ),
                )
                run_id = cur.lastrowid
            db.executemany(
                "INSERT INTO records (run_id, coder, spec, corpus, split, chunk_size, file, corpus_sha256,"
                " file_sha256, artifact_sha256, bpb, roundtrip_ok, data) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (run_id, r["coder"], r["spec"], r["corpus"], r["split"], r["chunk_size"], r["file"],
                     r["corpus_sha256"], r["file_sha256"], r["artifact_sha256"], r["bpb"],
                     int(bool(r["roundtrip_ok"])), json.dumps({**r, "run_id": run_id}))
                    for r in records
                ],
            )
            db.execute("COMMIT")
            return run_id
        except sqlite3.DatabaseError as err:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"cannot write to results store {self.path}: {err}") from None
        finally:
            db.close()

    def save_artifact(self, fingerprint_hex: str, artifact: bytes) -> Path | None:
        if not artifact:
            return None
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        path = self.artifact_dir / f"{fingerprint_hex}.bin"
        if not path.exists():
            atomic_write(path, artifact)
        return path

    def find_artifact(self, fingerprint_hex: str) -> bytes | None:
        path = self.artifact_dir / f"{fingerprint_hex}.bin"
        return path.read_bytes() if path.is_file() else None

    # -- reading --------------------------------------------------------------------------------
    def runs(self) -> list[dict]:
        db = self._connect(create=False)
        try:
            rows = db.execute(
                "SELECT r.id, r.created, r.command, r.commit_id, r.commit_dirty, r.machine, r.packages,"
                " COUNT(x.id) FROM runs r LEFT JOIN records x ON x.run_id = r.id GROUP BY r.id ORDER BY r.id"
            ).fetchall()
        finally:
            db.close()
        return [
            {"id": r[0], "created": r[1], "command": r[2], "commit": r[3], "dirty": r[4],
             "machine": json.loads(r[5]), "packages": json.loads(r[6]), "n_records": r[7]}
            for r in rows
        ]

    def resolve_run(self, ref: str | int) -> int:
        """A run id, ``latest`` or ``latest~N`` -> run id."""
        ids = [r["id"] for r in self.runs()]
        if not ids:
            raise StoreError(f"the store {self.path} holds no runs yet")
        text = str(ref).strip().lower()
        if text.startswith("latest"):
            back = int(text[7:] or 0) if text[6:7] in ("~", "") else None
            if back is None or back >= len(ids):
                raise StoreError(f"no run {ref!r}: the store holds {len(ids)} run(s)")
            return ids[-1 - back]
        try:
            run_id = int(text)
        except ValueError:
            raise StoreError(f"bad run reference {ref!r}: use a run id, 'latest' or 'latest~N'") from None
        if run_id not in ids:
            raise StoreError(f"no run {run_id} in {self.path} (runs: {ids[0]}..{ids[-1]})")
        return run_id

    def records(self, run_id: int | None = None) -> list[dict]:
        db = self._connect(create=False)
        try:
            if run_id is None:
                rows = db.execute("SELECT data FROM records ORDER BY id").fetchall()
            else:
                rows = db.execute("SELECT data FROM records WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
        finally:
            db.close()
        return [json.loads(r[0]) for r in rows]

    def latest_records(self) -> list[dict]:
        """For each (spec, corpus, split, chunk size, artifact), the records of the newest run that has it."""
        latest: dict[tuple, int] = {}
        recs = self.records()
        for r in recs:
            key = (r["spec"], r["corpus"], r["split"], r["chunk_size"], r["corpus_sha256"])
            latest[key] = max(latest.get(key, 0), r["run_id"])
        return [r for r in recs
                if latest[(r["spec"], r["corpus"], r["split"], r["chunk_size"], r["corpus_sha256"])] == r["run_id"]]
