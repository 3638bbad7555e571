"""Sweeps on executors: --jobs processes and a local Ray instance give exactly the records a serial
run gives; a worker killed mid-cell is retried and recorded once; an interrupted sweep, rerun,
measures only what is missing; timed runs never put more jobs than cores."""

import os
import sys

import pytest

from compbench.errors import CompbenchError
from compbench.measure import MeasureConfig
from compbench.runner import RunConfig, run
from compbench.store import Store

FILES = {
    "a.txt": b"the quick brown fox jumps over the lazy dog. " * 200,
    "b.bin": bytes(range(256)) * 40,
    "c.py": b"def f(x):\n    return x + 1\n" * 150,
}
# Compression figures: these must not depend on where a cell ran.
SAME = ("coder", "spec", "file", "n_bytes", "payload_bytes", "container_bytes", "artifact_bytes", "bpb", "bpb_model",
        "bpb_total", "model_bits", "roundtrip_ok", "error", "file_sha256", "artifact_sha256", "corpus_sha256")


@pytest.fixture
def corpus(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    for name, data in FILES.items():
        (d / name).write_bytes(data)
    return d


def _cfg(corpus, coders, **kw):
    return RunConfig(coders=coders, corpus=str(corpus), measure=MeasureConfig(repeat=1, memory=False), **kw)


def _figures(result):
    return sorted(tuple(r.to_dict()[k] for k in SAME) for r in result.records)


def test_process_pool_and_ray_give_the_records_a_serial_run_gives(corpus, tiny_models, tmp_path):
    path, _ = tiny_models["gru"]
    coders = f"zlib,lzma,ppmd:order=4:mem_mib=16,gru:model='{path}':min_segment=256"
    serial = run(_cfg(corpus, coders))
    assert serial.ok and len(serial.records) == 12
    pool = run(_cfg(corpus, coders, jobs=2))
    assert pool.ok and _figures(pool) == _figures(serial)
    assert all(r.host and r.cpu and r.threads == 1 for r in pool.records)  # where each cell ran
    ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'compbench[ray]')")
    try:
        on_ray = run(_cfg(corpus, coders, jobs=2, executor="ray"))
    finally:
        ray.shutdown()
    assert on_ray.ok and _figures(on_ray) == _figures(serial)


def _killer(tmp_path) -> str:
    """An external coder whose compress command kills its parent (the worker process) the first
    time it runs, then compresses like zlib."""
    script = tmp_path / "kill_once.py"
    script.write_text(
        "import os, signal, sys, zlib\n"
        f"flag = {str(tmp_path / 'killed-once')!r}\n"
        "if not os.path.exists(flag):\n"
        "    open(flag, 'w').close()\n"
        "    os.kill(os.getppid(), signal.SIGKILL)\n"
        "sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read()))\n")
    unzip = tmp_path / "unzip.py"
    unzip.write_text("import sys, zlib\nsys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read()))\n")
    return f"external:compress='{sys.executable} {script}':decompress='{sys.executable} {unzip}'"


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_cell_whose_worker_is_killed_is_retried_and_recorded_once(corpus, tmp_path, executor):
    if executor == "ray":
        ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'compbench[ray]')")
    store = Store(tmp_path / "s.sqlite")
    lines = []
    try:
        result = run(_cfg(corpus, f"zlib,{_killer(tmp_path)}", jobs=2, executor=executor),
                     progress=lines.append, store=store)
    finally:
        if executor == "ray":
            ray.shutdown()
    assert (tmp_path / "killed-once").exists()  # a worker really died
    assert result.ok, result.failures
    records = store.records()
    keys = [(r["coder"], r["file"]) for r in records]
    assert len(keys) == len(set(keys)) == 6  # every cell once: none lost, none twice
    if executor == "local":  # said, whether it ran alone (retried) or beside another (run again alone)
        assert any("worker process died" in line for line in lines), lines


def test_a_worker_that_dies_just_before_the_next_submit_loses_no_cell(corpus, tmp_path, monkeypatch):
    """The race CI once hit: a worker dies after the driver's last wait() and before its next
    submit(), so the pool refuses the submit. Forced here: the third submit first kills a worker and
    waits until the pool knows it is broken."""
    import signal
    import time
    from concurrent.futures import ProcessPoolExecutor

    real_submit = ProcessPoolExecutor.submit
    calls = []

    def submit(self, fn, /, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(next(iter(self._processes.values())).pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while not self._broken and time.monotonic() < deadline:
                time.sleep(0.01)
            assert self._broken
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", submit)
    store = Store(tmp_path / "s.sqlite")
    lines = []
    result = run(_cfg(corpus, "zlib,bz2", jobs=2), progress=lines.append, store=store)
    assert len(calls) > 3  # the refused submit happened, and the sweep went on in a new pool
    assert result.ok, result.failures
    keys = [(r["coder"], r["file"]) for r in store.records()]
    assert len(keys) == len(set(keys)) == 6  # every cell once: none lost, none twice


def test_a_cell_that_keeps_killing_its_worker_is_recorded_as_failed(corpus, tmp_path):
    script = tmp_path / "kill.py"
    script.write_text("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")
    spec = f"external:compress='{sys.executable} {script}':decompress=cat"
    result = run(_cfg(corpus, f"zlib,{spec}", jobs=2, retries=1), store=Store(tmp_path / "s.sqlite"))
    assert not result.ok
    assert len([f for f in result.failures if "failed after 2 attempts" in f]) == 3  # one per file, none dropped
    assert len(result.records) == 3 and all(r.coder == "zlib" for r in result.records)


def test_a_cell_running_beside_one_that_kills_its_worker_is_never_blamed(corpus, tmp_path):
    """A slow innocent coder is always running beside the killer when the pool breaks, and which
    worker died is not known: the innocent runs again alone, unblamed, and every one of its cells is
    recorded, however many times the killer breaks the pool. (Blaming every running cell, as the
    pool did, failed the innocent after two attempts.)"""
    kill = tmp_path / "kill.py"
    kill.write_text("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")
    slow = tmp_path / "slow.py"
    slow.write_text("import sys, time\ntime.sleep(0.3)\nsys.stdout.buffer.write(sys.stdin.buffer.read())\n")
    innocent = f"external:compress='{sys.executable} {slow}':decompress=cat"
    killer = f"external:compress='{sys.executable} {kill}':decompress=cat"
    messages = []
    result = run(_cfg(corpus, f"{innocent},{killer}", jobs=2, retries=1), store=Store(tmp_path / "s.sqlite"),
                 progress=messages.append)
    assert len(result.records) == 3 and all(r.roundtrip_ok for r in result.records)
    assert all("slow.py" in r.spec for r in result.records), [r.spec for r in result.records]
    assert len([f for f in result.failures if "failed after 2 attempts" in f]) == 3  # the killer's, one per file
    assert any("running it again alone" in m for m in messages)


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_interrupted_sweep_rerun_measures_only_the_missing_cells(corpus, tmp_path, monkeypatch, jobs):
    store = Store(tmp_path / "s.sqlite")
    cfg = _cfg(corpus, "zlib,bz2,lzma", resume=True, jobs=jobs)
    real = Store.add_records
    calls = []

    def interrupt_after_four(self, run_id, records):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(records)
        real(self, run_id, records)

    monkeypatch.setattr(Store, "add_records", interrupt_after_four)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, store=store)
    monkeypatch.setattr(Store, "add_records", real)
    assert len(store.records()) == 4  # what finished before Ctrl-C is kept
    again = run(cfg, store=store)
    assert again.ok and again.reused == 4 and len(again.records) == 9
    keys = [(r["coder"], r["file"]) for r in store.records()]
    assert len(keys) == len(set(keys)) == 9  # the rerun measured the 5 missing cells, nothing twice
    third = run(cfg, store=store)
    assert third.reused == 9 and third.run_id is None  # nothing left to do: no empty run is written
    fresh = run(RunConfig(**{**cfg.__dict__, "resume": False}), store=store)
    assert fresh.reused == 0 and len(store.records()) == 18  # without --resume, everything is measured again


def test_timed_runs_never_put_more_jobs_than_cores(corpus):
    with pytest.raises(CompbenchError, match="cores"):
        run(_cfg(corpus, "zlib", jobs=64))


def test_a_table_says_where_rows_were_measured_when_they_span_machines(corpus):
    from compbench.reports.tables import aggregate, render

    records = [r.to_dict() for r in run(_cfg(corpus, "zlib,bz2")).records]
    one = render(aggregate(records))
    assert "measured on" not in one  # one machine: nothing to warn about
    for r in records:
        if r["coder"] == "bz2":
            r["host"], r["cpu"] = "node-7", "AMD EPYC"
    two = render(aggregate(records))
    assert "measured on" in two and "node-7 (AMD EPYC" in two


def test_a_tradeoff_sweep_on_processes_and_ray_gives_the_serial_rows(tmp_path):
    import random

    from compbench.reports.tradeoff import TradeoffConfig, run_tradeoff

    rng = random.Random(4)
    words = [bytes(rng.choice(b"etaoinshrdlucmfw") for _ in range(rng.randint(3, 9))) for _ in range(400)]
    (tmp_path / "c.txt").write_bytes(b" ".join(rng.choice(words) for _ in range(16_000)))

    def sweep(name, **kw):
        cfg = TradeoffConfig(budget=30_000, corpus=str(tmp_path / "c.txt"), coders="zlib,ppmd:order=4:mem_mib=16",
                             shares=(0.1, 0.5), store_coder="zlib", out=str(tmp_path / f"rep-{name}"),
                             store_path=str(tmp_path / f"{name}.sqlite"), **kw)
        keys = ("family", "variant", "kind", "share", "bpb", "bpb_total", "artifact_bytes", "stored_bytes", "coverage",
                "roundtrip_ok")
        return [tuple(r[k] for k in keys) for r in run_tradeoff(cfg)]

    serial = sweep("serial")
    assert len(serial) >= 8
    assert sweep("pool", jobs=2) == serial
    ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'compbench[ray]')")
    try:
        assert sweep("ray", jobs=2, executor="ray") == serial
    finally:
        ray.shutdown()


@pytest.mark.parametrize("executor", ["pool", "ray"])
def test_a_training_grid_runs_on_executors_and_its_models_are_usable_artifacts(tmp_path, executor):
    from click.testing import CliRunner

    from compbench.cli import cli

    if executor == "ray":
        ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'compbench[ray]')")
    args = ["train", "--model", "gru", "--corpus", "pystdlib", "--set", "hidden=16,24", "--set", "layers=1",
            "--steps", "6", "--batch", "8", "--seq-len", "32", "--jobs", "2", "--out", str(tmp_path / "grid")]
    try:
        res = CliRunner().invoke(cli, args + (["--executor", "ray"] if executor == "ray" else []))
    finally:
        if executor == "ray":
            ray.shutdown()
    assert res.exit_code == 0, res.output
    import json

    for hidden in (16, 24):
        folder = tmp_path / "grid" / f"hidden={hidden},layers=1"
        record = json.loads((folder / "train.json").read_text())
        assert record["config"]["hidden"] == hidden and record["grid"] == folder.name
        assert record["artifact_sha256"] == __import__("hashlib").sha256((folder / "model.cbnm").read_bytes()).hexdigest()
    # each folder is a model any coder and `tradeoff --models` take
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_bytes(b"def f(x):\n    return x\n" * 40)
    spec = f"gru:model='{tmp_path / 'grid' / 'hidden=24,layers=1'}':min_segment=256"
    assert run(_cfg(corpus, spec)).ok


def test_a_cell_past_its_timeout_is_stopped_retried_then_recorded_as_failed(corpus, tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(f"import pathlib, time\npathlib.Path({str(tmp_path / 'started')!r}).touch()\ntime.sleep(8)\n"
                      f"pathlib.Path({str(tmp_path / 'orphan-finished')!r}).touch()\n")
    spec = f"external:compress='{sys.executable} {script}':decompress=cat"
    lines = []
    result = run(_cfg(corpus, f"zlib,{spec}", jobs=2, retries=1, cell_timeout=2), progress=lines.append)
    assert len([f for f in result.failures if "ran past 2 s" in f]) == 3  # every slow cell, after its retry
    assert sorted(r.file for r in result.records if r.coder == "zlib") == sorted(FILES)  # bystanders finish
    assert any("ran past 2 s; retrying (1/1)" in line for line in lines)
    import time

    time.sleep(8)
    assert (tmp_path / "started").exists() and not (tmp_path / "orphan-finished").exists()  # stopped, not orphaned


def _running(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a killed process waits as a zombie until its new parent reaps it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stopping_a_pool_also_stops_the_programs_of_a_worker_that_already_died():
    """The race a loaded CI machine once hit: when one worker is killed, the pool's manager thread
    terminates the others (the worker alone, not its group), so a worker can be dead by the time it
    is reached while its external compressor runs on. Its group must be killed all the same."""
    import subprocess
    import time

    from compbench.executors import _kill

    leader = subprocess.Popen(
        [sys.executable, "-c", "import os, subprocess, sys; os.setpgrp(); "
         "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); print(p.pid, flush=True)"],
        stdout=subprocess.PIPE, text=True)
    child = int(leader.stdout.readline())
    leader.wait()  # the worker is gone; its child lives on in its process group
    assert _running(child)

    class DeadWorker:
        pid = leader.pid

        def is_alive(self):
            return False

    class Pool:
        _processes = {leader.pid: DeadWorker()}

    try:
        _kill(Pool())
        deadline = time.monotonic() + 10
        while _running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(child)
    finally:
        if _running(child):
            os.kill(child, 9)


def test_a_ray_address_with_no_cluster_fails_in_one_line_at_once(corpus):
    pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'compbench[ray]')")
    with pytest.raises(CompbenchError, match="no Ray cluster at 127.0.0.1:1"):
        run(_cfg(corpus, "zlib", executor="ray", address="127.0.0.1:1"))
