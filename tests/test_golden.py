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
    # mix=0: the LM and a per-stream match model (float64 probabilities), the engine unchanged since
    # release 3. The GRUs for enwik8, the sagas, dickens and ptb were retrained on a GPU (new weights,
    # same engine), which gave them new values; ptb-small and the transformer kept theirs.
    "gru:mix=0": ("a85de798dcafd1bd806dea998862855cda4f8d15fc21264dfa7342f202783605",
                  "ed540f64cb827b3a0fcc53f7d809dc86f019c7fc3b30ef5330e9a12544789719"),
    "gru:model=sagas:mix=0": ("25d1c29ab01d0f739f4b730b6893c3c1533c56745f548b1e65e5b6ceb6320abc",
                              "14c331c3cca698d431ac996cceff5ddd603190b9bbd390ff54042ba4368ad135"),
    "gru:model=dickens:mix=0": ("67646bc0ecc17ac702f7f5dc1c5b4a22ddd591d9bf24b2a3ad355a971cb1129b",
                                "efcf522475234f4ae29b05dbc8caa4ba5b90ce787f8ae0e72f35eeb10b9bf454"),
    "gru:model=ptb:mix=0": ("58fdcd54222b4b35224246a44f7e663b958e5e9750d45584f4a6cec6d8603f78",
                            "25fb8807a94b465cc73ac0fc373d759efe209a0b47728e3c4e087b5a76d25382"),
    # The transformer's values until it got the window option (default 256): window=512, the
    # shipped model's whole context, codes exactly as the transformer always did.
    "transformer:mix=0:window=512": ("f7d20d05f08617505cc15fb434c1dd4a8808359e4ee578c4116d2087199c31bc",
                                     "218caa5418d8c14c72daeb3f3766e82da38e0220a58cc1b83fb1c037daac7cb0"),
    "transformer:mix=0": ("176419c64cf2ae9d42588b4a11b79b6cc8c991d516151786fbca4cad955821eb",
                          "6c02b3e97cc451e3161b4a0ea533de23021a8cc94f534efed53b4091851d06fe"),
    "gru:model=ptb-small:mix=0": ("75c06c9856b7131c9fd98b1daa06ef77387fa54fb97977c6e74771f6160c09cf",
                                  "9f447640e7ba961543f61b36e7d4ad6c14de90984b134b66a2503b67e5a769ba"),
    # mix=1 (the default): context mixing, 12-bit probabilities per bit. Changed by the release that
    # added orders 7-8, the word-trigram context and check bytes (no payload of the earlier mixer
    # decodes with this one: the artifacts it names carried the earlier code and are not shipped).
    "gru": ("3859d41dd6e3f477a48c8a3b2f8060405cbb7221c04da8a38382c8f8d7e43972",
            "9b9f51d3ca39e123a9f279e1b50edf9650f9607f6dd174c19cdf7948df1d69cc"),
    "gru:model=sagas": ("9942001313322ef111cb163aa32cfb12a5279ecd2d48c6d424f0cdebef99aa73",
                        "9d065b29dc8298a750f7c36d18792953a5cfb6b88c5f4af9a338061a74cb45ba"),
    "gru:model=dickens": ("1a558932b288b301d28a1bfd9c8b6646edd891373296a860a81a34f00d351735",
                          "359c435775f53d68ddf141ebb3c17094c5dc83c221298ec5353ea82299ca8689"),
    "gru:model=ptb": ("f031a87e54ed8f1007f5466f2608d5c29916882fa978c54bddeccd651b2e1856",
                      "9c214277fdb10972999050ef85f7312ef02c532fd0938bd2aa9d148499de403c"),
    "gru:model=ptb-small": ("2be59efe81c2e9cff9c15323e195e963f74a4603084837f4681257dab677fc05",
                            "cc15f733e904fd12484e12ce0e09592f6efb3aaf13d9a6f97702a5110c6bdff6"),
    "transformer:window=512": ("03baea04f30e63e6bc36a5a1dd9c2c6cf56691cb82ce6dc0e4fbc9e10e7d53c5",
                               "f4184fe4a5d8fa357f9710310f85a986580d8e1a2f2ba96ead6d5ec0358e37e1"),
    # The default window (256 of the model's 512), and one short enough that the 921 bytes wrap the
    # KV ring many times.
    "transformer": ("215339e056d1ed704b4fada791c364b617dae9e9c7b0be7741292c40508717cc",
                    "7c00e12b976196c2610860086bc12f5060b9f92a87594f78316f007b7fa868df"),
    "transformer:window=16": ("265a89efc70066e3396cce9953743dad6dd808fd2a01a129e669d053c7f37979",
                              "132013b5a11d229a297b07fafe9b8d02957f5a64d2047bceaafdb5937600d2f7"),
    # mix=1 over 55 streams of 17 bytes: two groups of streams take turns at each step
    # (lockstep.mixed_groups), the layout every default run of 32 streams or more codes with.
    "gru:min_segment=16": ("cb59a9b0063b50c8ff86bbb829c2af51335d3ec6c79a88dabcfba02481f004d8",
                           "9f1cc38e90037e5d0fe3c720f549d6c079c06ec78ce564a7665033555b7bb7eb"),
    "transformer:min_segment=16": ("1ce375844d14e6c87205789c155db99638dc0b9bd288f2633b5053c189a9851e",
                                   "79f085c7200c1fba04d75c5842fcbe6367b9cbf33d1c521cd20101572af34ebc"),
}


@pytest.mark.parametrize("spec", list(GOLDEN))
def test_shipped_model_probabilities_and_payload_bits_are_pinned(spec):
    coder = registry.make_coder(spec)
    data = golden_input()
    assert coder.probability_digest(data) == GOLDEN[spec][0], f"{spec}: the engine computes other probabilities"
    body = coder.encode_body(data)
    assert hashlib.sha256(body).hexdigest() == GOLDEN[spec][1], f"{spec}: the coded bits changed"
    if spec.split(":")[0] in ("gru", "transformer"):  # decoding steps one byte at a time
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


@pytest.mark.parametrize("path", sorted(WEIGHTS_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_every_shipped_model_s_record_says_which_device_trained_it(path):
    """A shipped model's record names the device that trained it (a CPU, or a GPU where one was
    lent), as ``compbench train`` writes it, and how long it trained."""
    record = json.loads(path.read_text())
    assert record["device"].startswith(("CPU: ", "GPU: ")), f"{path.name}: say which device trained it"
    assert record["minutes"] > 0
