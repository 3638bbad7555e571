"""Measurement: bits are real payload bits, verification can fail, chunked accounting follows LMIC."""

import lzma
import zlib
from dataclasses import dataclass

import pytest

from compbench import registry
from compbench.coder import Coder
from compbench.corpus import Corpus, Member
from compbench.measure import MeasureConfig, measure
from compbench.decoding import decode_payload
from compbench.payload import overhead
from conftest import small_inputs


def corpus_of(**files) -> Corpus:
    return Corpus("mem", "all", tuple(Member(k, v) for k, v in files.items()))


def test_identity_is_8_bpb_plus_container():
    data = small_inputs()["random-4096"]
    (rec,) = measure(registry.make_coder("identity"), corpus_of(r=data), MeasureConfig(repeat=1))
    assert rec.payload_bytes == len(data) + overhead("identity", len(data), body_lengths=[len(data)])
    assert rec.bpb == pytest.approx(8 * rec.payload_bytes / len(data))
    assert rec.bpb_total == rec.bpb and rec.artifact_bytes == 0 and rec.roundtrip_ok
    assert rec.bpb_model is None and rec.container_bytes == overhead("identity", len(data), body_lengths=[len(data)])


def test_record_fields_and_lzma_size():
    data = small_inputs()["text"]
    (rec,) = measure(registry.make_coder("lzma"), corpus_of(t=data), MeasureConfig(repeat=2))
    body = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    assert rec.payload_bytes == len(body) + overhead("lzma", len(data), body_lengths=[len(body)])
    for key in ("encode_cpu_s", "encode_wall_s", "decode_cpu_s", "decode_wall_s", "encode_mb_s", "decode_mb_s"):
        assert getattr(rec, key) > 0
    assert rec.encode_wall_min_s <= rec.encode_wall_s
    assert rec.encode_peak_mem_bytes is None or rec.encode_peak_mem_bytes >= 0
    assert len(rec.file_sha256) == 64 and len(rec.corpus_sha256) == 64


@pytest.fixture
def lossy_coder():
    @registry.register_coder("lossy-test")
    class LossyCoder(Coder):
        """Drops the last byte on decode: verification must catch it."""

        @dataclass(frozen=True)
        class Options:
            pass

        def encode_body(self, data, context=b""):
            return zlib.compress(data)

        def decode_body(self, body, size, context=b""):
            return zlib.decompress(body)[:-1] + b"?"

    try:
        yield LossyCoder
    finally:
        registry.unregister_coder("lossy-test")


def test_verification_catches_a_coder_that_decodes_wrong(lossy_coder):
    (rec,) = measure(registry.make_coder("lossy-test"), corpus_of(t=b"hello world"), MeasureConfig(repeat=1))
    assert not rec.roundtrip_ok
    assert "CRC-32" in rec.error


def test_chunked_mode_codes_chunks_independently_and_accounts_headers_like_lmic():
    data = small_inputs()["text"]
    cs = 2048
    coder = registry.make_coder("zlib")
    (rec,) = measure(coder, corpus_of(t=data), MeasureConfig(repeat=1, chunk_size=cs))
    chunks = [data[i:i + cs] for i in range(0, len(data), cs)]
    bodies = [zlib.compress(c, 9) for c in chunks]
    assert rec.payload_bytes == overhead("zlib", len(data), cs, [len(b) for b in bodies]) + sum(map(len, bodies))
    header_once = len(zlib.compress(b"", 9))  # what every chunk repeats: the coding of nothing
    assert rec.bpb_lmic == pytest.approx(8 * (sum(map(len, bodies)) - header_once * (len(bodies) - 1)) / len(data))
    (whole,) = measure(coder, corpus_of(t=data), MeasureConfig(repeat=1))
    assert rec.bpb > whole.bpb  # independent chunks lose cross-chunk context
    assert decode_payload(coder.encode(data, chunk_size=cs)) == data


def test_trained_artifact_is_counted_in_bpb_total():
    coder = registry.make_coder("zstd:dict_size=2000:dict_type=raw")
    coder.fit(small_inputs()["text"] * 2)
    (rec,) = measure(coder, corpus_of(t=small_inputs()["text"][:1000]), MeasureConfig(repeat=1))
    assert rec.artifact_bytes == 2000 and rec.roundtrip_ok
    assert rec.bpb_total == pytest.approx(8 * (rec.payload_bytes + 2000) / 1000)


def test_slow_coders_are_timed_from_their_verification_pass():
    data = small_inputs()["text"]
    (rec,) = measure(registry.make_coder("lzma"), corpus_of(t=data), MeasureConfig(repeat=5, max_time_s=0.0))
    assert rec.roundtrip_ok and rec.repeat == 1  # the verification pass already took >= 0 s
    (rec,) = measure(registry.make_coder("lzma"), corpus_of(t=data), MeasureConfig(repeat=4, max_time_s=1e9))
    assert rec.repeat == 4


def test_a_file_that_cannot_fit_in_memory_is_refused_before_any_work(monkeypatch):
    """A clear error naming the way out, not an out-of-memory kill half-way through a run."""
    import sys

    from compbench.errors import CompbenchError

    measure_mod = sys.modules["compbench.measure"]  # `compbench.measure` the name is the function

    monkeypatch.setattr(measure_mod, "available_memory", lambda: 50_000_000)
    big = corpus_of(big=bytes(40_000_000))
    with pytest.raises(CompbenchError, match="needs about .* MB more to measure.*--chunk-size.*stream"):
        measure(registry.make_coder("zlib:level=1"), big, MeasureConfig(repeat=1))
