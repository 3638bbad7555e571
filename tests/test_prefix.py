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
    ("prefix:kind=other", "give context .* or paid"),
    ("prefix:size=-1", "number of bytes"),
    ("prefix:share=1.5", r"share=1.5: give a fraction of the budget in \[0, 1\]"),
    ("prefix:share=0.5:size=1000", "not both"),
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


def test_a_paid_prefix_round_trips_and_its_rows_are_flagged_in_every_format(tmp_path):
    from click.testing import CliRunner

    from compbench.cli import cli
    from compbench.decoding import decode_payload
    from compbench.errors import PayloadError
    from compbench.payload import assemble, read_header
    from compbench.coder import fingerprint

    rng = random.Random(9)
    words = [bytes(rng.choice(b"etaoinshrdlu") for _ in range(rng.randint(3, 8))) for _ in range(300)]
    d = tmp_path / "eval"
    d.mkdir()
    (d / "a.txt").write_bytes(b" ".join(rng.choice(words) for _ in range(3000)))
    (d / "b.txt").write_bytes(b" ".join(rng.choice(words) for _ in range(9000)))
    spec = "prefix:kind=paid:size=25000:inner=(ppmd:order=5:mem_mib=16):store=(zlib)"
    res = run(RunConfig(coders=f"{spec},ppmd:order=5:mem_mib=16", corpus=str(d), measure=MeasureConfig(repeat=1)))
    assert not res.failures and all(r.roundtrip_ok for r in res.records)
    paid = [r for r in res.records if r.coder == "prefix"]
    assert all(r.stores_eval_data for r in paid) and not any(r.stores_eval_data for r in res.records if r.coder != "prefix")
    assert sum(r.payload_bytes for r in paid) < sum(r.payload_bytes for r in res.records if r.coder != "prefix")
    runner = CliRunner()
    for fmt, flag in (("github", "STORED"), ("plain", "STORED"), ("latex", "STORED"), ("csv", "True"),
                      ("json", '"stores_eval_data": true')):
        out = runner.invoke(cli, ["run", "--coders", spec, "--corpus", str(d), "--repeat", "1", "--no-store", "-q",
                                  "--format", fmt]).output
        assert flag in out, fmt
    # A body that names stored bytes the artifact does not have is a clear error.
    coder = res.coders[0]
    bad_body = b"\x80\x80\x04\x05" + b"\x00" * 8  # offset 65,536: past the 25,000 stored bytes
    payload = assemble(coder.header_spec, fingerprint(coder.artifact()), b"x" * 5, [bad_body], 0)
    assert read_header(payload).spec == coder.header_spec
    with pytest.raises(PayloadError, match="stored bytes the artifact does not have"):
        decode_payload(payload, coder.artifact())


def test_a_crafted_prefix_artifact_is_refused_in_one_line_even_when_ppmd_crashes_on_it():
    """The stored slice inside an artifact is decoded like any untrusted payload (PPMd in a child)."""
    from compbench.coder import fingerprint
    from compbench.decoding import decode_payload
    from compbench.errors import CompbenchError
    from compbench.payload import assemble
    from compbench.coders.prefix import MAGIC, VERSION

    coder = registry.make_coder("prefix:inner=(zlib):store=(ppmd:order=6:mem_mib=16):size=5000")
    coder.fit(b"stored text for the prefix, " * 400)
    data = b"stored text for the prefix, and more " * 20
    payload = coder.encode(data)
    assert decode_payload(payload, coder.artifact()) == data
    rng = random.Random(3)
    stored = registry.make_coder("ppmd:order=6:mem_mib=16")
    refused = 0
    for _ in range(40):  # stored PPMd bodies with valid checksums but garbage inside
        body = bytearray(stored.encode_body(b"stored text for the prefix, " * 179))
        for _ in range(3):
            body[rng.randrange(len(body))] ^= 0xFF
        art = MAGIC + bytes([VERSION, 0]) + assemble(stored.header_spec, fingerprint(b""), b"?" * 5012, [bytes(body)], 0)
        crafted = assemble(coder.header_spec, fingerprint(art), data, [coder.encode_body(data)], 0)
        try:
            decode_payload(crafted, art)
        except CompbenchError as err:
            assert "\n" not in str(err)
            refused += 1
    assert refused == 40


@pytest.fixture
def copying_corpus(tmp_path):
    """Test text made of long copies of the train text: what a match model primed with the train
    tail can find and a model that only sees each stream's own history cannot."""
    rng = random.Random(11)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    train = b" ".join(rng.choice(words) for _ in range(4000))[:15_000]
    # from the part the train split keeps (val is the 1,000 bytes before the test)
    test = b"".join(train[(s := rng.randrange(6_000, 13_300)) : s + 700] for _ in range(8))[:5_000]
    path = tmp_path / "copies.txt"
    path.write_bytes(train + test)  # the tail rule: test = the last n // 4 bytes = exactly `test`
    assert len(train + test) // 4 == len(test)
    return str(path)


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_a_neural_coder_primed_with_a_context_prefix_finds_copies_in_it_and_round_trips(copying_corpus, arch):
    """The match model searches the stored text (here the train tail the test copies from) on both
    sides: the payload shrinks, and a decoder rebuilt from the prefix artifact alone gets every byte."""
    specs = f"prefix:inner=({arch}:streams=4):size=20000:store=(lzma:preset=6),{arch}:streams=4"
    res = run(RunConfig(coders=specs, corpus=copying_corpus, split="test",
                        measure=MeasureConfig(repeat=0, budget=1_000_000)))
    assert not res.failures and all(r.roundtrip_ok for r in res.records)
    primed, alone = res.records
    assert primed.fits_budget and primed.artifact_bytes > alone.artifact_bytes
    assert primed.payload_bytes < 0.8 * alone.payload_bytes, (primed.bpb, alone.bpb)
    # model_bits is the cross-entropy of the primed probabilities, not the unprimed ones
    assert primed.bpb_model < 0.8 * alone.bpb_model


def test_a_neural_coder_without_its_match_model_cannot_be_primed():
    with pytest.raises(SpecError, match="cannot be primed"):
        registry.make_coder("prefix:inner=(gru:mix=0:match=0)")


def test_the_context_index_keeps_the_latest_position_of_every_key():
    """Determinism: the context table is built without numpy's unordered fancy assignment; for a key
    that occurs many times it holds the last occurrence, as the streams' own tables do."""
    pytest.importorskip("torch")
    from compbench.models.lockstep import MatchModel

    context = b"xyz1 abc2 abc3 abc4 zzz"
    mm = MatchModel(streams=1, seg=64, minlen=3, context=context)
    key = (ord("a") << 16) | (ord("b") << 8) | ord("c")
    import numpy as np

    slot = mm._slot(np.array([key], dtype=np.uint64), mm.cbits)[0]
    assert mm.ctable[slot] == context.rindex(b"abc") + 3  # the byte after the last "abc"


def test_a_prefix_wraps_the_model_its_spec_names_and_its_header_names_no_path():
    """prefix:inner=(gru:model=sagas) must code with the sagas model (a spec that dropped the model=
    locator silently used the default model), while the payload header, which strangers read,
    carries no locator: the artifact identifies the model."""
    from compbench.models import shipped_models

    coder = registry.make_coder("prefix:inner=(gru:model=sagas):size=1000:store=(zlib)")
    assert "model=sagas" in coder.spec and "model" not in coder.header_spec
    coder.fit(b"some train text " * 200)
    sagas = shipped_models()["gru-sagas"].read_bytes()
    assert sagas in coder.artifact()
    assert "model" not in str(coder.format_options())
    # A crafted header that names a nested locator does not get it to the decoder either.
    from compbench.coder import fingerprint
    from compbench.decoding import DecodePolicy, _coder_class
    from compbench.payload import make_header, read_header

    header = read_header(make_header("prefix:inner=(gru:model='/some/where/else.cbnm')", fingerprint(b"x"), 10, 0))
    assert _coder_class(header, DecodePolicy())[1] == {"inner": "gru"}
    # Another model is another spec, so results (and a tradeoff sweep's cache) tell them apart.
    assert coder.spec != registry.make_coder("prefix:inner=(gru):size=1000:store=(zlib)").spec


def test_a_share_too_small_for_any_stored_text_is_a_clear_error():
    coder = registry.make_coder("prefix:inner=(zlib):store=(zlib):share=0.001")
    coder.set_budget(10_000)  # 10 bytes for the stored part: not even the store coder's header fits
    with pytest.raises(CompbenchError, match="no stored text fits 0.001 of the 10,000-byte budget"):
        coder.fit(b"some train text " * 1000)
