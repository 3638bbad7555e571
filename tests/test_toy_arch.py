"""Adding an architecture is one module (tests/toy_arch.py) and one registry entry: it then trains,
exports an artifact carrying its own decoder code, and round-trips through `compbench run`."""

import json

from click.testing import CliRunner

from compbench import registry
from compbench.cli import cli
from compbench.models import ARCHS, ArchInfo, artifact, register_arch


def test_a_toy_architecture_trains_exports_and_round_trips_through_run(tmp_path):
    info = ArchInfo("toy-bigram", "toy_arch", "low-rank bigram byte-LM (a test architecture)", streams=4,
                    batch=8, seq_len=64, size_field="rank", size_step=8, tiny={"rank": 8})
    register_arch(info)  # the one entry
    try:
        out = tmp_path / "toy"
        runner = CliRunner()
        res = runner.invoke(cli, ["train", "--model", "toy-bigram", "--corpus", "pystdlib", "--steps", "30",
                                  "--budget", "60000", "--out", str(out)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        record = json.loads((out / "train.json").read_text())
        assert record["arch"] == "toy-bigram" and record["artifact_bytes"] <= 60_000
        assert record["config"]["rank"] > 8  # fitted to the budget, not the default
        header, _ = artifact.unpack((out / "model.cbnm").read_bytes())
        assert [name for name, _ in header["code"]][-1] == "toy_arch.py"  # its own code is counted
        corpus = tmp_path / "corpus"
        corpus.mkdir()
        (corpus / "a.txt").write_bytes(b"a toy architecture codes real bytes. " * 80)
        res = runner.invoke(cli, ["run", "--coders", f"toy-bigram:model='{out}',zlib", "--corpus", str(corpus),
                                  "--repeat", "1", "--format", "json", "--no-store", "-q"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        rows = {r["coder"]: r for r in json.loads(res.output)}
        assert rows["toy-bigram"]["roundtrip_ok"] and rows["toy-bigram"]["bpb_model"] is not None
        assert rows["toy-bigram"]["bpb"] < 8
    finally:
        from compbench.coders import neural

        registry.unregister_coder("toy-bigram")
        neural.CODERS.pop("toy-bigram", None)
        ARCHS.pop("toy-bigram", None)
