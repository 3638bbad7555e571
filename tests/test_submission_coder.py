"""Any Golden-Plate submission as a coder (``golden-plate:zip=...``): a submission written here,
independently of compbench's exporter, is range-coded, decoded by a fresh sandboxed process, scored
the challenge's way, and ranked beside lzma; its rows say it is not portable."""

import json
import zipfile

import pytest
from click.testing import CliRunner

from compbench.cli import cli
from compbench.registry import make_coder
from compbench.submission.sandbox import Sandbox, score
from test_submission_sandbox import bigram_zip

TEXT = (b"It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        b"must be in want of a wife. However little known the feelings or views of such a man may be. ") * 40


@pytest.fixture
def submission(tmp_path):
    return bigram_zip(tmp_path / "bigram.zip", TEXT[:5000])


def test_an_independent_submission_is_ranked_beside_lzma_with_the_challenge_s_score(tmp_path, submission):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    data = TEXT[1000:7000]
    (corpus / "eval.txt").write_bytes(data)
    spec = f"golden-plate:zip={submission}:min_segment=1024"
    res = CliRunner().invoke(cli, ["run", "--coders", f"{spec},lzma", "--corpus", str(corpus), "--store",
                                   str(tmp_path / "s.sqlite"), "--format", "json"])
    assert res.exit_code == 0, res.output
    records = {r["coder"]: r for r in json.loads(res.stdout[res.stdout.index("["):])}
    gp, xz = records["golden-plate"], records["lzma"]
    assert gp["roundtrip_ok"] and xz["roundtrip_ok"] and gp["error"] is None
    assert gp["artifact_bytes"] == submission.stat().st_size and not gp["portable"] and xz["portable"]
    assert str(submission) in gp["label"]  # two submissions never share a row label
    assert gp["decode_peak_mem_bytes"] > 20e6  # the sandboxed model's own memory (python + numpy), not the parent's
    # bpb_model is the challenge's score of the same bytes, computed independently here
    with Sandbox(submission) as sb:
        want, _ = score(sb, data)
    assert gp["bpb_model"] == pytest.approx(want, rel=1e-12)
    # real range coding of those probabilities: a little above the score (segment starts, quantization)
    assert want < gp["bpb"] < want + 0.1
    table = CliRunner().invoke(cli, ["leaderboard", "--store", str(tmp_path / "s.sqlite")])
    assert table.exit_code == 0 and "portable" in table.output and "NO" in table.output, table.output


def test_a_submission_payload_decodes_only_with_the_coder_named_by_the_user(tmp_path, submission):
    src, pay, out = tmp_path / "in.txt", tmp_path / "in.cb", tmp_path / "out.txt"
    src.write_bytes(TEXT[:3000])
    store = ["--store", str(tmp_path / "s.sqlite")]
    spec = f"golden-plate:zip={submission}"
    res = CliRunner().invoke(cli, ["encode", "--coder", spec, str(src), str(pay), *store])
    assert res.exit_code == 0, res.output
    # a payload never picks a program to run, even one kept in the store's artifact folder
    res = CliRunner().invoke(cli, ["decode", str(pay), str(out), *store])
    assert res.exit_code != 0 and "--coder" in res.output and not out.exists()
    res = CliRunner().invoke(cli, ["decode", "--coder", spec, str(pay), str(out), *store])
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == src.read_bytes()


def test_a_corrupted_payload_is_refused_in_one_line(tmp_path, submission):
    coder = make_coder(f"golden-plate:zip={submission}")
    payload = bytearray(coder.encode(TEXT[:2000]))
    payload[-5] ^= 0x55
    with pytest.raises(Exception) as err:
        make_coder(f"golden-plate:zip={submission}").decode(bytes(payload))
    assert type(err.value).__module__.startswith("compbench") and "\n" not in str(err.value)


NOISY = b'''
import numpy as np
class Model:
    def __init__(self, d):
        self.rng = np.random.default_rng()  # a fresh seed in every process
    def predict(self, contexts):
        z = self.rng.normal(scale=0.3, size=(len(contexts), 256))
        z[:, 32:127] += 5.0  # printable text is likely, so the payload is coded, not stored
        return z.tolist()
'''


def test_a_submission_that_answers_differently_each_time_fails_its_round_trip_instead_of_passing(tmp_path):
    z = tmp_path / "noisy.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("model.py", NOISY)
    res = CliRunner().invoke(cli, ["run", "--coders", f"golden-plate:zip={z}", "--corpus", str(_corpus(tmp_path)),
                                   "--store", str(tmp_path / "s.sqlite"), "--format", "json"])
    records = json.loads(res.stdout[res.stdout.index("["):])
    assert res.exit_code != 0 and not records[0]["roundtrip_ok"], res.output


def _corpus(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_bytes(TEXT[:1500])
    return corpus


def test_a_hostile_submission_stops_the_row_not_the_run(tmp_path):
    z = tmp_path / "bad.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("model.py", "import os\nos._exit(3)")
    res = CliRunner().invoke(cli, ["run", "--coders", f"golden-plate:zip={z},zlib", "--corpus", str(_corpus(tmp_path)),
                                   "--store", str(tmp_path / "s.sqlite")])
    assert res.exit_code != 0 and "zlib" in res.output
    assert "process stopped" in res.output and "Traceback" not in res.output


def test_the_coder_tells_the_user_what_it_needs():
    with pytest.raises(Exception, match="zip=PATH"):
        make_coder("golden-plate").artifact()
    with pytest.raises(Exception, match="window"):
        make_coder("golden-plate:window=99999")
    # where the zip is and how long it may run are not the payload's business; the window is
    assert make_coder("golden-plate:zip=a.zip:cpu_limit=10:window=64").header_spec == "golden-plate:window=64"


def test_compbench_s_own_exported_gru_ranks_as_a_submission(tiny_models, tmp_path):
    from compbench.submission.golden_plate import export_golden_plate

    path, _ = tiny_models["gru"]
    export_golden_plate(f"gru:model='{path}'", tmp_path / "gru.zip")
    # Short segments and contexts: each step is one predict call, and the float GRU steps through its context.
    spec = f"golden-plate:zip={tmp_path / 'gru.zip'}:min_segment=100:window=32"
    res = CliRunner().invoke(cli, ["run", "--coders", f"{spec},lzma", "--corpus",
                                   str(_corpus(tmp_path)), "--store", str(tmp_path / "s.sqlite"), "--format", "json",
                                   "--repeat", "1"])
    assert res.exit_code == 0, res.output
    records = {r["coder"]: r for r in json.loads(res.stdout[res.stdout.index("["):])}
    assert records["golden-plate"]["roundtrip_ok"] and not records["golden-plate"]["portable"]
    assert records["golden-plate"]["bpb_model"] < 8


def test_a_submission_that_returns_non_finite_logits_fails_its_row_in_one_line(tmp_path):
    z = tmp_path / "nan.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("model.py", "class Model:\n def __init__(self, d): pass\n"
                                " def predict(self, c): return [[float('nan')] * 256 for _ in c]\n")
    res = CliRunner().invoke(cli, ["run", "--coders", f"golden-plate:zip={z},zlib", "--corpus", str(_corpus(tmp_path)),
                                   "--store", str(tmp_path / "s.sqlite")])
    assert res.exit_code != 0 and "non-finite logits" in res.output and "Traceback" not in res.output
    assert "| zlib" in res.stdout  # the other coder still ranks
