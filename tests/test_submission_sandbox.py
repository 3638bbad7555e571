"""A Golden-Plate submission written independently of compbench (a numpy bigram model built here)
runs in the sandbox and answers batches; broken or hostile ones stop with one line."""

import io
import zipfile

import numpy as np
import pytest

from compbench.submission.sandbox import Sandbox, SandboxLimits, random_contexts
from compbench.submission.zipcheck import SubmissionError

BIGRAM = b'''
import os
import numpy as np

class Model:
    def __init__(self, submission_dir):
        with np.load(os.path.join(submission_dir, "bigram.npz"), allow_pickle=False) as z:
            self.table = z["logits"].astype(np.float32)

    def predict(self, contexts):
        prev = [c[-1] if c else 256 for c in contexts]
        return [self.table[p].tolist() for p in prev]
'''


def bigram_zip(path, text: bytes, model_py: bytes = BIGRAM):
    counts = np.ones((257, 256))
    for a, b in zip(text, text[1:]):
        counts[a, b] += 1
    counts[256] += np.bincount(np.frombuffer(text, np.uint8), minlength=256)
    buf = io.BytesIO()
    np.savez(buf, logits=np.log(counts / counts.sum(1, keepdims=True)).astype(np.float16))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.py", model_py)
        zf.writestr("bigram.npz", buf.getvalue())
    return path


def test_an_independent_submission_answers_the_validator_s_batch(tmp_path):
    z = bigram_zip(tmp_path / "s.zip", b"the quick brown fox jumps over the lazy dog " * 50)
    with Sandbox(z) as sb:
        ctx = random_contexts(1024)
        logits, seconds = sb.predict(ctx)
        assert logits.shape == (1024, 256) and np.isfinite(logits).all() and seconds >= 0
        again, _ = sb.predict([b"at", b""])
        # the child's answer is the model's: "h" follows "t", and the empty context is the unigram row
        assert again[0].argmax() == ord("h") and again[1].argmax() == ord(" ")


@pytest.mark.parametrize("body,message", [
    (b"raise RuntimeError('no weights here')", "failed to load: RuntimeError: no weights here"),
    (b"class Model:\n def __init__(self, d): pass\n def predict(self, c): return [[0.0] * 3 for _ in c]",
     r"shape \(2, 3\)"),
    (b"class Model:\n def __init__(self, d): self.x = bytearray(8 << 30)", "failed to load: MemoryError"),
    (b"import os\nos._exit(3)", "stopped"),
    (b"class Model:\n def __init__(self, d):\n  while True: pass", "stopped"),
])
def test_a_broken_or_hostile_model_stops_with_one_line(tmp_path, body, message):
    z = tmp_path / "bad.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("model.py", body)
    with pytest.raises(SubmissionError, match=message) as err:
        with Sandbox(z, SandboxLimits(cpu_seconds=3)) as sb:
            sb.predict([b"ab", b"c"])
    assert "\n" not in str(err.value)


def test_check_runs_an_independent_submission_and_scores_it_the_challenge_s_way(tmp_path):
    from click.testing import CliRunner

    from compbench.cli import cli
    from compbench.submission.sandbox import score

    text = b"the quick brown fox jumps over the lazy dog " * 50
    z = bigram_zip(tmp_path / "s.zip", text)
    (tmp_path / "eval.txt").write_bytes(text[:3000])
    res = CliRunner().invoke(cli, ["check", str(z), "--score", str(tmp_path / "eval.txt"), "--split", "all"])
    assert res.exit_code == 0, res.output
    assert "(1024, 256), finite: True" in res.output and "bpb on" in res.output
    # The score is the bigram's own cross-entropy, computed here without the sandbox
    table = np.load(io.BytesIO(zipfile.ZipFile(z).read("bigram.npz")))["logits"].astype(np.float64)
    logp = table - np.log(np.exp(table).sum(1, keepdims=True))
    data = text[:3000]
    want = -(logp[256, data[0]] + sum(logp[a, b] for a, b in zip(data, data[1:]))) / np.log(2) / len(data)
    with Sandbox(z) as sb:
        got, _ = score(sb, data, batch=700)  # batches that split the text anywhere give the same sum
    assert got == pytest.approx(want, rel=1e-6)
    assert f"{want:.4f} bpb" in res.output


def test_non_finite_logits_are_refused_when_scoring(tmp_path):
    from compbench.submission.sandbox import score

    z = tmp_path / "nan.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("model.py", "class Model:\n def __init__(self, d): pass\n"
                                " def predict(self, c): return [[float('nan')] * 256 for _ in c]\n")
    with Sandbox(z) as sb, pytest.raises(SubmissionError, match="non-finite logits at positions 0..9"):
        score(sb, b"0123456789")
