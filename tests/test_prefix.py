"""The prefix coder (kind=context): a stored slice of the train split primes the inner coder on both
sides, the artifact pays for it, every primable inner round-trips through a decoder rebuilt from the
artifact alone, and what cannot work is refused when the spec is parsed or the budget is known."""

import random

import pytest

from compbench import registry
from compbench.errors import CompbenchError, SpecError
from compbench.measure import MeasureConfig
from compbench.runner import RunConfig, run


@pytest.fixture
def corpus(tmp_path):
    """A train split that predicts the test split: the same vocabulary and phrases, other sentences."""
    rng = random.Random(4)
    words = [bytes(rng.choice(b"etaoinshrdlucmfw") for _ in range(rng.randint(3, 9))) for _ in range(600)]
    text = b" ".join(rng.choice(words) for _ in range(120_000))
    (tmp_path / "c.txt").write_bytes(text)
    return str(tmp_path / "c.txt")


@pytest.mark.parametrize("inner", ["zlib", "zstd:level=19", "ppmd:order=6:mem_mib=16"])
def test_context_prefix_round_trips_and_beats_the_inner_coder_alone(inner, corpus):
    specs = f"prefix:inner=({inner}):size=200000:store=(lzma:preset=6),{inner}"
    res = run(RunConfig(coders=specs, corpus=corpus, split="test", measure=MeasureConfig(repeat=1, budget=1_000_000)))
    assert not res.failures and all(r.roundtrip_ok for r in res.records)
    primed, alone = res.records
    assert primed.family == "prefix" and primed.fits_budget
    assert primed.artifact_bytes > 0.1 * 200_000  # the stored slice is paid for
    assert primed.payload_bytes < alone.payload_bytes


@pytest.mark.parametrize("spec,message", [
    ("prefix:inner=(lzma)", "cannot be primed"),
    ("prefix:inner=brotli", "cannot be primed"),
    ("prefix:inner=(external:compress=cat:decompress=cat)", "runs programs"),
    ("prefix:store=(external:compress=cat:decompress=cat)", "runs programs"),
    ("prefix:inner=(prefix)", "do not nest"),
    ("prefix:kind=paid", "kind=context"),
    ("prefix:size=-1", "number of bytes"),
])
def test_what_cannot_work_is_refused_when_the_spec_is_parsed(spec, message):
    with pytest.raises(SpecError, match=message):
        registry.make_coder(spec)


def test_a_prefix_larger_than_the_budget_is_a_clear_error(corpus):
    res = run(RunConfig(coders="prefix:size=200000", corpus=corpus, split="test",
                        measure=MeasureConfig(repeat=1, budget=10_000)))
    assert not res.records and len(res.failures) == 1
    assert "over the 10,000-byte budget: give a smaller size=" in res.failures[0]
    with pytest.raises(CompbenchError, match="train split"):
        registry.make_coder("prefix").fit(b"")
    with pytest.raises(CompbenchError, match="size=0 stores as much as fits the budget: pass --budget"):
        registry.make_coder("prefix:store=zlib").fit(b"some train bytes " * 10000)


def test_size_0_stores_the_longest_tail_that_fits_the_budget(corpus):
    res = run(RunConfig(coders="prefix:inner=(zstd:level=3):store=(zlib:level=6)", corpus=corpus, split="test",
                        measure=MeasureConfig(repeat=1, budget=60_000)))
    (rec,) = res.records
    assert rec.roundtrip_ok and rec.fits_budget and 45_000 < rec.artifact_bytes <= 60_000
