"""Golden values: the shipped models' probabilities and coded bits on a fixed input are pinned.

An engine change that alters one probability would silently break every payload written before it;
these values make it fail a test instead. They were identical before and after the refactor that
moved the engine into ``compbench.models`` (checked against the previous release's code). If a
change is meant to alter them, bump ``ENGINE_VERSION`` in ``models/artifact.py``, retrain or repack,
and update the values and the README together."""

import hashlib
import json

import pytest

from compbench import registry
from compbench.models import WEIGHTS_DIR, artifact


def golden_input() -> bytes:
    """A fixed 921-byte input: wiki markup, prose and a repeat the match model finds."""
    para = (b"<page>\n  <title>Lossless compression</title>\n  <text>'''Lossless compression''' is a class of "
            b"[[data compression]] that allows the original data to be perfectly reconstructed from the "
            b"compressed data with no loss of information. ")
    prose = (b"Determinism is the product: a payload must decode bit-exactly, in a fresh process, whatever the "
             b"thread count or CPU instruction set. ")
    return (para + prose * 3 + para + b"</text>\n</page>\n" * 4)[:1500]


GOLDEN = {  # spec: (sha256 of every probability coded, sha256 of the coded body)
    # mix=0: the LM and a per-stream match model (float64 probabilities), unchanged since release 3.
    "gru:mix=0": ("e205bb5a7b5b3f9c5bb558e3d7e9458875c66a7b1bbe431bc76662556909c44b",
                  "c1704216d0a7aa3f0ad7a66988edf6ebc88163d298aecc1def24dc4c877c9923"),
    "gru:model=sagas:mix=0": ("46a95fd743545820986883b09aa9971bcf57e50e10e300bcb27e6f5cefde1d4c",
                              "c7245d39fe935e7cf5477e249db110fd549e87353f97743cf4b6b3481e34a10a"),
    "gru:model=dickens:mix=0": ("1e59d2d380abc05e70c5f89f9759b29638870c68b06bc0f84d65692f12fa7168",
                                "2849929bf611fc8f77459a659721ae3a57e64c2c49de7d94101fb526bb26bce2"),
    "gru:model=ptb:mix=0": ("2155726ff2882ac97d5f37867ed5e8227c89c578e979cb88d672eddcab006c36",
                            "4bef078a0e4750f7aaa60e90c31404feb9e831d26f1719c89a171e64838b5523"),
    "transformer:mix=0": ("f7d20d05f08617505cc15fb434c1dd4a8808359e4ee578c4116d2087199c31bc",
                          "218caa5418d8c14c72daeb3f3766e82da38e0220a58cc1b83fb1c037daac7cb0"),
    # mix=1 (the default): context mixing, 12-bit probabilities per bit.
    "gru": ("6b0cd0c799571b7ec4e6990ee0c70950bbae6f5e7a8a97a1b4aa65e6d567f758",
            "5b39e4cea33f8b7a4abc6a3479441c93829dea4616f7e30734285432fe2fc56f"),
    "gru:model=sagas": ("f94f445027a690fdd2f0ecf009aa9c0e2e6aef19f322b264274e1d3fadfadb8b",
                        "4a5969d5a1eb259bf8b9202a7487fc4c3f1753f6574befe8d934b12052c3fd58"),
    "gru:model=dickens": ("db8a6512f7641bfbf2fb70d5bf41c499b8984768fa341e60e81d3e40f31302b6",
                          "0d9be15e697436171907659ac8e46d0f978f73588a197bef9011404dc4a05673"),
    "gru:model=ptb": ("d5a427da69fe2d6f06844e4f55bbdc881ce4be7f24e595c2f08b8a5f3d3147a2",
                      "116e6d87cbbdfa1270560b31faacfc5e210390218dd047f82efcec26180a106b"),
    "transformer": ("40d8ed6a07e111c8165756f196d830d385a4bcb72a6c495d1d1dc4c1be8f567c",
                    "6c798622a43c82965941970ddbeafa5b6f796303642f9232b18a11a01a8eac5d"),
}


@pytest.mark.parametrize("spec", list(GOLDEN))
def test_shipped_model_probabilities_and_payload_bits_are_pinned(spec):
    coder = registry.make_coder(spec)
    data = golden_input()
    assert coder.probability_digest(data) == GOLDEN[spec][0], f"{spec}: the engine computes other probabilities"
    body = coder.encode_body(data)
    assert hashlib.sha256(body).hexdigest() == GOLDEN[spec][1], f"{spec}: the coded bits changed"
    if spec.startswith("gru") or spec == "transformer":  # decoding steps one byte at a time
        assert coder.decode_body(body, len(data)) == data


@pytest.mark.parametrize("path", sorted(WEIGHTS_DIR.glob("*.cbnm")), ids=lambda p: p.stem)
def test_shipped_artifacts_carry_this_release_s_decoder_code(path):
    """The decoder code an artifact is charged for must be the code that runs it; after editing the
    engine, repack (``artifact.repack``) and update the records, README and golden payloads."""
    blob = path.read_bytes()
    header, _ = artifact.unpack(blob)
    current = artifact.decoder_code(header["arch"])
    assert header["code"] == [[name, len(b)] for name, b in current], f"{path.name}: repack it"
    assert artifact.repack(blob) == blob, f"{path.name}: its code differs from this release's: repack it"
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["artifact_sha256"] == hashlib.sha256(blob).hexdigest()
    assert record["artifact_bytes"] == len(blob)
