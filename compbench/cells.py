"""One unit of benchmark work: a cell is one coder x one corpus member x one setting.

A :class:`Cell` is plain data (strings and numbers), so any executor can ship it anywhere: a local
process, a Ray worker on another machine. The bytes it needs travel beside it, by content hash:
the member's bytes under its sha256, the coder's artifact (a trained dictionary, a model, a
submission zip) under its fingerprint. An executor sends each of those once per worker or once
into Ray's object store, never once per cell.

A cell is content-addressed (:meth:`Cell.key`): the coder spec, the member's sha256, the artifact's
sha256, the chunk size and the budget. A record in the store carries the same fields, so
:func:`record_key` finds the cells a store already holds, which is how a sweep resumes.

:func:`run_cell` measures one cell wherever it runs. The coder is rebuilt from its spec and its
artifact bytes (never from a path the worker may not have) and measured by
:func:`compbench.measure.measure_member`, exactly as a serial run does; the record also says where
it was measured (host, CPU, threads), because timings from different machines do not compare.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Cell:
    spec: str  # the coder's located spec: rebuilt with make_coder, then given its artifact
    canonical: str  # its canonical spec (every option), as records store it
    corpus: str
    split: str
    corpus_sha256: str  # of the whole evaluated selection (what a record's corpus_sha256 says)
    member: str
    member_sha256: str
    artifact_sha256: str  # sha256 of the artifact bytes (that of b"" for none; then no bytes are shipped)
    chunk_size: int = 0
    budget: int | None = None
    repeat: int = 3
    max_time_s: float = 60.0
    memory: bool = True
    fit_s: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.spec} {self.member}"

    @property
    def needs(self) -> tuple[str, ...]:
        """The byte strings it uses, by content hash: its member, then its artifact."""
        return (self.member_sha256, self.artifact_sha256)

    def key(self) -> str:
        return cell_key(self.canonical, self.member_sha256, self.artifact_sha256, self.chunk_size, self.budget)

    def to_dict(self) -> dict:
        return asdict(self)


def cell_key(spec: str, member_sha256: str, artifact_sha256: str, chunk_size: int, budget: int | None) -> str:
    """The content address of a measurement: what it coded, with what, how."""
    blob = json.dumps([spec, member_sha256, artifact_sha256, int(chunk_size), budget], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def record_key(r: dict) -> str:
    """The key of the cell a stored record measured."""
    return cell_key(r["spec"], r["file_sha256"], r["artifact_sha256"], r["chunk_size"], r.get("budget"))


@dataclass(frozen=True)
class _CorpusRef:
    """What :func:`measure_member` reads of a corpus: its name, split and selection hash."""

    name: str
    split: str
    sha256: str


def where() -> dict:
    """Where this process measures: host, CPU model and the threads its libraries may use."""
    from .environment import cpu_model

    threads = os.environ.get("OMP_NUM_THREADS")
    return {"host": platform.node(), "cpu": cpu_model(),
            "threads": int(threads) if threads and threads.isdigit() else (os.cpu_count() or 1)}


def run_cell(cell: Cell, data: bytes, artifact: bytes, progress=None, coder=None) -> dict:
    """Measure ``cell`` here; returns its record as a dict. Errors that are the coder's become the
    record's ``error`` (as in a serial run); anything else is raised for the executor to retry.
    ``coder``: the driver's own fitted coder, for cells whose state is not all in the artifact."""
    from .corpus import Member
    from .measure import MeasureConfig, measure_member
    from .registry import make_coder

    if hashlib.sha256(data).hexdigest() != cell.member_sha256:
        raise ValueError(f"cell {cell.member}: the bytes shipped do not match the member's sha256")
    if coder is None:
        coder = make_coder(cell.spec)
        if artifact:
            coder.load_artifact(artifact)
        if cell.budget is not None:
            coder.set_budget(cell.budget)
    cfg = MeasureConfig(repeat=cell.repeat, chunk_size=cell.chunk_size, memory=cell.memory,
                        max_time_s=cell.max_time_s, budget=cell.budget)
    corpus = _CorpusRef(cell.corpus, cell.split, cell.corpus_sha256)
    rec = measure_member(coder, artifact, Member(cell.member, data), corpus, cfg, fit_s=cell.fit_s, progress=progress)
    out = rec.to_dict()
    out.update(where())
    return out
