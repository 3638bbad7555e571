"""``compbench tradeoff``: every cell is a stored round trip, an interrupted sweep resumes without
redoing finished cells, the report folder holds the tables, plots and the data behind them, paid
rows are flagged, and the analysis (Pareto front, crossover) is right on rows made by hand."""

import csv
import json
import random

import pytest
from click.testing import CliRunner

from compbench.cli import cli
from compbench.errors import CompbenchError
from compbench.reports.tradeoff import TradeoffConfig, crossover, pareto, run_tradeoff
from compbench.store import Store


@pytest.fixture
def corpus(tmp_path):
    rng = random.Random(4)
    words = [bytes(rng.choice(b"etaoinshrdlucmfw") for _ in range(rng.randint(3, 9))) for _ in range(400)]
    (tmp_path / "c.txt").write_bytes(b" ".join(rng.choice(words) for _ in range(16_000)))
    return str(tmp_path / "c.txt")


def _cfg(tmp_path, corpus, **kw):
    return TradeoffConfig(**{"budget": 30_000, "corpus": corpus, "coders": "zlib,ppmd:order=4:mem_mib=16",
                             "shares": (0.1, 0.5), "store_coder": "zlib", "out": str(tmp_path / "rep"),
                             "store_path": str(tmp_path / "s.sqlite"), **kw})


class Stop(Exception):
    pass


def test_an_interrupted_sweep_resumes_without_redoing_finished_cells(tmp_path, corpus):
    cfg = _cfg(tmp_path, corpus)
    started = []

    def interrupt_at_the_sixth_cell(msg):
        if msg.startswith("["):
            started.append(msg)
            if len(started) == 6:
                raise Stop  # as Ctrl-C would, in the middle of the sweep

    with pytest.raises(Stop):
        run_tradeoff(cfg, say=interrupt_at_the_sixth_cell)
    store = Store(cfg.store_path)
    assert len(store.runs()) == 5  # one run per finished cell

    lines = []
    rows = run_tradeoff(cfg, say=lines.append)
    assert sum("from the store" in m for m in lines) == 5
    measured = sum(m.strip().startswith("measured") for m in lines)
    assert len(store.runs()) == 5 + measured  # nothing measured twice
    assert len(rows) == 5 + measured and all(r["roundtrip_ok"] for r in rows)

    # A third run measures nothing and writes the same rows.
    again = []
    assert run_tradeoff(cfg, say=again.append) == rows
    assert not any(m.strip().startswith("measured") for m in again)


def test_the_report_folder_holds_tables_plots_and_the_data_with_paid_rows_flagged(tmp_path, corpus):
    cfg = _cfg(tmp_path, corpus)
    rows = run_tradeoff(cfg)
    out = tmp_path / "rep"
    for name in ("report.md", "pareto.png", "coverage.png", "split.png", "tradeoff.csv", "tradeoff.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    kinds = {r["kind"] for r in rows}
    assert kinds == {"alone", "context", "paid"}
    with open(out / "tradeoff.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(rows)
    assert all((t["stores_eval_data"] == "True") == (t["kind"] == "paid") for t in table)
    data = json.loads((out / "tradeoff.json").read_text())
    assert data["n_bytes"] == rows[0]["n_bytes"] and set(data["crossover"]) == {"zlib", "ppmd:order=4:mem_mib=16"}
    assert all(len(v) == 1 for v in data["crossover"].values())
    md = (out / "report.md").read_text()
    assert md.count("| STORED |") == sum(r["kind"] == "paid" for r in rows)
    # every stored cell fits the budget, and the stored share never exceeds its cell's share
    for r in rows:
        assert r["fits_budget"] and r["artifact_bytes"] <= cfg.budget
        if r["share"]:
            assert r["artifact_bytes"] <= r["share"] * cfg.budget + 64


def test_cells_that_would_store_nothing_new_are_skipped(tmp_path, corpus):
    """A paid prefix that already covers every evaluated byte at a small share is not re-measured at
    a larger one (it would be the same cell)."""
    lines = []
    rows = run_tradeoff(_cfg(tmp_path, corpus, coders="zlib", kinds=("paid",), shares=(0.5, 0.9), budget=200_000),
                        say=lines.append)
    assert [r["coverage"] for r in rows if r["kind"] == "paid"] == [1.0]
    assert sum("skipped" in m for m in lines) == 2


@pytest.mark.parametrize("kw,message", [
    ({"kinds": ("bogus",)}, "--kinds takes context and/or paid"),
    ({"shares": (1.5,)}, "strictly between 0 and 1"),
    ({"split": "all"}, "context prefix stores train text"),
    ({"coders": "lzma"}, "cannot be primed"),
])
def test_what_cannot_be_swept_is_refused_before_any_work(tmp_path, corpus, kw, message):
    with pytest.raises(CompbenchError, match=message):
        run_tradeoff(_cfg(tmp_path, corpus, **kw))
    assert not (tmp_path / "s.sqlite").exists()


def test_the_cli_writes_the_report_and_errors_are_one_line(tmp_path, corpus):
    runner = CliRunner()
    args = ["tradeoff", "--budget", "30KB", "--corpus", corpus, "--coders", "zlib", "--shares", "0.2",
            "--store-coder", "zlib", "--out", str(tmp_path / "r"), "--store", str(tmp_path / "s.sqlite")]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "# Budget tradeoff" in res.output and (tmp_path / "r" / "split.png").is_file()
    bad = runner.invoke(cli, args[:-4] + ["--kinds", "context,nope"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def _row(family, kind, art, bpb, coverage=0.0):
    return {"family": family, "variant": "-", "kind": kind, "artifact_bytes": art, "bpb": bpb,
            "coverage": coverage, "stores_eval_data": kind == "paid", "spec": f"{family}-{kind}-{art}"}


def test_the_pareto_front_keeps_only_rows_nothing_beats_on_both_axes():
    rows = [_row("a", "alone", 0, 2.0), _row("a", "context", 10, 1.9), _row("a", "context", 20, 1.95),
            _row("b", "alone", 5, 2.5), _row("b", "context", 30, 1.5)]
    assert [r["spec"] for r in pareto(rows)] == ["a-alone-0", "a-context-10", "b-context-30"]


def test_the_crossover_is_where_paid_starts_to_beat_fair_cells_interpolated_from_the_coder_alone():
    rows = [_row("a", "alone", 0, 2.0), _row("a", "context", 100, 1.8), _row("a", "context", 300, 1.7),
            _row("a", "paid", 100, 1.9, 0.05), _row("a", "paid", 300, 1.5, 0.2)]
    (x,) = crossover(rows, "a")
    # same bytes: margins 0 (alone), -0.1 at 5%, +0.2 at 20%: crossing at 5% + 15% * 1/3 = 10%
    assert x["same_bytes"] == pytest.approx(0.10)
    # best fair (1.7): margins -0.3, -0.2, +0.2: crossing at 5% + 15% * 0.2/0.4 = 12.5%
    assert x["best_fair"] == pytest.approx(0.125) and x["best_fair_bpb"] == 1.7
    assert crossover(rows[:3], "a") == []  # no paid cells: no crossover to state
    never = rows[:3] + [_row("a", "paid", 100, 1.95, 0.05)]
    assert crossover(never, "a")[0]["best_fair"] is None


def test_bytes_evaluates_the_head_of_the_split_and_is_a_different_corpus_to_the_cache(tmp_path, corpus):
    """--bytes N: slow coders can be swept on the first N evaluated bytes; the cells are kept apart
    from full-split cells (another corpus sha256), and train text is not cut."""
    full = run_tradeoff(_cfg(tmp_path, corpus, coders="zlib", kinds=("context",), shares=(0.1,)))
    lines = []
    head = run_tradeoff(_cfg(tmp_path, corpus, coders="zlib", kinds=("context",), shares=(0.1,), max_bytes=5000),
                        say=lines.append)
    assert {r["n_bytes"] for r in head} == {5000} and {r["n_bytes"] for r in full} != {5000}
    assert not any("from the store" in m for m in lines)
    assert [r["stored_bytes"] for r in head] == [r["stored_bytes"] for r in full]  # same train text stored
    res = CliRunner().invoke(cli, ["run", "--coders", "zlib", "--corpus", corpus, "--bytes", "3KB", "--no-store",
                                   "--format", "json", "-q"])
    assert res.exit_code == 0 and json.loads(res.output)[0]["n_bytes"] == 3000


def test_neural_coders_are_swept_over_shipped_user_and_quickly_trained_models(tmp_path, corpus, tiny_models):
    """Model sizes come from three places: shipped models (all of them, as none was trained on this
    corpus), --models paths, and --train-minutes (trained once, kept beside the store, reused)."""
    path, _ = tiny_models["gru"]
    cfg = _cfg(tmp_path, corpus, coders="gru:streams=8", kinds=("paid",), shares=(0.5,), max_bytes=2000,
               models=(str(path),), train_minutes=0.02, train_sizes=(56_000,), budget=1_000_000)
    lines = []
    rows = run_tradeoff(cfg, say=lines.append)
    alone = {r["variant"]: r for r in rows if r["kind"] == "alone"}
    shipped = {"shipped enwik8", "shipped sagas", "shipped dickens", "shipped ptb", "shipped ptb-small"}
    assert shipped | {path.stem} <= set(alone) and len(alone) == 7
    # 56 KB: the smallest GRU (hidden 8) is bounded at about 49 KB, 36 KB of it decoder code
    trained = [v for v in alone if v.endswith("gru-56KB")]
    assert trained and alone[trained[0]]["artifact_bytes"] <= 56_000
    assert len({r["artifact_bytes"] for r in alone.values()}) == 7  # seven different models, not one default
    assert all(r["roundtrip_ok"] for r in rows) and any(r["kind"] == "paid" for r in rows)
    again = []
    run_tradeoff(cfg, say=again.append)
    assert any(m.startswith("reusing") for m in again) and not any(m.startswith("training") for m in again)
