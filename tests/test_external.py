"""The external-command coder runs a real compressor CLI in a temp dir, with timeouts and clear errors."""

import sys

import pytest

from compbench import registry
from compbench.errors import ArtifactError, CompbenchError
from compbench.decoding import DecodePolicy, decode_payload
from compbench.payload import read_header

PY = sys.executable


def test_file_placeholders_and_stdout(tmp_path):
    comp, decomp = tmp_path / "comp.py", tmp_path / "decomp.py"
    comp.write_text("import sys, lzma\nopen(sys.argv[2], 'wb').write(lzma.compress(open(sys.argv[1], 'rb').read()))\n")
    decomp.write_text("import sys, lzma\nsys.stdout.buffer.write(lzma.decompress(open(sys.argv[1], 'rb').read()))\n")
    spec = f"external:compress='{PY} {comp} {{in}} {{out}}':decompress='{PY} {decomp} {{in}}'"
    coder = registry.make_coder(spec)
    data = b"external coders are ranked beside built-ins " * 100
    payload = coder.encode(data)
    with pytest.raises(CompbenchError, match="runs external programs"):
        decode_payload(payload)  # a payload never chooses programs to run
    assert decode_payload(payload, policy=DecodePolicy(allow_external=True)) == data
    assert decode_payload(payload, policy=DecodePolicy(coder_spec=spec)) == data
    # The spec embeds absolute temp paths, so judge the body, not the whole payload.
    body = len(payload) - read_header(payload).header_bytes
    assert body < len(data) / 10


def test_missing_program_timeout_and_failure_are_clear():
    with pytest.raises(CompbenchError, match="not found"):
        registry.make_coder("external:compress=no-such-compressor-xyz:decompress=cat").encode(b"x")
    slow = registry.make_coder(f"external:compress='{PY} -c \"import time; time.sleep(5)\"':decompress=cat:timeout=0.5")
    with pytest.raises(CompbenchError, match="timed out"):
        slow.encode(b"x")
    failing = registry.make_coder(f"external:compress='{PY} -c \"import sys; sys.exit(3)\"':decompress=cat")
    with pytest.raises(CompbenchError, match="exited with 3"):
        failing.encode(b"x")


def test_code_file_is_the_artifact(tmp_path):
    prog = tmp_path / "codec.bin"
    prog.write_bytes(b"pretend binary v1")
    spec = f"external:compress=cat:decompress=cat:code={prog}"
    coder = registry.make_coder(spec)
    assert coder.artifact() == b"pretend binary v1"
    payload = coder.encode(b"abc")
    assert decode_payload(payload, policy=DecodePolicy(coder_spec=spec)) == b"abc"  # code= is found
    assert decode_payload(payload, prog.read_bytes(), policy=DecodePolicy(coder_spec=spec)) == b"abc"
    prog.write_bytes(b"pretend binary v2")
    with pytest.raises(ArtifactError):
        decode_payload(payload, prog.read_bytes(), policy=DecodePolicy(coder_spec=spec))
