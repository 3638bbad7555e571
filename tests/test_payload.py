"""The payload container: documented overhead, self-description, and a clear error (never a crash,
a hang or wrong bytes) for truncated, corrupted, wrong-artifact and unknown-version payloads."""

import lzma
import random
import signal

import pytest

from compbench import registry
from compbench.errors import ArtifactError, PayloadError
from compbench.decoding import decode_payload
from compbench.payload import FORMAT_VERSION, MAGIC, overhead, read_header, varint
from conftest import small_inputs


def test_lzma_payload_is_library_output_plus_documented_overhead():
    data = small_inputs()["text"] * 20
    payload = registry.make_coder("lzma").encode(data)
    expected = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    assert len(payload) == len(expected) + overhead("lzma", len(data), body_lengths=[len(expected)])
    # header 18 + spec + varint n + varint chunk, trailer 4, one piece (varint L + CRC 4), end marker 1
    L = len(expected)
    assert len(payload) - L == 22 + len("lzma") + len(varint(len(data))) + 1 + len(varint(L)) + 4 + 1
    assert expected in payload  # the library's bytes, unchanged, as one piece


def test_header_describes_the_payload():
    data = b"hello world" * 100
    coder = registry.make_coder("zstd:level=5")
    h = read_header(coder.encode(data, chunk_size=256))
    assert (h.spec, h.size, h.chunk_size, h.version) == ("zstd:level=5", len(data), 256, FORMAT_VERSION)
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
    (MAGIC + bytes([FORMAT_VERSION + 1]) + b"\x00" * 30, "unknown payload format version 3"),
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


@pytest.mark.parametrize("spec", ["lzma", "ppmd:order=6:mem_mib=16", "zstd:level=3", "bz2", "brotli", "zlib"])
def test_decoders_themselves_reject_corrupted_bodies(spec):
    """Beneath the piece checksums: a coder's own decoder, handed a corrupted body inside a payload
    whose checksums are all valid (a crafted payload), gives PayloadError or the final CRC catches
    its output. pyppmd can crash its process on such bodies: decoding isolates it in a child
    process, so a crash is a PayloadError here too, never a dead test run."""
    from compbench.coder import fingerprint
    from compbench.payload import assemble

    coder = registry.make_coder(spec)
    data = (b"The quick brown fox jumps over the lazy dog. " * 60)[:2500]
    body = coder.encode_body(data)
    rng = random.Random(7)
    errors = 0
    for i in range(150):
        bad = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(bad))
            bad[pos] ^= 1 << rng.randrange(8)
        payload = assemble(coder.header_spec, fingerprint(b""), data, [bytes(bad)], 0)
        try:
            out = _decode_with_deadline(payload, None)
            assert out == data, "wrong bytes"
        except PayloadError:
            errors += 1
    assert errors > 100


STREAM_SPECS = ["identity", "zlib:level=1", "bz2:level=1", "lzma:preset=0", "zstd:level=1", "brotli:quality=3",
                "ppmd:order=3:mem_mib=16"]


@pytest.mark.parametrize("spec", STREAM_SPECS)
def test_streaming_encode_and_decode_cross_piece_boundaries(spec):
    """compbench encode/decode stream: bodies over several 1 MiB pieces (incompressible input), and a
    30:1 input whose decoder still holds output after its last input byte (brotli did), round-trip
    through write_stream and decode_file exactly as the CLI runs them."""
    import io

    from compbench.decoding import decode_file
    from compbench.payload import write_stream

    rng = random.Random(spec)
    noise = rng.randbytes(2_500_000)
    text = b"".join(b"line %d of a long and repetitive log file\n" % (i % 50) for i in range(400_000))
    coder = registry.make_coder(spec)
    for data in (noise, text):
        out = io.BytesIO()
        write_stream(coder, io.BytesIO(data).read, len(data), out.write)
        back = []
        decode_file(io.BytesIO(out.getvalue()), back.append)
        assert b"".join(back) == data
        assert max(map(len, back)) <= 2 * coder.STREAM_PIECE  # output comes in bounded pieces


# Written by compbench 0.1 (commit 28eada6), payload format 1: they must keep decoding.
V1_PAYLOADS = {
    "zlib": "8943425001047a6c6962e3b0c44298fc1c14a80a00d8a81268e51a0015c9c4b67b78da2b4b2d2acecccf5330542848acccc94f4c"
            "2956282ec9ccc95148494dce4f49d553281b5530aa6054c1a88291ad00009ba8dd40",
    "lzma:preset=6": "89434250010d6c7a6d613a7072657365743d36e3b0c44298fc1c14a80a00d8a81268873a4cc9b299d3a0fd377a585a000004e6d6b4"
                     "460200210116000000742fe5a3e00527002e5d003b194aac0bd2be586923d5ecf4abd5ac116db41b4c5f7ed087c315fc27297"
                     "34b402db5722148a0608864623fd100000000c970de708a573a8200014aa80a000000e4c97c42b1c467fb020000000004595a",
    "zstd:level=3 in 300-byte chunks": (
        "89434250010c7a7374643a6c6576656c3d33e3b0c44298fc1c14a80aac02d8a81268114694ee928361cb343434343228b52ffd602c"
        "00550100140276657273696f6e2031207061796c6f616473207374696c6c206465636f64652e2001004120aa7a0228b52ffd602c00"
        "550100140273696f6e2031207061796c6f616473207374696c6c206465636f64652e2076657201004120aa7a0228b52ffd602c0055"
        "010014026e2031207061796c6f616473207374696c6c206465636f64652e2076657273696f01004120aa7a0228b52ffd602c005501"
        "001402207061796c6f616473207374696c6c206465636f64652e2076657273696f6e203101004120aa7a0228b52ffd20784d010014"
        "02796c6f616473207374696c6c206465636f64652e2076657273696f6e203120706101002132a927"),
    "ppmd:order=6:mem_mib=16": "89434250011770706d643a6f726465723d363a6d656d5f6d69623d3136e3b0c44298fc1c14a80a00d8a81268e63331b5d2a4"
                               "365b0075ed9356bb6520e159f21f7540ea99346c515f39c6262aeae5e0453c218b60066400000000000000000000",
}


@pytest.mark.parametrize("name", list(V1_PAYLOADS))
def test_version_1_payloads_from_the_previous_release_still_decode(name):
    import io

    from compbench.decoding import decode_file

    payload = bytes.fromhex(V1_PAYLOADS[name])
    want = b"version 1 payloads still decode. " * 40
    assert payload[4] == 1 and read_header(payload).version == 1
    assert decode_payload(payload) == want
    out = []
    decode_file(io.BytesIO(payload), out.append)  # the CLI's path
    assert b"".join(out) == want
    bad = bytearray(payload)
    bad[-3] ^= 1
    with pytest.raises(PayloadError):
        decode_payload(bytes(bad))
