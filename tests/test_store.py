"""The SQLite results store: atomic runs, nothing lost with concurrent writers, clear errors."""

import multiprocessing as mp
import sqlite3

import pytest

from compbench.errors import StoreError
from compbench.store import Store


def fake_record(i: int, writer: int) -> dict:
    return {"coder": "zlib", "spec": "zlib:level=9", "label": "zlib", "corpus": f"c{writer}", "split": "all",
            "chunk_size": 0, "file": f"f{i}", "corpus_sha256": "0" * 64, "file_sha256": "1" * 64,
            "artifact_sha256": "2" * 64, "bpb": 2.0 + i / 1000, "roundtrip_ok": True, "n_bytes": 100,
            "payload_bytes": 25, "artifact_bytes": 0, "encode_wall_s": 0.1, "decode_wall_s": 0.1}


def _writer(path: str, writer: int, n_runs: int, per_run: int) -> None:
    store = Store(path)
    for r in range(n_runs):
        store.add_run([fake_record(i, writer) for i in range(per_run)], command=f"w{writer} r{r}")


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "s.sqlite")
    writers, n_runs, per_run = 6, 15, 7
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, n_runs, per_run)) for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = Store(path)
    runs = store.runs()
    assert len(runs) == writers * n_runs
    assert all(r["n_records"] == per_run for r in runs)
    records = store.records()
    assert len(records) == writers * n_runs * per_run
    assert {r["run_id"] for r in records} == {r["id"] for r in runs}


def test_run_references(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    ids = [store.add_run([fake_record(0, 0)]) for _ in range(3)]
    assert store.resolve_run("latest") == ids[-1]
    assert store.resolve_run("latest~2") == ids[0]
    assert store.resolve_run(str(ids[1])) == ids[1]
    for bad in ("latest~3", "99", "yesterday"):
        with pytest.raises(StoreError):
            store.resolve_run(bad)


def test_latest_records_keep_newest_result_per_coder(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.add_run([fake_record(0, 0)])
    newer = store.add_run([fake_record(0, 0)])
    assert [r["run_id"] for r in store.latest_records()] == [newer]


def test_missing_newer_and_corrupt_stores_give_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="no results store"):
        Store(tmp_path / "none.sqlite").runs()
    path = tmp_path / "s.sqlite"
    Store(path).add_run([fake_record(0, 0)])
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path).runs()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        Store(junk).runs()


def test_artifacts_are_kept_by_fingerprint(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    assert store.save_artifact("ab" * 8, b"") is None
    store.save_artifact("cd" * 8, b"dictionary")
    assert store.find_artifact("cd" * 8) == b"dictionary"
    assert store.find_artifact("ef" * 8) is None
