"""The payload container: documented overhead, self-description, and a clear error (never a crash,
a hang or wrong bytes) for truncated, corrupted, wrong-artifact and unknown-version payloads."""

import lzma
import random
import signal
import zlib

import pytest

from compbench import registry
from compbench.errors import ArtifactError, PayloadError
from compbench.payload import FORMAT_VERSION, MAGIC, decode_payload, overhead, read_header, varint
from conftest import small_inputs


def test_lzma_payload_is_library_output_plus_documented_overhead():
    data = small_inputs()["text"] * 20
    payload = registry.make_coder("lzma").encode(data)
    expected = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    assert len(payload) == len(expected) + overhead("lzma", len(data))
    assert overhead("lzma", len(data)) == 27 + len("lzma") + len(varint(len(data)))
    assert payload.endswith(expected)


def test_header_describes_the_payload():
    data = b"hello world" * 100
    coder = registry.make_coder("zstd:level=5")
    h = read_header(coder.encode(data, chunk_size=256))
    assert (h.spec, h.size, h.chunk_size, h.crc) == ("zstd:level=5", len(data), 256, zlib.crc32(data))
    assert h.fingerprint == coder.artifact_fingerprint()


def test_defaults_are_pinned_because_headers_omit_them():
    """Payload headers store only non-default options; changing a default would change old payloads'
    meaning, so it must be a deliberate format change that updates this test."""
    pinned = {
        "zlib": {"level": 9}, "bz2": {"level": 9}, "lzma": {"preset": "9e"},
        "zstd": {"level": 22, "long": 0, "dict_size": 0, "dict_type": "trained"},
        "brotli": {"quality": 11, "lgwin": 24, "mode": "generic"}, "ppmd": {"order": 8, "mem_mib": 256},
        "identity": {},
    }
    for name, defaults in pinned.items():
        assert registry.make_coder(name).options_dict() == defaults


def test_decode_payload_finds_the_coder_from_the_header():
    data = small_inputs()["repetitive"]
    for spec in ("zlib:level=3", "bz2", "ppmd:order=4:mem_mib=8", "brotli:quality=4", "identity"):
        assert decode_payload(registry.make_coder(spec).encode(data)) == data


@pytest.mark.parametrize("payload,message", [
    (b"", "not a compbench payload"),
    (b"PK\x03\x04whatever", "bad magic"),
    (MAGIC, "truncated"),
    (MAGIC + bytes([FORMAT_VERSION + 1]) + b"\x00" * 30, "unknown payload format version 2"),
])
def test_malformed_payloads_give_clear_errors(payload, message):
    with pytest.raises(PayloadError, match=message):
        decode_payload(payload)


def test_truncated_body_is_reported():
    data = small_inputs()["text"]
    payload = registry.make_coder("lzma").encode(data)
    with pytest.raises(PayloadError, match="truncated|corrupted"):
        decode_payload(payload[:-10])


def test_wrong_artifact_is_detected_before_decoding():
    train_a = b"alpha beta gamma delta " * 2000
    train_b = b"one two three four five " * 2000
    a = registry.make_coder("zstd:dict_size=2048:dict_type=raw")
    a.fit(train_a)
    b = registry.make_coder("zstd:dict_size=2048:dict_type=raw")
    b.fit(train_b)
    payload = a.encode(b"alpha beta gamma")
    with pytest.raises(ArtifactError, match="wrong artifact"):
        decode_payload(payload, b.artifact())
    with pytest.raises(ArtifactError, match="wrong artifact"):
        b.decode(payload)
    with pytest.raises(ArtifactError, match="needs artifact"):
        decode_payload(payload, None)
    assert decode_payload(payload, a.artifact()) == b"alpha beta gamma"


def test_payload_of_another_coder_is_refused():
    payload = registry.make_coder("zlib").encode(b"abc")
    with pytest.raises(PayloadError, match="written by coder 'zlib'"):
        registry.make_coder("bz2").decode(payload)


class _Alarm(Exception):
    pass


def _decode_with_deadline(payload, artifact, seconds=20):
    """A hang is a failure, not a stuck CI job."""
    def handler(*_):
        raise _Alarm()

    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        return decode_payload(payload, artifact)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


FUZZ_SPECS = ["identity", "zlib", "bz2", "lzma", "zstd:level=19", "brotli:quality=9", "ppmd:order=6:mem_mib=16",
              "zstd:dict_size=1024:dict_type=raw"]


@pytest.mark.parametrize("spec", FUZZ_SPECS)
def test_seeded_fuzz_corrupt_truncated_and_wrong_artifact_payloads(spec):
    """600 mutated payloads per coder (4,800 in all): each must decode to exactly the original or
    raise PayloadError. Anything else (another exception, a hang, wrong bytes) fails the test."""
    rng = random.Random(f"fuzz-{spec}")
    coder = registry.make_coder(spec)
    if coder.needs_fit:
        coder.fit(small_inputs()["text"] * 3)
    other_artifact = b"not the artifact" if coder.artifact() else b"unexpected artifact bytes"
    inputs = [small_inputs()["text"][:3000], small_inputs()["random-4096"][:1500], b"x", b""]
    outcomes = {"error": 0, "same": 0}
    for i in range(600):
        data = inputs[i % len(inputs)]
        payload = bytearray(coder.encode(data, chunk_size=700 if i % 5 == 0 else 0))
        artifact = coder.artifact()
        kind = i % 6
        if kind == 0:  # flip 1-3 random bits anywhere
            for _ in range(rng.randint(1, 3)):
                pos = rng.randrange(len(payload))
                payload[pos] ^= 1 << rng.randrange(8)
        elif kind == 1:  # truncate
            del payload[rng.randrange(len(payload)):]
        elif kind == 2:  # overwrite a run of bytes in the body
            start = rng.randrange(len(payload))
            for j in range(start, min(len(payload), start + rng.randint(1, 16))):
                payload[j] = rng.getrandbits(8)
        elif kind == 3:  # append garbage
            payload += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
        elif kind == 4:  # wrong artifact
            artifact = other_artifact
        else:  # drop a byte in the middle
            if payload:
                del payload[rng.randrange(len(payload))]
        try:
            out = _decode_with_deadline(bytes(payload), artifact)
        except PayloadError:
            outcomes["error"] += 1
            continue
        assert out == data, f"mutation {i} (kind {kind}) decoded to wrong bytes"
        outcomes["same"] += 1
    assert outcomes["error"] > 400  # nearly every mutation must be caught


@pytest.mark.parametrize("spec", ["lzma", "ppmd:order=6:mem_mib=16", "zstd:level=3"])
def test_decoders_themselves_reject_corrupted_bodies(spec):
    """Beneath the body checksum: a coder's own decoder, handed a corrupted body, still gives
    PayloadError (via decode_verified's wrapping) or the CRC check catches its output. The body CRC
    is recomputed here so the mutation reaches the decoder. Runs in a subprocess: pyppmd can crash
    its process on garbage, and that must fail this test, not the test run."""
    import subprocess
    import sys

    code = f"""
import random, struct, zlib
from compbench import registry
from compbench.errors import PayloadError
from compbench.payload import read_header, decode_verified
coder = registry.make_coder({spec!r})
data = (b"The quick brown fox jumps over the lazy dog. " * 60)[:2500]
payload = coder.encode(data)
h = read_header(payload)
rng = random.Random(7)
errors = 0
for i in range(150):
    body = bytearray(payload[h.header_bytes:])
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(len(body))
        body[pos] ^= 1 << rng.randrange(8)
    h2 = h.__class__(**{{**h.__dict__, "body_crc": zlib.crc32(bytes(body))}})
    try:
        out = decode_verified(coder, h2, bytes(body))
        assert out == data, "wrong bytes"
    except PayloadError:
        errors += 1
print(errors)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if proc.returncode < 0 and spec.startswith("ppmd"):
        pytest.xfail(f"pyppmd crashed on a corrupted body (signal {-proc.returncode}): a library bug; "
                     "compbench's body checksum keeps such bodies away from it")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 100
