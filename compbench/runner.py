"""``compbench run`` without the CLI: build coders, load the corpus, fit, plan cells, measure them
on an executor, collect records.

Coders and corpus are resolved before any work starts, so a typo fails in a second, not after an
hour. Coders are fitted here, in the driver; then each coder x member is one cell
(:mod:`compbench.cells`), run serially, in local processes or on Ray (:mod:`compbench.executors`).
With ``resume``, cells the store already holds are skipped. A coder that fails is reported and skipped;
the others still run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .cells import Cell, record_key, run_cell
from .coder import Coder
from .corpus import Corpus, load_corpus
from .errors import CompbenchError
from .measure import MeasureConfig, Record
from .registry import expand, make_coder


@dataclass(frozen=True)
class RunConfig:
    coders: str = "classical"
    corpus: str = "pystdlib"
    split: str = "all"
    data_dir: Path | None = None
    measure: MeasureConfig = MeasureConfig()
    max_bytes: int = 0  # > 0: evaluate only the first max_bytes of the split (train data is never cut)
    jobs: int = 1  # local processes; 1: serial, in this process
    executor: str = "local"  # "local" (serial or --jobs) or "ray"
    address: str | None = None  # Ray cluster address; None starts a local Ray instance
    retries: int = 2  # a cell whose worker dies or times out is retried this many times
    cell_timeout: float = 0.0  # seconds per cell; 0: none
    # Skip cells the store already holds (with a verified round trip). Off by default: a cell's key
    # has no code version, and rerunning is also how a changed coder is measured again.
    resume: bool = False


@dataclass
class RunResult:
    records: list[Record] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    coders: list[Coder] = field(default_factory=list)
    corpus: Corpus | None = None
    run_id: int | None = None  # the run the new records went to (None: nothing new, or no store)
    reused: int = 0  # cells taken from the store instead of measured

    @property
    def ok(self) -> bool:
        return not self.failures and all(r.roundtrip_ok for r in self.records)


def _record(d: dict) -> Record:
    names = {f.name for f in dataclasses.fields(Record)}
    return Record(**{k: v for k, v in d.items() if k in names})


def executor_for(cfg: RunConfig, say: Callable[[str], None]):
    """The executor a run's settings name (see :mod:`compbench.executors`)."""
    return make_executor(cfg.executor, cfg.jobs, cfg.address, cfg.retries, cfg.cell_timeout, say)


def make_executor(executor: str, jobs: int, address: str | None, retries: int, cell_timeout: float,
                  say: Callable[[str], None]):
    from . import executors

    if executor == "ray":
        return executors.Ray(address=address, num_cpus=jobs if jobs > 1 else None, retries=retries,
                             cell_timeout=cell_timeout, progress=say)
    if executor != "local":
        raise CompbenchError(f"unknown executor {executor!r}: use local or ray")
    if jobs > 1:
        return executors.Pool(jobs, retries=retries, cell_timeout=cell_timeout, progress=say)
    return executors.Serial(progress=say)


def check_jobs(cfg: RunConfig) -> None:
    """Timing honesty: cells that are timed run one per core."""
    if cfg.measure.repeat > 0:
        check_cores(cfg.executor, cfg.jobs)


def check_cores(executor: str, jobs: int) -> None:
    """More local jobs than cores would time work fighting over cores (two torch processes on 2
    cores slow each other many times over): refused."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if executor == "local" and jobs > cores:
        raise CompbenchError(f"--jobs {jobs} is more than this machine's {cores} cores: timings would be "
                             f"meaningless. Use --jobs {cores} or fewer")


def run(cfg: RunConfig, progress: Callable[[str], None] | None = None, store=None, command: str = "",
        environment: dict | None = None, annotate: Callable[[Coder], dict] | None = None) -> RunResult:
    """Fit the coders here (the driver), plan one cell per coder x member, skip the cells ``store``
    already holds (``cfg.resume``), and run the rest on the configured executor. Each finished
    cell's record goes into ``store`` at once, so an interrupted sweep keeps what it finished.
    ``annotate(coder)``: extra fields for that coder's records (``run --ltcb``'s decoder size)."""
    say = progress or (lambda _msg: None)
    check_jobs(cfg)
    coders = [make_coder(spec) for spec in expand(cfg.coders)]
    corpus = load_corpus(cfg.corpus, cfg.split, cfg.data_dir).head(cfg.max_bytes)
    if cfg.measure.chunk_size < 0:
        raise CompbenchError("--chunk-size must be positive (or 0 for whole files)")
    train: bytes | None = None
    if any(c.needs_fit for c in coders):
        if cfg.split == "all":
            raise CompbenchError(
                "some coders need training bytes ("
                + ", ".join(c.spec for c in coders if c.needs_fit)
                + "): use --split test or --split val, which trains them on the corpus's train split"
            )
        train = load_corpus(cfg.corpus, "train", cfg.data_dir).joined()
    result = RunResult(coders=coders, corpus=corpus)
    say(f"corpus {corpus.name} [{cfg.split}]: {len(corpus.members)} file(s), {corpus.n_bytes:,} bytes, "
        f"sha256 {corpus.sha256[:12]}")
    m = cfg.measure
    blobs = {mem.sha256: mem.data for mem in corpus.members}
    cells: list[Cell] = []
    local: dict[Cell, Coder] = {}  # cells whose coder holds state beyond its artifact: measured here
    extra: dict[str, dict] = {}
    for i, coder in enumerate(coders, 1):
        say(f"[{i}/{len(coders)}] {coder.located_spec}")
        try:
            fit_s = 0.0
            if m.budget is not None:
                coder.set_budget(m.budget)
            if coder.needs_fit:
                t0 = time.perf_counter()
                coder.fit(train or b"")
                fit_s = time.perf_counter() - t0
                say(f"  fitted on {len(train or b''):,} train bytes in {fit_s:.1f} s; artifact {len(coder.artifact()):,} bytes")
            if coder.stores_eval_data:
                coder.fit_eval([mem.data for mem in corpus.members])
                say(f"  its artifact ({len(coder.artifact()):,} bytes) holds part of the evaluated data: rows are flagged")
            artifact = coder.artifact()
            art_sha = hashlib.sha256(artifact).hexdigest()  # as records store it (that of b"" for none)
            if artifact:
                blobs[art_sha] = artifact
            extra[coder.spec] = annotate(coder) if annotate else {}
        except CompbenchError as err:
            result.failures.append(f"{coder.located_spec}: {err}")
            say(f"  FAILED: {err}")
            continue
        for mem in corpus.members:
            cell = Cell(spec=coder.located_spec, canonical=coder.spec, corpus=corpus.name, split=corpus.split,
                        corpus_sha256=corpus.sha256, member=mem.name, member_sha256=mem.sha256, artifact_sha256=art_sha,
                        chunk_size=m.chunk_size, budget=m.budget, repeat=m.repeat, max_time_s=m.max_time_s,
                        memory=m.memory, fit_s=fit_s)
            cells.append(cell)
            if coder.stores_eval_data:  # a paid prefix maps stored bytes to files at fit_eval: not in its artifact
                local[cell] = coder
    todo = cells
    if store is not None and cfg.resume:
        have = _stored(store)
        todo = [c for c in cells if c.key() not in have]
        result.records += [_record(have[c.key()]) for c in cells if c.key() in have]
        result.reused = len(cells) - len(todo)
        if result.reused:
            say(f"resuming: {result.reused} of {len(cells)} cell(s) already in the store, {len(todo)} to measure")
    if store is not None and todo:
        result.run_id = store.begin_run(command=command, environment=environment)
    finished = [0]

    def done(cell: Cell, rec: dict | None, error: str | None) -> None:
        finished[0] += 1
        if rec is None:
            result.failures.append(f"{cell.spec} on {cell.member}: {error}")
            say(f"  [{finished[0]}/{len(todo)}] {cell.spec} {cell.member}: FAILED: {error}")
            return
        rec.update(extra.get(cell.canonical, {}))
        if store is not None:
            store.add_records(result.run_id, [rec])
        result.records.append(_record(rec))
        status = "ok" if rec["roundtrip_ok"] else f"FAILED: {rec['error']}"
        bpb = "-" if rec["bpb"] is None else f"{rec['bpb']:.3f}"
        say(f"  [{finished[0]}/{len(todo)}] {cell.spec} {cell.member}: {bpb} bpb, {status} ({rec['host']})")

    remote = [c for c in todo if c not in local]
    for cell in (c for c in todo if c in local):
        done(cell, run_cell(cell, blobs[cell.member_sha256], blobs.get(cell.artifact_sha256, b""), say, local[cell]), None)
    if remote:
        executor_for(cfg, say).run(remote, blobs, done)
    return result


def _stored(store) -> dict[str, dict]:
    """Cells the store holds with a verified round trip, by key (the newest record of each)."""
    from .errors import StoreError

    try:
        records = store.records()
    except StoreError:  # no store yet
        return {}
    return {record_key(r): r for r in records if r.get("roundtrip_ok")}
