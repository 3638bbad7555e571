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
    "gru:model=ptb-small:mix=0": ("75c06c9856b7131c9fd98b1daa06ef77387fa54fb97977c6e74771f6160c09cf",
                                  "9f447640e7ba961543f61b36e7d4ad6c14de90984b134b66a2503b67e5a769ba"),
    # mix=1 (the default): context mixing, 12-bit probabilities per bit. Changed by the release that
    # added orders 7-8, the word-trigram context and check bytes (no payload of the earlier mixer
    # decodes with this one: the artifacts it names carried the earlier code and are not shipped).
    "gru": ("692410226060ddaf6488312155d5eeecab9c169b6eae1d19b8ece3ee84834a1f",
            "53396f2b377d476451a1cfb611445b760e69d9eb2accc63f84be7ffe338d6a0c"),
    "gru:model=sagas": ("4ccb3d1da770cf4e0cb64aa05680327b6262c9ef72c76648666670ad2c3ab9c6",
                        "f05ea4b2c15f13f967d7d4c6ab56e5a6cccbd3df4ab59155fbcc3c24fbcda55e"),
    "gru:model=dickens": ("25c39cacbbc02f6cde7c65b2357cd66c6dbce6c6eb6a2ac1459db2fb3cd3812e",
                          "928d1fbb3373b1a0dd4db3298a9f8ca4b6f2a39dcf0f54c4f5ed9c1426b09167"),
    "gru:model=ptb": ("ef3b73f63e0c37ffdceccddc3df8379d3ab746933d42abb03b12e6517fef3b8f",
                      "d59b1e905b2786e37fb14ec883d68a826dbc8bf34024d3d323a8dfe280e52429"),
    "gru:model=ptb-small": ("2be59efe81c2e9cff9c15323e195e963f74a4603084837f4681257dab677fc05",
                            "cc15f733e904fd12484e12ce0e09592f6efb3aaf13d9a6f97702a5110c6bdff6"),
    "transformer": ("03baea04f30e63e6bc36a5a1dd9c2c6cf56691cb82ce6dc0e4fbc9e10e7d53c5",
                    "f4184fe4a5d8fa357f9710310f85a986580d8e1a2f2ba96ead6d5ec0358e37e1"),
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
