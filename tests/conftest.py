"""Shared fixtures: plug-ins off, a data-folder fixture that skips cleanly when the corpora are absent,
and small deterministic inputs (python-zstandard's mix)."""

import os
import random
from pathlib import Path

import pytest

os.environ["COMPBENCH_NO_PLUGINS"] = "1"  # tests see built-in coders only (llm's convention)

REPO = Path(__file__).resolve().parents[1]


def speed_bench():
    """benchmarks/neural_speed.py as a module (its AVX2 emulation, avx2_env, and its byte counts)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("neural_speed", REPO / "benchmarks" / "neural_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def data_dir() -> Path | None:
    env = os.environ.get("COMPBENCH_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (cand / "canterbury").is_dir():
            return cand
    return None


@pytest.fixture
def data_path() -> Path:
    d = data_dir()
    if d is None:
        pytest.skip("corpora not available: set COMPBENCH_DATA to the shared data folder")
    return d


def small_inputs() -> dict[str, bytes]:
    rng = random.Random(1234)
    return {
        "empty": b"",
        "one-byte": b"\x00",
        "all-256": bytes(range(256)),
        "random-4096": bytes(rng.getrandbits(8) for _ in range(4096)),
        "repetitive": b"abcabcabd" * 5000,
        "zeros-64k": bytes(65536),
        "text": ("The quick brown fox jumps over the lazy dog. " * 300).encode(),
    }


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    """Never write results into the repository's own .compbench/."""
    monkeypatch.setenv("COMPBENCH_STORE", str(tmp_path / "store" / "results.sqlite"))


from compbench.models import ARCHS  # noqa: E402  (torch-free)

TINY = {name: info.tiny for name, info in ARCHS.items()}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A seconds-long trained model per architecture, on the built-in corpus (no data folder needed)."""
    from compbench.train import TrainConfig, train

    out = {}
    for arch, size in TINY.items():
        d = tmp_path_factory.mktemp(f"tiny-{arch}")
        tc = TrainConfig(model=arch, corpus="pystdlib", steps=40, out=str(d), size=size, batch=16,
                         seq_len=64, lr=1e-2, val_bytes=8192, eval_s=1e9)
        res = train(tc, say=lambda *a, **k: None)
        out[arch] = (d / "model.cbnm", res)
    return out
