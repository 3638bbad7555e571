"""Every registered coder round-trips edge-case inputs and every Canterbury and Calgary file,
decoded by a fresh decoder rebuilt from the artifact bytes alone."""

import random
import sys

import pytest

from compbench import registry
from compbench.corpus import load_corpus
from conftest import data_dir, small_inputs

PY_ZLIB = (
    f"external:compress='{sys.executable} -c \"import sys,zlib;sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read(),9))\"'"
    f":decompress='{sys.executable} -c \"import sys,zlib;sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read()))\"'"
)


PREFIX = "prefix:inner=(ppmd:order=4:mem_mib=16):store=zlib:size=20000"  # its default size needs a --budget
TRAIN = b"".join(b"train text %d for coders that fit: the quick brown fox. " % i for i in range(2000))


def _golden_plate() -> str:
    """golden-plate needs a submission: a numpy bigram zip (written by the test, not the exporter),
    made once per test process. Short segments: every coded step is one predict call."""
    import tempfile
    from pathlib import Path

    from test_submission_sandbox import bigram_zip

    path = bigram_zip(Path(tempfile.mkdtemp(prefix="compbench-gp-")) / "bigram.zip", TRAIN)
    return f"golden-plate:zip={path}:min_segment=1024"


GOLDEN_PLATE = _golden_plate()
SPECIAL = {"external": PY_ZLIB, "prefix": PREFIX, "golden-plate": GOLDEN_PLATE}


def one_per_coder():
    """One spec per registered coder at its defaults (external needs templates, prefix a size,
    golden-plate a submission)."""
    return [SPECIAL.get(name, name) for name in registry.coders()]


def coder_specs():
    """Every coder, plus non-default variants."""
    return one_per_coder() + ["zstd:level=3:long=27", "zstd:level=-5", "lzma:preset=0", "brotli:quality=5:lgwin=16:mode=text",
              "ppmd:order=4:mem_mib=16", "zlib:level=1", "bz2:level=1"]


def roundtrip(spec: str, data: bytes, chunk_size: int = 0):
    coder = registry.make_coder(spec)
    if coder.needs_fit:
        coder.fit(TRAIN)
    payload = coder.encode(data, chunk_size=chunk_size)
    decoder = type(coder).from_artifact(coder.artifact(), **coder.options_dict())
    assert decoder.decode(payload) == data
    return payload


def test_every_registered_coder_is_covered():
    covered = {registry.make_coder(s).name for s in coder_specs()}
    assert covered == set(registry.coders())


def _small_cases():
    """Every coder x every small input; neural coders' inputs over 16 KB are `slow` (the transformer
    codes ~2 KB/s), the rest run in CI."""
    for spec in coder_specs():
        for name, data in small_inputs().items():
            marks = [pytest.mark.slow] if _neural(spec) and len(data) > 16384 else []
            sid = spec.split(":")[0] if spec.startswith(("external", "golden-plate")) else spec
            yield pytest.param(spec, name, data, marks=marks, id=f"{sid}-{name}")


def _neural(spec: str) -> bool:
    """Coders at tens of KB/s or less: the neural ones, and a submission (one predict call per step)."""
    return registry.get_coder_class(spec.split(":")[0]).family in ("neural", "submission")


@pytest.mark.parametrize("spec,name,data", list(_small_cases()))
def test_roundtrip_small_inputs(spec, name, data):
    roundtrip(spec, data)


@pytest.mark.parametrize("spec", ["identity", "zlib", "lzma", "zstd", "ppmd", "bz2", "brotli:quality=5"])
def test_roundtrip_chunked(spec):
    data = small_inputs()["text"] + small_inputs()["random-4096"]
    roundtrip(spec, data, chunk_size=2048)
    roundtrip(spec, data[:2048], chunk_size=2048)  # exactly one chunk
    roundtrip(spec, b"", chunk_size=2048)  # no chunks at all


# Neural coders run at tens of KB/s: the 6 MB of both corpora is a `slow` check for them.
@pytest.mark.parametrize("corpus", ["canterbury", "calgary"])
@pytest.mark.parametrize(
    "spec", [pytest.param(s, marks=pytest.mark.slow) if _neural(s) else s for s in one_per_coder()],
    ids=lambda s: s.split(":")[0],
)
def test_roundtrip_canterbury_and_calgary(spec, corpus):
    d = data_dir()
    if d is None:
        pytest.skip("corpora not available: set COMPBENCH_DATA")
    files = load_corpus(corpus, data_dir=d).members
    assert len(files) == {"canterbury": 11, "calgary": 18}[corpus]
    for member in files:
        roundtrip(spec, member.data)


def test_zstd_trained_dictionary_roundtrips_from_artifact_alone():
    train = small_inputs()["text"] * 4 + bytes(range(256)) * 64
    for dict_type in ("trained", "raw"):
        coder = registry.make_coder(f"zstd:level=19:dict_size=4096:dict_type={dict_type}")
        assert coder.needs_fit
        coder.fit(train)
        artifact = coder.artifact()
        assert 0 < len(artifact) <= 4096
        data = b"The quick brown fox, again and again. " * 50
        payload = coder.encode(data)
        decoder = type(coder).from_artifact(artifact, **coder.options_dict())
        assert decoder.decode(payload) == data


def test_zlib_and_zstd_use_context_bytes():
    context = small_inputs()["text"]
    data = b"The quick brown fox jumps over the lazy dog. And then it slept."
    for spec in ("zlib", "zstd:level=19"):
        coder = registry.make_coder(spec)
        with_ctx, without = coder.encode(data, context=context), coder.encode(data)
        assert len(with_ctx) < len(without)
        assert coder.decode(with_ctx, context=context) == data


def test_ppmd_primed_with_context_round_trips_and_pays_off():
    """PPMd priming is real coding: the decoder regenerates the stream the context produced, so
    the payload holds only the data's share, and a context that predicts the data shrinks it."""
    import io

    from compbench.payload import BodyReader, _Reader, frame

    rng = random.Random(11)
    words = [bytes(rng.choice(b"etaoinshrdlu") for _ in range(rng.randint(3, 9))) for _ in range(800)]
    text = b" ".join(rng.choice(words) for _ in range(40_000))
    context, data = text[:150_000], text[150_000:190_000]
    coder = registry.make_coder("ppmd:order=6:mem_mib=16")
    primed, plain = coder.encode(data, context=context), coder.encode(data)
    assert len(primed) < 0.8 * len(plain)
    assert coder.decode(primed, context=context) == data
    with pytest.raises(Exception):
        assert coder.decode(primed) == data  # without its context the payload cannot decode
    body = b"".join(coder.encode_stream([data[i:i + 7000] for i in range(0, len(data), 7000)], len(data), context))
    assert body == coder.encode_body(data, context)  # streamed and one-shot bodies agree
    framed = io.BytesIO(b"".join(frame([body])))
    assert b"".join(coder.decode_stream(BodyReader(_Reader(framed)), len(data), context)) == data
