"""``compbench tradeoff``: how a byte budget is best split between a model and stored data.

For each coder this measures a grid of *points*, each a real round trip through the harness:

* the coder alone (its artifact: nothing, a dictionary, a model), once per model size available
  (for a neural coder: the shipped models trained on this corpus, models the user passes with
  ``--models``, and small ones trained on the spot with ``--train-minutes``);
* ``prefix:kind=context`` around it, the stored part (train text) given a share of the budget:
  each of ``shares`` that fits beside the coder's own artifact, and "all that is left";
* the same for ``prefix:kind=paid`` (the head of the evaluated data: rows flagged).

Points are kept in the results store as ordinary runs, one run per point. A point already there (same
canonical spec, corpus sha256, split and budget, and a verified round trip) is not measured again,
so an interrupted sweep resumes where it stopped, and a second report costs nothing. Each point is
measured as one cell per corpus file (:mod:`compbench.cells`), on the executor the user names; with
one, the points of a wave are measured at once (see :func:`run_tradeoff`).

The report folder holds ``report.md`` (the best split per coder, every cell, the paid-prefix law
and the crossover), three matplotlib plots (``pareto.png``, ``coverage.png``, ``split.png``) and the
data behind them (``tradeoff.csv``, ``tradeoff.json``).

**Coverage** is stored text over evaluated bytes (paid) or over train bytes (context). **The law**
(parameter golf): ``bpb ≈ model_bpb × (1 − coverage)`` for a paid prefix. **The crossover** of a
coder: the least coverage at which its paid prefix scores lower than the best non-paid cell of the
same coder (a context prefix, a bigger model or dictionary) with no more artifact bytes.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

KINDS = ("context", "paid")


@dataclass(frozen=True)
class TradeoffConfig:
    budget: int = 1_000_000
    corpus: str = "enwik8"
    split: str = "test"
    coders: str = "ppmd,zstd,zlib,gru"
    kinds: tuple[str, ...] = KINDS
    shares: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5)  # of the budget, for the stored part; "all that is left" always runs
    store_coder: str = "ppmd"  # compresses the stored text inside the artifact
    models: tuple[str, ...] = ()  # extra neural artifacts (.cbnm or `compbench train --out` folders)
    train_minutes: float = 0.0  # > 0: train small GRUs of train_sizes for this long each (kept, reused)
    train_sizes: tuple[int, ...] = (250_000, 500_000)
    max_bytes: int = 0  # > 0: evaluate the first max_bytes of the split only (slow coders); train text is whole
    out: str = ""  # default: reports/tradeoff-<corpus>-<budget>
    data_dir: str | None = None
    store_path: str | None = None
    jobs: int = 1  # executor settings, as for `compbench run` (see compbench.executors)
    executor: str = "local"
    address: str | None = None
    retries: int = 2
    cell_timeout: float = 0.0

    @property
    def parallel(self) -> bool:
        return self.jobs > 1 or self.executor != "local"

    @property
    def out_dir(self) -> Path:
        from compbench.units import format_size

        head = f"-first{format_size(self.max_bytes).replace(',', '')}" if self.max_bytes else ""
        return Path(self.out or f"reports/tradeoff-{self.corpus}{head}-{format_size(self.budget).replace(',', '')}")


@dataclass
class Point:
    """One point of the sweep: a coder (family), a model or dictionary variant, a kind, a share.
    Measuring it is one run of its spec: a :class:`compbench.cells.Cell` per corpus file."""

    family: str  # the coder the user named (ppmd, zstd, gru ...)
    variant: str  # which model (neural) or "-"
    base: str  # the coder spec alone
    kind: str  # "alone" | "context" | "paid"
    share: float | None  # fraction of the budget for the stored part; None: all that is left; 0: alone
    spec: str = ""
    note: str = ""  # where a model came from (neural variants)
    row: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def label(self) -> str:
        what = "alone" if self.kind == "alone" else f"{self.kind} " + ("max" if self.share is None else f"{self.share:g}")
        return f"{self.family}[{self.variant}] {what}"


# -- which cells -------------------------------------------------------------------------------
def _quote(path: str) -> str:
    if "'" in path:
        from compbench.errors import CompbenchError

        raise CompbenchError(f"model path {path!r} contains a quote, which a coder spec cannot hold")
    return f"'{path}'"


def _variants(name: str, cfg: TradeoffConfig, trained: dict[str, list[str]], say) -> list[tuple[str, str, str]]:
    """(variant label, coder spec, where it came from) for one coder the user named."""
    from compbench.registry import get_coder_class
    from compbench.spec import parse_spec

    cname, _ = parse_spec(name)
    cls = get_coder_class(cname)
    if cls.family != "neural" or "model=" in name:
        return [("-", name, "")]
    from compbench.models import shipped_models

    out = []
    shipped = {k: p for k, p in shipped_models().items() if k.startswith(cname + "-")}
    corpus = _corpus_key(cfg.corpus)
    mine = {k: p for k, p in shipped.items() if _corpus_key(json.loads(p.with_suffix(".json").read_text())["corpus"]) == corpus}
    if not mine and shipped:
        say(f"  no shipped {cname} model was trained on {cfg.corpus}: using all shipped {cname} models")
        mine = shipped
    for key, path in mine.items():
        out.append((f"shipped {key.split('-', 1)[1]}", f"{name}:model={key.split('-', 1)[1]}",
                    "shipped; " + _provenance(json.loads(path.with_suffix(".json").read_text()))))
    for path in cfg.models + tuple(trained.get(cname, ())):
        arch, info = _model_info(path)
        if arch == cname:
            note = _provenance(info) if info else "no train.json beside it"
            out.append((Path(path).name if Path(path).is_dir() else Path(path).stem, f"{name}:model={_quote(path)}",
                        f"{path}; {note}"))
    return out


def _provenance(info: dict) -> str:
    return (f"{info.get('config')}, trained {info.get('minutes', '?')} min on {info.get('corpus', '?')} [train] "
            f"({info.get('precision', '?')}, {info.get('threads', '?')} thread(s)), val bpb "
            f"{info.get('val_bpb_coder', '?')} with the match model")


def _corpus_key(name: str) -> str:
    return {"sagas": "icelandic"}.get(name, name)


def _model_info(path: str) -> tuple[str, dict | None]:
    """(architecture, its train.json record if one sits beside it) of a .cbnm file or train folder.
    The architecture comes from the artifact's own header, the one authority on what it holds."""
    from compbench.models import artifact

    p = Path(path)
    blob = p / "model.cbnm" if p.is_dir() else p
    record = blob.parent / "train.json"
    return artifact.unpack(blob.read_bytes())[0]["arch"], json.loads(record.read_text()) if record.is_file() else None


def _prefix_spec(base: str, kind: str, share: float | None, store: str) -> str:
    return f"prefix:inner=({base}):kind={kind}:store=({store})" + ("" if share is None else f":share={share:g}")


# -- measuring, with resume ----------------------------------------------------------------------
def _stored_cells(store, corpus_sha: str, split: str, budget: int) -> dict[str, list[dict]]:
    """Records already in the store for this corpus, split and budget, by canonical spec (newest run)."""
    from compbench.errors import StoreError

    try:
        records = store.latest_records()
    except StoreError:  # no store yet
        return {}
    out: dict[str, list[dict]] = {}
    for r in records:
        if r["corpus_sha256"] == corpus_sha and r["split"] == split and r["chunk_size"] == 0 and r.get("budget") == budget:
            out.setdefault(r["spec"], []).append(r)
    return {k: v for k, v in out.items() if all(r["roundtrip_ok"] for r in v)}


def _aggregate(records: list[dict], train_bytes: int) -> dict:
    n = sum(r["n_bytes"] for r in records)
    payload = sum(r["payload_bytes"] for r in records)
    art = records[0]["artifact_bytes"]
    bits = [r.get("model_bits") for r in records]
    stored = records[0].get("stored_bytes", 0)
    paid = bool(records[0].get("stores_eval_data"))
    cover_of = n if paid else train_bytes
    return {
        "spec": records[0]["label"], "n_bytes": n, "payload_bytes": payload, "artifact_bytes": art,
        "bpb": 8 * payload / n, "bpb_total": 8 * (payload + art) / n,
        "bpb_model": None if any(b is None for b in bits) else sum(bits) / n,
        "stored_bytes": stored, "coverage": stored / cover_of if cover_of else 0.0,
        "stores_eval_data": paid, "fits_budget": bool(records[0].get("fits_budget")),
        "encode_s": sum(r["encode_wall_s"] for r in records), "decode_s": sum(r["decode_wall_s"] for r in records),
        "roundtrip_ok": all(r["roundtrip_ok"] for r in records), "run_id": records[0].get("run_id"),
    }


def _environment() -> dict:
    from compbench import environment

    return {"machine": environment.machine(), "packages": environment.packages(), "commit": environment.git_commit()}


def _measure(cells: list[Point], cfg: TradeoffConfig, store, cached: dict, train_bytes: int, say) -> set[int]:
    """Fill each cell's ``row`` from the store or new measurements, all of ``cells`` in one run on
    the configured executor; returns the ids of the cells measured now. A cell's records are
    stored as one run of their own, and only when every round trip is verified."""
    from compbench.measure import MeasureConfig
    from compbench.registry import make_coder
    from compbench.runner import RunConfig, run

    coders = {id(c): make_coder(c.spec) for c in cells}
    todo = [c for c in cells if coders[id(c)].spec not in cached]
    if todo:
        res = run(RunConfig(coders=",".join(c.spec for c in todo), corpus=cfg.corpus, split=cfg.split,
                            max_bytes=cfg.max_bytes, data_dir=Path(cfg.data_dir) if cfg.data_dir else None,
                            measure=MeasureConfig(repeat=0, budget=cfg.budget), jobs=cfg.jobs, executor=cfg.executor,
                            address=cfg.address, retries=cfg.retries, cell_timeout=cfg.cell_timeout),
                  progress=lambda m: say("    " + m))
        by_spec: dict[str, list[dict]] = {}
        for r in res.records:
            by_spec.setdefault(r.spec, []).append(r.to_dict())
        for cell in todo:
            coder = coders[id(cell)]
            fails = [f for f in res.failures if f.startswith((f"{coder.located_spec}: ", f"{coder.located_spec} on "))]
            recs = by_spec.get(coder.spec)
            if fails or not recs:
                cell.error = "; ".join(fails) or "no records"
            elif all(r["roundtrip_ok"] for r in recs):
                run_id = store.add_run(recs, command=f"compbench tradeoff cell {cell.spec}", environment=_environment())
                for r in recs:
                    r["run_id"] = run_id
                cached[coder.spec] = recs
            else:
                cell.error = "round trip FAILED: " + "; ".join(str(r["error"]) for r in recs if not r["roundtrip_ok"])
                cell.row = {"family": cell.family, "variant": cell.variant, "kind": cell.kind, "share": cell.share,
                            **_aggregate(recs, train_bytes), "note": cell.note}
    for cell in cells:
        hit = cached.get(coders[id(cell)].spec)
        if hit is not None and not cell.error:
            cell.row = {"family": cell.family, "variant": cell.variant, "kind": cell.kind,
                        "share": cell.share, **_aggregate(hit, train_bytes), "note": cell.note}
    return {id(c) for c in todo}


def _said(cell: Point, fresh: bool) -> str:
    return f"    {'measured' if fresh else 'from the store'}: " + (f"FAILED: {cell.error}" if cell.error else
        f"{cell.row['bpb']:.4f} bpb, artifact {cell.row['artifact_bytes']:,} bytes, coverage {cell.row['coverage']:.1%}")


def _train_small(cfg: TradeoffConfig, store_dir: Path, say) -> dict[str, list[str]]:
    """Small GRUs for the sweep, trained once on the corpus's train split and kept beside the store."""
    from compbench.train import TrainConfig, train
    from compbench.units import format_size

    paths = []
    for size in cfg.train_sizes:
        out = store_dir / "tradeoff-models" / f"{cfg.corpus}-gru-{format_size(size).replace(',', '')}"
        if not (out / "train.json").is_file():
            say(f"training a {format_size(size)} GRU on {cfg.corpus} [train] for {cfg.train_minutes:g} min -> {out}")
            train(TrainConfig(model="gru", budget=size, out=str(out), minutes=cfg.train_minutes, corpus=cfg.corpus,
                              data_dir=cfg.data_dir, eval_s=max(60.0, cfg.train_minutes * 20)),
                  say=lambda m, end="\n": say("  " + m.strip()) if m.strip() else None)
        else:
            say(f"reusing {out} (trained earlier)")
        paths.append(str(out))
    return {"gru": paths}


def run_tradeoff(cfg: TradeoffConfig, say: Callable[[str], None] = lambda m: None) -> list[dict]:
    from compbench.corpus import load_corpus
    from compbench.errors import CompbenchError
    from compbench.registry import expand, make_coder
    from compbench.store import Store

    bad = [k for k in cfg.kinds if k not in KINDS]
    if bad or not cfg.kinds:
        raise CompbenchError(f"--kinds takes context and/or paid, got {','.join(cfg.kinds) or 'nothing'}")
    if any(not 0 < s < 1 for s in cfg.shares):
        raise CompbenchError("--shares are fractions of the budget strictly between 0 and 1")
    if "context" in cfg.kinds and cfg.split == "all":
        raise CompbenchError("a context prefix stores train text: use --split test or val (or --kinds paid)")
    names = expand(cfg.coders)
    for name in names:  # every name must be a coder a prefix can prime: fail in a second, not an hour in
        make_coder(_prefix_spec(name, "context", None, cfg.store_coder))
    store = Store(cfg.store_path)
    corpus = load_corpus(cfg.corpus, cfg.split, Path(cfg.data_dir) if cfg.data_dir else None).head(cfg.max_bytes)
    if not corpus.n_bytes:
        raise CompbenchError(f"corpus {cfg.corpus!r} [{cfg.split}] is empty")
    data_dir = Path(cfg.data_dir) if cfg.data_dir else None
    train_bytes = len(load_corpus(cfg.corpus, "train", data_dir).joined()) if cfg.split != "all" else 0
    cached = _stored_cells(store, corpus.sha256, cfg.split, cfg.budget)
    trained = _train_small(cfg, store.path.parent, say) if cfg.train_minutes > 0 else {}
    cells: list[Point] = []
    for name in names:
        for variant, base, note in _variants(name, cfg, trained, say):
            cells.append(Point(name, variant, base, "alone", 0.0, spec=base, note=note))
    say(f"tradeoff: {cfg.corpus} [{cfg.split}] ({corpus.n_bytes:,} bytes), budget {cfg.budget:,} bytes, "
        f"{len(cells)} coder/model variant(s); results store {store.path}")
    t0, done = time.perf_counter(), []
    # Two waves. First every coder alone: its artifact size decides which shares are left for
    # stored text. Then every prefix cell. Serially, a share is skipped once a smaller share of the
    # same coder already stores everything (the same cell again). On an executor a wave runs at
    # once, so such cells are measured and then left out by the same rule: the rows are identical.
    fresh: set[int] = set()

    def visit(i: int, n: int, cell: Point) -> None:
        """Measure one point now (serially) or take its wave's result (on an executor); report it."""
        nonlocal fresh
        if cfg.parallel:
            say(f"[{i}/{n}] {cell.label}")
        else:
            say(f"[{i}/{n}] {cell.label} ({time.perf_counter() - t0:,.0f} s)")
            fresh = _measure([cell], cfg, store, cached, train_bytes, say)
        say(_said(cell, id(cell) in fresh))
        done.append(cell)

    if cfg.parallel:
        say(f"measuring {len(cells)} cell(s) at once ({cfg.executor}, jobs {cfg.jobs})")
        fresh = _measure(cells, cfg, store, cached, train_bytes, say)
    second: list[Point] = []
    for i, cell in enumerate(cells, 1):
        visit(i, len(cells), cell)
        if not cell.error:
            room = cfg.budget - cell.row["artifact_bytes"] - 64  # the prefix header, with slack
            if room <= 0:
                say("    its artifact alone is over the budget: no room for stored text")
                continue
            for kind in cfg.kinds:
                for share in [s for s in sorted(cfg.shares) if s * cfg.budget < room] + [None]:
                    second.append(Point(cell.family, cell.variant, cell.base, kind, share,
                                        spec=_prefix_spec(cell.base, kind, share, cfg.store_coder)))
    if cfg.parallel and second:
        say(f"measuring {len(second)} prefix cell(s) at once")
        fresh = _measure(second, cfg, store, cached, train_bytes, say)
    n = len(cells) + len(second)
    for i, cell in enumerate(second, len(cells) + 1):
        full = [c for c in done if (c.family, c.variant, c.kind) == (cell.family, cell.variant, cell.kind)
                and c.row and c.row["coverage"] >= 1.0]
        if full:  # a smaller share already stored all there is: same cell again
            say(f"[{i}/{n}] {cell.label}: skipped, {full[0].label} already stores all {full[0].row['stored_bytes']:,} bytes")
            continue
        visit(i, n, cell)
    rows = [c.row for c in done if c.row]
    failed = [f"{c.label}: {c.error}" for c in done if c.error]
    write_report(cfg, rows, failed, corpus.n_bytes, train_bytes)
    if failed:
        raise CompbenchError(f"{len(failed)} cell(s) failed (the report lists them): " + failed[0])
    return rows


# -- analysis ------------------------------------------------------------------------------------
def pareto(rows: list[dict]) -> list[dict]:
    """Rows no other row beats on both artifact bytes and bpb (lower is better for both)."""
    front, best = [], math.inf
    for r in sorted(rows, key=lambda r: (r["artifact_bytes"], r["bpb"])):
        if r["bpb"] < best:
            front.append(r)
            best = r["bpb"]
    return front


def _cross(curve: list[tuple[float, float]]) -> float | None:
    """The least coverage at which ``margin`` (fair bpb minus paid bpb) turns positive, linearly
    interpolated between measured points (coverage, margin); None if it never does."""
    prev = None
    for cov, margin in curve:
        if margin > 0:
            if prev is None:
                return cov
            c0, m0 = prev
            return c0 + (cov - c0) * (-m0) / (margin - m0)
        prev = (cov, margin)
    return None


def crossover(rows: list[dict], family: str) -> list[dict]:
    """Per model variant of ``family``: where its paid prefix starts to win, two ways.

    * ``same_bytes``: the least coverage at which the paid cell scores below every cell of the same
      coder without evaluation data (context prefix, bigger model or dictionary) that uses no more
      artifact bytes: spending the bytes on stored evaluation text beats spending them fairly.
    * ``best_fair``: the least coverage at which it scores below the best such cell within the
      budget, whatever its size (parameter golf's question: does the prefix beat the best
      model-only entry?).

    The variant alone is the curve's point at coverage 0; between measured cells the crossing is
    linearly interpolated (the law says bpb falls linearly with coverage)."""
    fair = [r for r in rows if r["family"] == family and not r["stores_eval_data"]]
    out = []
    if not fair:
        return out
    best = min(fair, key=lambda r: r["bpb"])

    def fair_at(art: int) -> float:  # the best fair score with no more artifact bytes
        return min((r["bpb"] for r in fair if r["artifact_bytes"] <= art), default=math.inf)

    for var in dict.fromkeys(r["variant"] for r in rows if r["family"] == family):
        mine = [r for r in rows if r["family"] == family and r["variant"] == var]
        curve = sorted((r for r in mine if r["kind"] in ("alone", "paid")), key=lambda r: r["coverage"])
        if not any(r["stores_eval_data"] for r in curve):
            continue
        out.append({
            "variant": var,
            "same_bytes": _cross([(r["coverage"], fair_at(r["artifact_bytes"]) - r["bpb"]) for r in curve]),
            "best_fair": _cross([(r["coverage"], best["bpb"] - r["bpb"]) for r in curve]),
            "best_fair_bpb": best["bpb"], "best_fair_spec": best["spec"],
            "measured_up_to": max(r["coverage"] for r in curve),
        })
    return out


# -- the report ----------------------------------------------------------------------------------
def write_report(cfg: TradeoffConfig, rows: list[dict], failed: list[str], n_bytes: int, train_bytes: int) -> Path:
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    cols = ["family", "variant", "kind", "share", "spec", "artifact_bytes", "stored_bytes", "coverage", "n_bytes",
            "payload_bytes", "bpb", "bpb_total", "bpb_model", "stores_eval_data", "fits_budget", "encode_s",
            "decode_s", "roundtrip_ok", "run_id"]
    with open(out / "tradeoff.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    config = {**asdict(cfg), "out": str(out)}
    (out / "tradeoff.json").write_text(json.dumps({
        "config": config, "n_bytes": n_bytes, "train_bytes": train_bytes, "rows": rows, "failed": failed,
        "pareto": [r["spec"] for r in pareto(rows)],
        "crossover": {f: crossover(rows, f) for f in dict.fromkeys(r["family"] for r in rows)},
    }, indent=2) + "\n")
    if rows:
        _plots(rows, out, cfg, n_bytes)
    (out / "report.md").write_text(_markdown(rows, failed, cfg, n_bytes, train_bytes))
    return out


def _law(rows: list[dict], r: dict) -> float | None:
    """model_bpb × (1 − coverage), model_bpb being the same coder and variant alone."""
    alone = [a for a in rows if a["family"] == r["family"] and a["variant"] == r["variant"] and a["kind"] == "alone"]
    return alone[0]["bpb"] * (1 - r["coverage"]) if alone else None


def _series(rows: list[dict]):
    for fam in dict.fromkeys(r["family"] for r in rows):
        for var in dict.fromkeys(r["variant"] for r in rows if r["family"] == fam):
            yield fam, var, [r for r in rows if r["family"] == fam and r["variant"] == var]


def _plots(rows: list[dict], out: Path, cfg: TradeoffConfig, n_bytes: int) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    title = f"{cfg.corpus} [{cfg.split}], {n_bytes:,} bytes, budget {cfg.budget:,} bytes"
    colors = {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for fam, var, _ in _series(rows):
        colors[(fam, var)] = cycle[len(colors) % len(cycle)]
    label = lambda fam, var: fam if var == "-" else f"{fam} ({var})"  # noqa: E731
    marks = {"alone": "s", "context": "o", "paid": "^"}

    # 1. Pareto front: artifact bytes against bpb, every cell.
    fig, ax = plt.subplots(figsize=(10.5, 5), dpi=120)
    for fam, var, mine in _series(rows):
        for kind in ("alone", "context", "paid"):
            pts = [r for r in mine if r["kind"] == kind]
            if pts:
                ax.scatter([r["artifact_bytes"] / 1e3 for r in pts], [r["bpb"] for r in pts], color=colors[(fam, var)],
                           marker=marks[kind], facecolors="none" if kind == "paid" else colors[(fam, var)], s=36)
    for paid_ok, style, name in ((False, "-", "front without evaluation data"), (True, ":", "front with paid prefixes")):
        front = pareto([r for r in rows if paid_ok or not r["stores_eval_data"]])
        ax.step([r["artifact_bytes"] / 1e3 for r in front], [r["bpb"] for r in front], where="post", color="black",
                linestyle=style, linewidth=1, label=name)
    for (fam, var), c in colors.items():
        ax.scatter([], [], color=c, marker="s", label=label(fam, var))
    for kind, m in marks.items():
        ax.scatter([], [], color="gray", marker=m, facecolors="none" if kind == "paid" else "gray",
                   label={"alone": "coder alone", "context": "context prefix (train text)",
                          "paid": "paid prefix (evaluated text, flagged)"}[kind])
    ax.axvline(cfg.budget / 1e3, color="red", linewidth=0.8, alpha=0.6, label="the budget")
    ax.set_xlabel("artifact bytes (thousands): model, dictionary, stored text")
    ax.set_ylabel("bpb (payload bits over evaluated bytes)")
    ax.set_title(f"Artifact bytes against bpb: {title}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # outside: no point hidden
    fig.tight_layout()
    fig.savefig(out / "pareto.png")
    plt.close(fig)

    # 2. bpb against paid-prefix coverage, with the law's line.
    fig, ax = plt.subplots(figsize=(10.5, 5), dpi=120)
    for fam, var, mine in _series(rows):
        pts = sorted((r for r in mine if r["kind"] in ("alone", "paid")), key=lambda r: r["coverage"])
        if len(pts) < 2:
            continue
        c = colors[(fam, var)]
        ax.plot([100 * r["coverage"] for r in pts], [r["bpb"] for r in pts], marker="^", color=c, label=label(fam, var))
        alone = [r for r in pts if r["kind"] == "alone"]
        if alone:
            xs = [0, 100 * max(r["coverage"] for r in pts)]
            ax.plot(xs, [alone[0]["bpb"] * (1 - x / 100) for x in xs], linestyle="--", color=c, alpha=0.6, linewidth=1)
    ax.plot([], [], linestyle="--", color="gray", label="law: model_bpb × (1 − coverage)")
    ax.set_xlabel("paid-prefix coverage (% of the evaluated bytes stored in the artifact)")
    ax.set_ylabel("bpb (competition score: stored bytes free)")
    ax.set_title(f"Paid prefix against the law: {title}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(out / "coverage.png")
    plt.close(fig)

    # 3. For each coder, bpb against the share of the budget given to stored text.
    fams = list(dict.fromkeys(r["family"] for r in rows))
    cols = min(3, len(fams))
    rws = -(-len(fams) // cols)
    fig, axes = plt.subplots(rws, cols, figsize=(4.2 * cols, 3.4 * rws), dpi=120, squeeze=False)
    for ax, fam in zip(axes.flat, fams):
        for f2, var, mine in _series(rows):
            if f2 != fam:
                continue
            alone = [r for r in mine if r["kind"] == "alone"]
            inner = alone[0]["artifact_bytes"] if alone else 0
            for kind, style in (("context", "-"), ("paid", ":")):
                pts = sorted(alone + [r for r in mine if r["kind"] == kind], key=lambda r: r["artifact_bytes"])
                if len(pts) > 1:
                    ax.plot([100 * (r["artifact_bytes"] - inner) / cfg.budget for r in pts], [r["bpb"] for r in pts],
                            linestyle=style, marker=marks[kind], color=colors[(fam, var)],
                            label=f"{var if var != '-' else fam}, {kind}", markersize=4)
        ax.set_title(fam, fontsize=9)
        ax.set_xlabel("stored text, % of the budget", fontsize=8)
        ax.set_ylabel("bpb", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(fams):]:
        ax.set_visible(False)
    fig.suptitle(f"How the budget is split: {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "split.png")
    plt.close(fig)


def _fmt_row(r: dict, rows: list[dict]) -> str:
    law = _law(rows, r) if r["stores_eval_data"] else None
    share = "-" if r["kind"] == "alone" else ("max" if r["share"] is None else f"{r['share']:g}")
    flag = "STORED" if r["stores_eval_data"] else ""
    return (f"| {r['family']} | {r['variant']} | {r['kind']} | {share} | {r['artifact_bytes']:,} | {r['stored_bytes']:,} | "
            f"{r['coverage']:.1%} | **{r['bpb']:.4f}** | {r['bpb_total']:.4f} | "
            f"{'' if law is None else f'{law:.4f}'} | {flag} |")


def _markdown(rows: list[dict], failed: list[str], cfg: TradeoffConfig, n_bytes: int, train_bytes: int) -> str:
    from compbench.units import format_size

    d = TradeoffConfig()
    size = lambda n: format_size(n).replace(",", "")  # noqa: E731
    cmd = " ".join(
        [f"compbench tradeoff --budget {size(cfg.budget)} --corpus {cfg.corpus} --split {cfg.split} --coders {cfg.coders}"]
        + ([f"--kinds {','.join(cfg.kinds)}"] if cfg.kinds != d.kinds else [])
        + ([f"--shares {','.join(f'{x:g}' for x in cfg.shares)}"] if cfg.shares != d.shares else [])
        + ([f"--store-coder {cfg.store_coder}"] if cfg.store_coder != d.store_coder else [])
        + ([f"--models {','.join(cfg.models)}"] if cfg.models else [])
        + ([f"--train-minutes {cfg.train_minutes:g} --train-sizes {','.join(size(x) for x in cfg.train_sizes)}"]
           if cfg.train_minutes else [])
        + ([f"--bytes {size(cfg.max_bytes)}"] if cfg.max_bytes else []))
    first = f", first {n_bytes:,} bytes" if cfg.max_bytes else ""
    lines = [f"# Budget tradeoff: {cfg.corpus} [{cfg.split}]{first}, budget {cfg.budget:,} bytes", "",
             f"Command: `{cmd}`" + (f" (kinds {','.join(cfg.kinds)}, shares {','.join(map(str, cfg.shares))}, "
                                    f"stored text compressed by `{cfg.store_coder}`)"), "",
             f"{n_bytes:,} evaluated bytes; {train_bytes:,} train bytes available to a context prefix. Every cell "
             "is a payload that decoded byte for byte with a decoder rebuilt from the artifact alone. "
             "`bpb` is the competition score (payload bits over all evaluated bytes; the artifact only has to fit "
             "the budget); `bpb_total` adds the artifact. Rows marked STORED keep part of the evaluated data in "
             "their artifact (a paid prefix): their `bpb` counts those bytes as free.", ""]
    if not rows:
        return "\n".join(lines + ["No cell was measured."] + [f"- FAILED {f}" for f in failed]) + "\n"
    notes = [r for r in rows if r["kind"] == "alone" and r.get("note")]
    if notes:
        lines += ["Models swept:", ""] + [f"- {r['family']} `{r['variant']}` ({r['artifact_bytes']:,} bytes): {r['note']}"
                                           for r in notes] + [""]
    lines += ["## Best split per coder", "",
              "| coder | best without evaluation data | bpb | best with a paid prefix (STORED) | bpb |", "|---|---|---:|---|---:|"]
    for fam in dict.fromkeys(r["family"] for r in rows):
        fair = min((r for r in rows if r["family"] == fam and not r["stores_eval_data"]), key=lambda r: r["bpb"], default=None)
        paid = min((r for r in rows if r["family"] == fam and r["stores_eval_data"]), key=lambda r: r["bpb"], default=None)

        def what(r):
            if r is None:
                return "-", "-"
            if r["kind"] == "alone":
                return f"{r['variant'] if r['variant'] != '-' else fam} alone ({r['artifact_bytes']:,} B)", f"{r['bpb']:.4f}"
            return (f"{r['variant'] if r['variant'] != '-' else fam} + {r['kind']} prefix, {r['stored_bytes']:,} bytes stored "
                    f"(artifact {100 * r['artifact_bytes'] / cfg.budget:.0f}% of the budget, coverage {r['coverage']:.1%})",
                    f"{r['bpb']:.4f}")
        a, b = what(fair), what(paid)
        lines.append(f"| {fam} | {a[0]} | {a[1]} | {b[0]} | {b[1]} |")
    lines += ["", "## The paid-prefix law and the crossover", "",
              "Law (parameter golf): `bpb ≈ model_bpb × (1 − coverage)`, `model_bpb` being the same coder and model "
              "alone; the deviation is measured `bpb` over the law's, per paid cell.", "",
              "Crossover, per model: the coverage past which its paid prefix scores below (a) every cell of the same "
              "coder without evaluation data that uses no more artifact bytes (a context prefix, a bigger model or "
              "dictionary: the same bytes spent fairly), and (b) the best such cell within the budget, whatever its "
              "size. The model alone is the point at coverage 0; crossings are interpolated linearly between "
              "measured cells.", "",
              "| coder | model | paid cells | deviation from the law | (a) same bytes | (b) best fair within budget |",
              "|---|---|---:|---|---:|---|"]
    for fam in dict.fromkeys(r["family"] for r in rows):
        for x in crossover(rows, fam):
            paid = [r for r in rows if r["family"] == fam and r["variant"] == x["variant"] and r["stores_eval_data"]]
            devs = [r["bpb"] / law - 1 for r in paid if (law := _law(rows, r)) and r["coverage"] < 0.95]
            dev = f"{min(devs):+.1%} to {max(devs):+.1%}" if devs else "-"
            pct = lambda c: "none measured" if c is None else ("0% (wins at once)" if c == 0 else f"{c:.1%}")  # noqa: E731
            lines.append(f"| {fam} | {x['variant']} | {len(paid)} | {dev} | {pct(x['same_bytes'])} | "
                         f"{pct(x['best_fair'])} (below {x['best_fair_bpb']:.4f}) |")
    lines += ["", "![pareto](pareto.png)", "", "![coverage](coverage.png)", "", "![split](split.png)", "",
              "## Every cell", "",
              "| coder | model | kind | share | artifact bytes | stored bytes | coverage | bpb | bpb_total | law | eval data |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    lines += [_fmt_row(r, rows) for r in rows]
    if failed:
        lines += ["", "## Failed cells", ""] + [f"- {f}" for f in failed]
    lines += ["", "Data: `tradeoff.csv`, `tradeoff.json` (the plots are drawn from these rows). Coverage is stored "
              "text over evaluated bytes (paid) or over train bytes (context). Specs and run ids are in the JSON; "
              "`compbench leaderboard --run RUN --format json` gives each cell's full record.", ""]
    return "\n".join(lines)


__all__ = ["TradeoffConfig", "run_tradeoff", "write_report", "pareto", "crossover"]
