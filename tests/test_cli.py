"""The CLI through click's CliRunner: run, json records, encode/decode, listings, leaderboard, compare,
and one-line errors (never a traceback) for bad input."""

import json
import lzma
from pathlib import Path

import pytest
from click.testing import CliRunner

from compbench.cli import cli
from compbench.corpus import load_corpus
from compbench.payload import overhead

FIELDS = {"coder", "corpus", "n_bytes", "payload_bytes", "artifact_bytes", "bpb", "bpb_model", "bpb_total",
          "encode_cpu_s", "encode_wall_s", "decode_cpu_s", "decode_wall_s", "encode_mb_s", "decode_mb_s",
          "encode_peak_mem_bytes", "decode_peak_mem_bytes", "roundtrip_ok", "corpus_sha256"}


def invoke(*args, **kw):
    """click >= 8.2 keeps stdout and stderr apart in results, so tests can check both."""
    return CliRunner().invoke(cli, list(args), **kw)


@pytest.fixture
def corpus_dir(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "a.txt").write_bytes(b"the cat sat on the mat. " * 400)
    (d / "b.bin").write_bytes(bytes(range(256)) * 8)
    return d


def test_run_prints_table_and_stores_the_run(corpus_dir, tmp_path):
    store = tmp_path / "r.sqlite"
    res = invoke("run", "--coders", "identity,zstd:level=3", "--corpus", str(corpus_dir), "--repeat", "1",
                 "--store", str(store))
    assert res.exit_code == 0, res.output + res.stderr
    assert "| coder" in res.stdout and "zstd:level=3" in res.stdout and "identity" in res.stdout
    assert "stored as run 1" in res.stderr
    lb = invoke("leaderboard", "--store", str(store), "--format", "csv")
    assert lb.exit_code == 0 and lb.stdout.splitlines()[0].startswith("rank,label,corpus")
    assert len(lb.stdout.splitlines()) == 3


def test_leaderboard_ranks_by_the_chosen_key(corpus_dir, tmp_path):
    store = str(tmp_path / "r.sqlite")
    invoke("run", "--coders", "identity,lzma", "--corpus", str(corpus_dir), "--repeat", "1", "--store", store, "-q")
    by_bpb = invoke("leaderboard", "--store", store, "--format", "csv").stdout.splitlines()
    assert [line.split(",")[1] for line in by_bpb[1:]] == ["lzma", "identity"]
    by_speed = invoke("leaderboard", "--store", store, "--format", "csv", "--sort", "encode_mb_s").stdout.splitlines()
    assert [line.split(",")[1] for line in by_speed[1:]] == ["identity", "lzma"]
    assert [line.split(",")[0] for line in by_speed[1:]] == ["1", "2"]


def test_run_json_records_carry_the_documented_fields(corpus_dir):
    res = invoke("run", "--coders", "zlib,bz2", "--corpus", str(corpus_dir), "--repeat", "1", "--format", "json", "-q")
    assert res.exit_code == 0
    records = json.loads(res.stdout)
    assert len(records) == 4  # 2 coders x 2 files
    assert all(FIELDS <= set(r) for r in records)
    assert all(r["roundtrip_ok"] for r in records)


def test_canterbury_json_roundtrips_every_file_and_lzma_matches_python(data_path):
    res = invoke("run", "--coders", "classical", "--corpus", "canterbury", "--format", "json", "--repeat", "1",
                 "--data-dir", str(data_path), "-q")
    assert res.exit_code == 0, res.stderr
    records = json.loads(res.stdout)
    assert len(records) == 6 * 11 and all(r["roundtrip_ok"] for r in records)
    files = {m.name: m.data for m in load_corpus("canterbury", data_dir=data_path).members}
    for r in (r for r in records if r["coder"] == "lzma"):
        data = files[r["file"]]
        body = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
        assert r["payload_bytes"] == len(body) + overhead("lzma", len(data), body_lengths=[len(body)])


def test_encode_decode_is_a_real_file_compressor(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"compress me, please " * 1000)
    packed, out = tmp_path / "in.cb", tmp_path / "out.txt"
    res = invoke("encode", "--coder", "ppmd:order=6", str(src), str(packed))
    assert res.exit_code == 0 and packed.stat().st_size < 1000
    res = invoke("decode", str(packed), str(out))
    assert res.exit_code == 0 and out.read_bytes() == src.read_bytes()
    res = invoke("decode", str(packed), str(out))
    assert res.exit_code == 1 and "exists; pass --force" in res.stderr
    info = invoke("inspect", str(packed))
    assert "ppmd:order=6" in info.stdout and "20,000" in info.stdout


def test_encode_with_trained_dictionary_and_decode_from_the_store_or_file(tmp_path):
    train, src = tmp_path / "train.txt", tmp_path / "in.txt"
    train.write_bytes(b"dictionary training text with words and more words " * 300)
    src.write_bytes(b"words and more words with dictionary text")
    store = tmp_path / "s" / "r.sqlite"
    art = tmp_path / "dict.bin"
    res = invoke("encode", "--coder", "zstd:dict_size=1024:dict_type=raw", "--train", str(train),
                 "--artifact-out", str(art), "--store", str(store), str(src), str(tmp_path / "p.cb"))
    assert res.exit_code == 0, res.stderr
    assert invoke("decode", "--store", str(store), str(tmp_path / "p.cb"), str(tmp_path / "o1")).exit_code == 0
    assert (tmp_path / "o1").read_bytes() == src.read_bytes()
    res = invoke("decode", "--store", str(tmp_path / "empty.sqlite"), str(tmp_path / "p.cb"), str(tmp_path / "o2"))
    assert res.exit_code == 1 and "needs artifact" in res.stderr
    res = invoke("decode", "--artifact", str(art), "--store", str(tmp_path / "e.sqlite"), str(tmp_path / "p.cb"), str(tmp_path / "o3"))
    assert res.exit_code == 0 and (tmp_path / "o3").read_bytes() == src.read_bytes()


def test_bad_input_gives_one_line_errors_not_tracebacks(tmp_path, corpus_dir):
    junk = tmp_path / "junk.cb"
    junk.write_bytes(b"definitely not a payload")
    out = tmp_path / "out"
    out.write_bytes(b"precious")
    cases = [
        (("decode", str(junk), str(tmp_path / "x")), "not a compbench payload"),
        (("decode", "--force", str(junk), str(out)), "not a compbench payload"),
        (("run", "--coders", "nosuch", "--corpus", str(corpus_dir)), "unknown coder 'nosuch'"),
        (("run", "--coders", "zstd:level=99", "--corpus", str(corpus_dir)), "out of range"),
        (("run", "--corpus", "no/such/path"), "unknown corpus"),
        (("run", "--coders", "zstd:dict_size=1000", "--corpus", str(corpus_dir)), "--split test"),
        (("encode", "--coder", "zstd:dict_size=100", str(junk), str(tmp_path / "y")), "--train"),
        (("leaderboard", "--store", str(tmp_path / "none.sqlite")), "no results store"),
        (("compare", "1", "2", "--store", str(tmp_path / "none.sqlite")), "no results store"),
    ]
    for args, message in cases:
        res = invoke(*args)
        assert res.exit_code != 0, args
        assert message in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr + res.stdout
    assert out.read_bytes() == b"precious"  # a failed decode never clobbers OUT


def test_a_misspelt_int8_route_setting_is_a_one_line_error_and_writes_nothing(tmp_path):
    src, out = tmp_path / "in.txt", tmp_path / "out.cbp"
    src.write_bytes(b"hello world " * 50)
    res = invoke("encode", "--coder", "gru", str(src), str(out), env={"COMPBENCH_INT8_ROUTE": "amx"})
    assert res.exit_code == 1 and "COMPBENCH_INT8_ROUTE must be one of int_mm, matmul, not 'amx'" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout and not out.exists()


def test_corrupted_payload_file_is_refused(tmp_path):
    src = tmp_path / "in"
    src.write_bytes(b"abc" * 1000)
    invoke("encode", "--coder", "lzma", str(src), str(tmp_path / "p"))
    payload = bytearray((tmp_path / "p").read_bytes())
    payload[-20] ^= 0x40
    (tmp_path / "p").write_bytes(bytes(payload))
    res = invoke("decode", str(tmp_path / "p"), str(tmp_path / "o"))
    assert res.exit_code == 1 and "corrupted" in res.stderr and not (tmp_path / "o").exists()


def test_listings(tmp_path):
    res = invoke("coders")
    assert res.exit_code == 0
    for name in ("identity", "zlib", "bz2", "lzma", "zstd", "brotli", "ppmd", "external"):
        assert f"| {name}" in res.stdout
    res = invoke("coders", "--format", "json")
    assert {r["coder"] for r in json.loads(res.stdout)} >= {"zstd", "ppmd"}
    res = invoke("corpora", "--data-dir", str(tmp_path))
    assert res.exit_code == 0 and "pystdlib" in res.stdout and "enwik8" in res.stdout
    assert "--coders" in invoke("run", "--help").stdout


def test_compare_shows_changes_and_can_gate(corpus_dir, tmp_path):
    store = str(tmp_path / "r.sqlite")
    for _ in range(2):  # runs 1 and 2: same coder, same bytes
        invoke("run", "--coders", "zlib", "--corpus", str(corpus_dir), "--repeat", "1", "--store", store, "-q")
    # run 3: the same coder on less compressible bytes
    (corpus_dir / "a.txt").write_bytes(b"completely different, less compressible text 12345 " * 50)
    invoke("run", "--coders", "zlib", "--corpus", str(corpus_dir), "--repeat", "1", "--store", store, "-q")
    res = invoke("compare", "1", "latest", "--store", store)
    # The bytes changed, so the rows compare different inputs: compare says so instead of "worse".
    assert res.exit_code == 0 and "corpus changed" in res.stdout and "corpus bytes differ" in res.stderr
    res = invoke("compare", "1", "latest", "--store", store, "--fail-above", "1")
    assert res.exit_code == 1 and "worse by more than 1.0%" in res.stderr
    assert invoke("compare", "1", "2", "--store", store, "--fail-above", "1").exit_code == 0
    assert "run" in invoke("runs", "--store", store).stdout


def test_train_explains_bad_invocations(tmp_path):
    res = invoke("train", "--model", "gru", "--corpus", "pystdlib", "--out", str(tmp_path / "m"))
    assert res.exit_code != 0 and "--minutes" in res.output
    res = invoke("train", "--model", "gru", "--corpus", "pystdlib", "--steps", "1", "--budget", "lots", "--out", str(tmp_path / "m"))
    assert res.exit_code == 1 and "Error: cannot read size 'lots'" in res.output
    res = invoke("train", "--model", "gru", "--corpus", "pystdlib", "--steps", "1", "--budget", "10KB", "--out", str(tmp_path / "m"))
    assert res.exit_code == 1 and "no gru fits a 10,000-byte budget" in res.output
    res = invoke("train", "--model", "gru", "--corpus", "pystdlib", "--steps", "1", "--set", "hidden", "--out", str(tmp_path / "m"))
    assert res.exit_code == 1 and "FIELD=INTEGER" in res.output
    res = invoke("train", "--model", "gru", "--corpus", "pystdlib", "--steps", "1", "--set", "hidden=256,x", "--out", str(tmp_path / "m"))
    assert res.exit_code == 1 and "FIELD=INTEGER[,INTEGER...]" in res.output  # a grid's values, too
    res = invoke("train", "--model", "gru", "--corpus", "pystdlib", "--steps", "1", "--dropout", "1", "--out", str(tmp_path / "m"))
    assert res.exit_code == 2 and "--dropout" in res.output and "Traceback" not in res.output


def test_coders_lists_the_neural_family():
    res = invoke("coders")
    assert res.exit_code == 0
    assert any("gru" in line and "neural" in line for line in res.output.splitlines())
    assert any("transformer" in line and "neural" in line for line in res.output.splitlines())


LEAN = r"""
import sys
from click.testing import CliRunner
from compbench.cli import cli
runner = CliRunner()
for args in {args!r}:
    res = runner.invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, (args, res.output)
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


@pytest.mark.parametrize("args", [
    [["--help"]],
    [["coders"], ["coders", "--format", "json"]],
    [["corpora"]],
    [["run", "--coders", "classical,identity", "--repeat", "1", "--no-store", "-q"]],
])
def test_commands_that_need_no_model_never_import_torch(args, tmp_path):
    """Lean start: listing coders or running classical ones must not pay torch's import (1.7 s)."""
    import subprocess
    import sys

    src = tmp_path / "in.txt"
    src.write_bytes(b"lean start " * 500)
    args = [*args, ["encode", "--coder", "zstd", str(src), str(tmp_path / "p.cb")],
            ["decode", str(tmp_path / "p.cb"), str(tmp_path / "out.txt")]]
    proc = subprocess.run([sys.executable, "-c", LEAN.format(args=args)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", f"torch was imported: {proc.stdout.strip()[:200]}"


@pytest.mark.parametrize("args,message", [
    (["--model", "gru", "--set", "foo=3"], "gru has no config field foo"),
    (["--model", "gru", "--set", "heads=3"], "gru has no config field heads"),
    (["--model", "transformer", "--set", "heads=3"], "heads must be a power of two"),
    (["--model", "gru", "--set", "layers=0"], "invalid gru config"),
    (["--model", "gru", "--set", "hidden=abc"], "--set expects FIELD=INTEGER"),
    (["--model", "lstm"], "unknown --model 'lstm'"),
    (["--model", "gru"], "give --minutes N or --steps N"),
])
def test_train_misuse_is_a_one_line_error(args, message, tmp_path):
    res = CliRunner().invoke(cli, ["train", "--corpus", "pystdlib", "--out", str(tmp_path / "m"), *args,
                                   *([] if "--model" in args and args[1] == "gru" and len(args) == 2 else ["--steps", "1"])])
    assert res.exit_code != 0
    assert message in res.output and "Traceback" not in res.output
    assert len([line for line in res.output.splitlines() if line.startswith("Error")]) == 1


def test_decode_writes_files_with_the_usual_mode_and_refuses_programs(tmp_path):
    import os
    import stat

    src, payload, out = tmp_path / "in.txt", tmp_path / "p.cb", tmp_path / "out.txt"
    src.write_bytes(b"modes and trust " * 100)
    runner = CliRunner()
    assert runner.invoke(cli, ["encode", "--coder", "zlib", str(src), str(payload)]).exit_code == 0
    assert runner.invoke(cli, ["decode", str(payload), str(out)]).exit_code == 0
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600
    canary = tmp_path / "ran"
    ext = f"external:compress=cat:decompress='touch {canary}'"
    assert runner.invoke(cli, ["encode", "--coder", "external:compress=cat:decompress=cat", str(src), str(payload),
                               "-f"]).exit_code == 0
    data = payload.read_bytes()
    from compbench.fuzz import assemble_raw  # the same bytes under a header whose command creates the canary
    from compbench.payload import read_header

    h = read_header(data)
    evil = tmp_path / "evil.cb"
    evil.write_bytes(assemble_raw(ext, h.fingerprint, h.size, 0, [src.read_bytes()]))
    res = runner.invoke(cli, ["decode", str(evil), str(tmp_path / "x")])
    assert res.exit_code == 1 and "runs external programs" in res.output and not canary.exists()
    res = runner.invoke(cli, ["decode", "--coder", "external:compress=cat:decompress=cat", str(payload), str(tmp_path / "y")])
    assert res.exit_code == 0 and (tmp_path / "y").read_bytes() == src.read_bytes()
    res = runner.invoke(cli, ["decode", "--coder", "external:compress=cat:decompress=cat", str(evil), str(tmp_path / "z")])
    assert res.exit_code == 1 and not canary.exists()  # the user's own commands, not the payload's


def test_the_readme_library_example_runs():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Library use", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})


def test_a_shipped_model_payload_decodes_in_any_folder_without_an_artifact(tmp_path, monkeypatch):
    src = tmp_path / "note.txt"
    src.write_bytes(b"<page><title>Decodes anywhere</title></page>\n" * 8)
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()
    monkeypatch.chdir(here)
    assert invoke("encode", "--coder", "gru", str(src), str(here / "p.cb")).exit_code == 0
    monkeypatch.chdir(there)  # another folder, another (empty) store, no --artifact
    res = invoke("decode", "--store", str(there / "s.sqlite"), str(here / "p.cb"), str(there / "out.txt"))
    assert res.exit_code == 0, res.stderr
    assert (there / "out.txt").read_bytes() == src.read_bytes()


def test_budget_conventions_are_written_down_once():
    from compbench.units import format_size, parse_size

    assert parse_size("1MB") == 1_000_000 and parse_size("16MB") == 16_000_000  # decimal, parameter golf
    assert parse_size("1MiB") == 1_048_576 and parse_size("1,048,576") == 1_048_576  # binary, Golden Plate
    assert [format_size(n) for n in (1_000_000, 16_000_000, 1_048_576, 123_456)] == ["1MB", "16MB", "1MiB", "123,456"]


def test_rows_record_their_budget_rank_over_budget_artifacts_last_and_leaderboard_rejudges(corpus_dir, tmp_path):
    import json

    store = str(tmp_path / "r.sqlite")
    (corpus_dir / "a.txt").write_bytes(b"budget test text, compressible and compressible again. " * 4000)
    coders = "zstd:dict_size=2048:dict_type=raw,zlib"
    res = invoke("run", "--coders", coders, "--corpus", str(corpus_dir), "--split", "test", "--repeat", "1",
                 "--budget", "1KB", "--format", "json", "--store", store, "-q")
    assert res.exit_code == 0, res.stderr
    recs = {r["coder"]: r for r in json.loads(res.stdout)}
    assert recs["zstd"]["budget"] == 1000 and recs["zstd"]["fits_budget"] is False  # a 2,048-byte dictionary
    assert recs["zlib"]["fits_budget"] is True
    assert recs["zstd"]["bpb"] < recs["zlib"]["bpb"]  # so only the budget can put zstd last
    table = invoke("leaderboard", "--store", store, "--format", "csv").stdout.splitlines()
    assert table[1].split(",")[1] == "zlib"  # over budget ranks last, whatever its bpb
    assert ",1000,False," in table[2]
    table = invoke("leaderboard", "--store", store, "--budget", "1MiB").stdout
    assert "1MiB" in table and " NO " not in table  # the same records judged against another budget
    res = invoke("run", "--coders", "zlib", "--corpus", str(corpus_dir), "--budget", "lots", "--no-store")
    assert res.exit_code == 1 and "cannot read size 'lots'" in res.stderr


def test_chunking_report_writes_a_plot_and_its_data_and_shows_the_effect(tmp_path):
    import csv
    import json

    out = tmp_path / "rep"
    res = invoke("report", "chunking", "--coders", "zlib,zstd:level=3", "--corpus", "pystdlib", "--split", "all",
                 "--bytes", "40KB", "--chunk-sizes", "512,4096,0", "--out", str(out), "-q")
    assert res.exit_code == 0, res.stderr
    assert (out / "chunking.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(open(out / "chunking.csv")))
    assert len(rows) == 6 and json.loads((out / "chunking.json").read_text())["rows"][0]["n_bytes"] == 40_000
    rate = {(r["coder"], int(r["chunk_size"])): float(r["rate_lmic_pct"]) for r in rows}
    for coder in ("zlib", "zstd:level=3"):  # the effect's direction: smaller chunks, worse compression
        assert rate[(coder, 512)] > rate[(coder, 4096)] > rate[(coder, 0)]
    assert "![chunking](chunking.png)" in (out / "report.md").read_text()
    bad = invoke("report", "chunking", "--chunk-sizes", "a,b", "--out", str(out))
    assert bad.exit_code == 1 and "--chunk-sizes" in bad.stderr


def test_decode_refuses_a_claim_over_max_output_until_the_user_raises_it(tmp_path):
    src, payload = tmp_path / "in.bin", tmp_path / "p.cb"
    src.write_bytes(bytes(300_000))
    assert invoke("encode", "--coder", "zstd:level=3", str(src), str(payload)).exit_code == 0
    res = invoke("decode", "--max-output", "100KB", str(payload), str(tmp_path / "o1"))
    assert res.exit_code == 1 and "over the decode limit of 100,000" in res.stderr and "--max-output" in res.stderr
    assert not (tmp_path / "o1").exists()
    assert invoke("decode", "--max-output", "1MB", str(payload), str(tmp_path / "o2")).exit_code == 0


def test_output_into_a_missing_folder_is_a_one_line_error(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"abc" * 100)
    res = invoke("encode", "--coder", "zlib", str(src), str(tmp_path / "nope" / "p.cb"))
    assert res.exit_code == 1 and "does not exist" in res.stderr and "Traceback" not in res.stderr


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", ["primed_ppmd.py", "four_tracks.py"])
def test_a_benchmark_without_its_data_stops_with_a_one_line_error(script, tmp_path):
    """The README sends users to these scripts; a missing data folder must read like the CLI's errors."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "COMPBENCH_DATA": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), "--out", str(tmp_path / "o.json")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("Error: corpus ") and "not found" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, says", [
    (["--sizes", "2QB"], "cannot read size '2QB'"),
    (["--sizes", "0"], "--sizes must lie in 1 .."),
    (["--coders", "gru:bogus=1", "--sizes", "2KB", "--repeat", "1"], "failed: gru: unknown option(s) bogus"),
])
def test_one_shot_stops_on_a_bad_size_or_a_failing_command_with_a_one_line_error(args, says, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "COMPBENCH_DATA": str(tmp_path)}  # no data folder: the built-in corpus
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "one_shot.py"), *args, "--out", str(tmp_path / "o.json")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    err = proc.stderr.strip()
    assert proc.returncode == 1 and "Traceback" not in err, err[-2000:]
    assert len(err.splitlines()) == 1 and err.startswith("Error: ") and says in err, err
    assert not (tmp_path / "o.json").exists()


def test_every_benchmark_script_runs_its_main_through_the_one_line_error_wrapper():
    scripts = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
    assert len(scripts) >= 12
    for p in scripts:
        assert p.read_text().rstrip().endswith("run_main(main)"), p.name
