"""``compbench run`` without the CLI: build coders, load the corpus, fit, measure, collect records.

Coders and corpus are resolved before any work starts, so a typo fails in a second, not after an
hour. A coder that fails while measuring is reported and skipped; the others still run.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .coder import Coder
from .corpus import Corpus, load_corpus
from .errors import CompbenchError
from .measure import MeasureConfig, Record, measure
from .registry import expand, make_coder


@dataclass(frozen=True)
class RunConfig:
    coders: str = "classical"
    corpus: str = "pystdlib"
    split: str = "all"
    data_dir: Path | None = None
    measure: MeasureConfig = MeasureConfig()
    max_bytes: int = 0  # > 0: evaluate only the first max_bytes of the split (train data is never cut)


@dataclass
class RunResult:
    records: list[Record] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    coders: list[Coder] = field(default_factory=list)
    corpus: Corpus | None = None

    @property
    def ok(self) -> bool:
        return not self.failures and all(r.roundtrip_ok for r in self.records)


def run(cfg: RunConfig, progress: Callable[[str], None] | None = None) -> RunResult:
    say = progress or (lambda _msg: None)
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
    for i, coder in enumerate(coders, 1):
        say(f"[{i}/{len(coders)}] {coder.located_spec}")
        try:
            fit_s = 0.0
            if cfg.measure.budget is not None:
                coder.set_budget(cfg.measure.budget)
            if coder.needs_fit:
                t0 = time.perf_counter()
                coder.fit(train or b"")
                fit_s = time.perf_counter() - t0
                say(f"  fitted on {len(train or b''):,} train bytes in {fit_s:.1f} s; artifact {len(coder.artifact()):,} bytes")
            if coder.stores_eval_data:
                coder.fit_eval([m.data for m in corpus.members])
                say(f"  its artifact ({len(coder.artifact()):,} bytes) holds part of the evaluated data: rows are flagged")
            result.records += measure(coder, corpus, cfg.measure, fit_s=fit_s, progress=say)
        except CompbenchError as err:
            result.failures.append(f"{coder.header_spec}: {err}")
            say(f"  FAILED: {err}")
        except Exception as err:  # a buggy plug-in must not stop the other coders
            result.failures.append(f"{coder.header_spec}: crashed with {type(err).__name__}: {err}")
            say(f"  CRASHED: {type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}")
    return result
