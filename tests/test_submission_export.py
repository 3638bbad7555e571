"""compbench export --format golden-plate: the zip passes compbench check, its model.py (numpy and
torch only, run in the sandbox) predicts what the integer engine predicts, and what cannot be
exported is refused in one line."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from compbench import registry
from compbench.cli import cli
from compbench.submission.golden_plate import export_golden_plate
from compbench.submission.sandbox import Sandbox
from compbench.submission.zipcheck import SubmissionError, inspect_zip


def _engine_logits(coder, context: bytes) -> np.ndarray:
    coder._load()
    engine = coder._engine
    state = engine.start(1)
    with torch.inference_mode():
        logits = engine.step(state, torch.tensor([256]))
        for b in context:
            logits = engine.step(state, torch.tensor([b]))
    return logits.numpy()[0].astype(np.float64)


def test_the_exported_gru_predicts_what_the_engine_predicts(tiny_models, tmp_path):
    path, _ = tiny_models["gru"]
    spec = f"gru:model='{path}'"
    info = export_golden_plate(spec, tmp_path / "s.zip", window=512)
    assert info["fits_1MiB"] and info["zip_bytes"] == (tmp_path / "s.zip").stat().st_size
    report = inspect_zip(tmp_path / "s.zip")  # our own zip passes our own check
    assert sorted(report.names) == ["config.json", "model.py", "weights.npz"]
    coder = registry.make_coder(spec)
    contexts = [b"", b"d", b"def f(x):\n    return x", bytes(range(256)) * 3]  # the last is cut to its 512-byte window
    with Sandbox(tmp_path / "s.zip") as sb:
        logits, _ = sb.predict(contexts)
    for ctx, got in zip(contexts, logits):
        want = _engine_logits(coder, ctx[-512:])
        # Matmuls are exact; only sigmoid/tanh differ from the engine's lookup tables.
        assert np.abs(got - want).max() < 0.05, ctx[:20]
        assert got.argmax() == want.argmax() or np.sort(want)[-1] - np.sort(want)[-2] < 0.05


def test_export_cli_reports_both_limits_and_refuses_what_it_cannot_export(tiny_models, tmp_path):
    path, _ = tiny_models["gru"]
    out = tmp_path / "s.zip"
    res = CliRunner().invoke(cli, ["export", "--coder", f"gru:model='{path}'", "-o", str(out)])
    assert res.exit_code == 0 and "of the 1 MiB limit" in res.output and "of 1,000,000 bytes" in res.output
    again = CliRunner().invoke(cli, ["export", "--coder", f"gru:model='{path}'", "-o", str(out)])
    assert again.exit_code != 0 and "exists" in again.output
    for spec, message in [("lzma", "only neural coders"), ("transformer", "no Golden-Plate exporter")]:
        with pytest.raises(SubmissionError, match=message):
            export_golden_plate(spec, tmp_path / "x.zip")


def test_an_export_over_the_zip_limit_is_refused_and_leaves_no_file(tiny_models, tmp_path, monkeypatch):
    from compbench.submission import golden_plate

    path, _ = tiny_models["gru"]
    monkeypatch.setattr(golden_plate, "MB", 1000)  # a limit the tiny model cannot meet
    with pytest.raises(SubmissionError, match="over the 1,048,576-byte"):
        export_golden_plate(f"gru:model='{path}'", tmp_path / "s.zip")
    assert not (tmp_path / "s.zip").exists()
