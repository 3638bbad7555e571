"""compbench export --format param-golf and --format decoder: each folder runs without compbench, from
its own bytes, in a fresh process, and gives exactly what compbench gives (the same bpb; the same
decoded bytes); byte counts are honest, and what cannot be exported or replaced is refused."""

import json
import zipfile

import pytest
from click.testing import CliRunner

from compbench import registry
from compbench.cli import cli
from compbench.submission import folders
from compbench.submission.folders import (export_decoder, export_param_golf, ltcb_zip_bytes, reevaluate, run_fresh,
                                          validate_param_golf)
from compbench.submission.zipcheck import SubmissionError

TEXT = b"def f(x):\n    return x * 2 + 1\n\nclass A:\n    pass\n" * 60


@pytest.fixture
def gru_spec(tiny_models):
    path, _ = tiny_models["gru"]
    return f"gru:model='{path}'"


def test_a_param_golf_folder_re_evaluates_to_compbench_s_bpb_in_a_fresh_process(gru_spec, tmp_path):
    rec = export_param_golf(gru_spec, tmp_path / "pg", TEXT, {"corpus": "test"})
    coder = registry.make_coder(gru_spec)
    assert rec["val_bpb"] == coder.model_bits(TEXT) / len(TEXT)  # compbench's bpb_model, exactly
    assert validate_param_golf(tmp_path / "pg") == rec
    files = rec["files"]
    assert "evaluate.py" in files and "compbench/models/lockstep.py" in files and "compbench/models/gru.py" in files
    code = sum(f["bytes"] for k, f in files.items() if k.endswith(".py"))
    assert rec["bytes_total"] == code + rec["bytes_model"] <= 16_000_000
    assert rec["bytes_model"] == len(coder.artifact()) and rec["schema_version"] == 1
    again = reevaluate(tmp_path / "pg", TEXT)
    assert again["val_bpb"] == rec["val_bpb"] and again["val_sha256"] == rec["val_sha256"]


def test_a_tampered_param_golf_folder_fails_validation(gru_spec, tmp_path):
    export_param_golf(gru_spec, tmp_path / "pg")
    blob = bytearray((tmp_path / "pg" / "model.cbnm").read_bytes())
    blob[100] ^= 1
    (tmp_path / "pg" / "model.cbnm").write_bytes(bytes(blob))
    with pytest.raises(SubmissionError, match="model.cbnm"):
        validate_param_golf(tmp_path / "pg")
    (tmp_path / "pg" / "submission.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(SubmissionError, match="schema_version"):
        validate_param_golf(tmp_path / "pg")


def test_a_folder_over_the_limit_is_refused_and_nothing_is_left(gru_spec, tmp_path, monkeypatch):
    monkeypatch.setattr(folders, "PARAM_GOLF_LIMIT", 10_000)
    with pytest.raises(SubmissionError, match="over parameter golf"):
        export_param_golf(gru_spec, tmp_path / "pg")
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_only_a_folder_an_export_wrote(gru_spec, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(SubmissionError, match="exists"):
        export_decoder(gru_spec, mine)
    with pytest.raises(SubmissionError, match="not an exported folder"):
        export_decoder(gru_spec, mine, force=True)
    assert (mine / "notes.txt").read_text() == "keep me"
    export_decoder(gru_spec, tmp_path / "dec")
    export_decoder(gru_spec, tmp_path / "dec", force=True)  # an export may replace its own folder


@pytest.mark.parametrize("chunk", [0, 700])
def test_the_exported_decompressor_decodes_compbench_payloads_in_a_fresh_process(gru_spec, tmp_path, chunk):
    info = export_decoder(gru_spec, tmp_path / "dec")
    assert info["zip_bytes"] == ltcb_zip_bytes(tmp_path / "dec")
    with zipfile.ZipFile(_zip_of(tmp_path / "dec", tmp_path / "d.zip")) as zf:  # LTCB's count is a real zip
        assert zf.testzip() is None
    payload = registry.make_coder(gru_spec).encode(TEXT, chunk_size=chunk)
    (tmp_path / "p.cbp").write_bytes(payload)
    run_fresh(tmp_path / "dec", ["decompress.py", str(tmp_path / "p.cbp"), str(tmp_path / "out")])
    assert (tmp_path / "out").read_bytes() == TEXT


def _zip_of(folder, path):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    return path


def test_the_decompressor_refuses_other_payloads_in_one_line_and_writes_nothing(gru_spec, tmp_path):
    export_decoder(gru_spec, tmp_path / "dec")
    good = bytearray(registry.make_coder(gru_spec).encode(TEXT[:500]))
    cases = {
        "lzma": (registry.make_coder("lzma").encode(TEXT), "decodes"),
        "flipped": (bytes(good[:-9]) + bytes([good[-9] ^ 0x40]) + bytes(good[-8:]), "corrupted|CRC|checksum"),
        "truncated": (bytes(good[: len(good) // 2]), "truncated"),
        "garbage": (b"PK\x03\x04 not a payload", "not a compbench payload"),
    }
    for name, (payload, message) in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(SubmissionError, match=message) as err:
            run_fresh(tmp_path / "dec", ["decompress.py", str(tmp_path / name), str(tmp_path / f"{name}.out")])
        assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
        assert not (tmp_path / f"{name}.out").exists()


def test_export_cli_re_evaluates_both_folders_and_run_shows_the_ltcb_total(gru_spec, tmp_path):
    (tmp_path / "eval.txt").write_bytes(TEXT)
    res = CliRunner().invoke(cli, ["export", "--coder", gru_spec, "--format", "param-golf", "--score",
                                   str(tmp_path / "eval.txt"), "--split", "all", "-o", str(tmp_path / "pg")])
    assert res.exit_code == 0 and "identical" in res.output and "of 16,000,000" in res.output, res.output
    res = CliRunner().invoke(cli, ["export", "--coder", gru_spec, "--format", "decoder", "--score",
                                   str(tmp_path / "eval.txt"), "--split", "all", "-o", str(tmp_path / "dec")])
    assert res.exit_code == 0 and "decoded in a fresh process: identical" in res.output, res.output
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.py").write_bytes(TEXT)
    res = CliRunner().invoke(cli, ["run", "--coders", f"{gru_spec},lzma", "--corpus", str(corpus), "--ltcb",
                                   "--no-store", "--format", "csv", "--repeat", "1"])
    assert res.exit_code == 0, res.output
    rows = {line.split(",")[1]: line for line in res.stdout.strip().splitlines()[1:]}
    header = res.stdout.splitlines()[0].split(",")
    gru_row = next(v for k, v in rows.items() if k.startswith("gru")).split(",")
    zip_bytes = int(gru_row[header.index("decoder_zip_bytes")])
    assert zip_bytes == ltcb_zip_bytes(tmp_path / "dec")
    n, payload = int(gru_row[header.index("n_bytes")]), int(gru_row[header.index("payload_bytes")])
    assert float(gru_row[header.index("bpb_ltcb")]) == pytest.approx(8 * (payload + zip_bytes) / n)
    assert rows["lzma"].split(",")[header.index("bpb_ltcb")] == ""  # no standalone decoder export for lzma


@pytest.mark.slow
def test_the_decompressor_runs_with_only_its_requirements_installed(gru_spec, tmp_path):
    """A fresh virtualenv with requirements.txt and nothing else (no compbench) decodes byte for byte."""
    import subprocess
    import sys

    export_decoder(gru_spec, tmp_path / "dec")
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    py = tmp_path / "venv" / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "-r", tmp_path / "dec" / "requirements.txt"], check=True)
    assert subprocess.run([py, "-c", "import compbench"], capture_output=True, cwd=tmp_path).returncode != 0
    (tmp_path / "p.cbp").write_bytes(registry.make_coder(gru_spec).encode(TEXT))
    subprocess.run([py, "-I", "-B", tmp_path / "dec" / "decompress.py", tmp_path / "p.cbp", tmp_path / "out"], check=True,
                   cwd=tmp_path)
    assert (tmp_path / "out").read_bytes() == TEXT


def test_a_folder_without_its_record_fails_validation_in_one_line(tmp_path):
    (tmp_path / "pg").mkdir()
    with pytest.raises(SubmissionError, match="no readable submission.json") as err:
        validate_param_golf(tmp_path / "pg")
    assert "\n" not in str(err.value)
