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
    # added orders 7-8, the word-trigram context and check bytes, and again by engine v2 (nibble
    # buckets; the tables learn stream by stream). No payload of an earlier mixer decodes with this
    # one: the artifacts it names carried the earlier code and are not shipped.
    "gru": ("271c3c69e6062df8a1c21022c81392b47e6128b55d7a656f40e960f1b75ee07e",
            "931395b0d75f39fa0bd61b47822a10fbc8a1a6ef71b85289be7af980ec8c21fb"),
    "gru:model=sagas": ("038840c036b8a2752102779a8acadb9f78c492e2cedc3be7926702ee66cf3d87",
                        "906d1500196b7042aefbed752cfccf5d9a31f3e0aac32819de43ef910513c556"),
    "gru:model=dickens": ("12eb1e4086ede2f1affd4816ca03d813a9c297902420699010205e1161cd3e4a",
                          "38a785ff61513352edc1069a09fadd5470f2a95342e4a1a868578b467a31b0e7"),
    "gru:model=ptb": ("414616e3bd8c496372dad918caa5ddcda190aa6c06bcd2eb338321551c99148e",
                      "ad3b7e2533edf090a725463024fea4671c2bf00d152a9170319aa8149a7dedce"),
    "gru:model=ptb-small": ("07a9684daef66dd467fdb27e7c350574c79989aceea2746539ec1d4394b0ebb6",
                            "5f90b14a487dd4e226cebc241cc7c1864915abccddbb6ff0e835f1dcd10bc4ad"),
    "transformer:window=512": ("edf950178bbfb056e851764a144df1b2bcde9d809bc6b0495994ea389a39cdbb",
                               "079c3a2e2df08b3c44fa13c7dec89ccd421d82be3892998ae57be66d8fdd36dd"),
    # The default window (256 of the model's 512), and one short enough that the 921 bytes wrap the
    # KV ring many times.
    "transformer": ("ae98b23a829a35afee3d80c8d24bb1523d276888e7b847c51305e85ab6357d14",
                    "1e22505870a9252aa3a784b7183633d79da448f874eb199a9c781582a80a3a4a"),
    "transformer:window=16": ("431689aed51e9bc906607a7bfb0fd15f6481979ecae489a2259339cd213f0363",
                              "6e45b9a7c4457cd40503f732dac59717584f558036ce255676ae2d6fa7028c19"),
    # mix=1 over 55 streams of 17 bytes: two groups of streams take turns at each step
    # (lockstep.mixed_groups), the layout every default run of 32 streams or more codes with.
    "gru:min_segment=16": ("539787d970748f39c47458479ddada6e615b91c34efc127c4aef63e01ef8f377",
                           "0a564e3140c1a4e7aef16b312268579b1390d2601c9f4db585986e7268e95591"),
    "transformer:min_segment=16": ("cdb81a533d7e48ae304e44f029425a6b987e87720f2182f74175575e5453c1e0",
                                   "a8855ae716952da18bc54a145c6acc05e8638d597f2a18b8e4c3cf7214dd235f"),
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


@pytest.mark.parametrize("spec", ["gru", "gru:min_segment=16", "gru:model=ptb-small", "gru:model=sagas:mix=0"])
def test_the_shipped_grus_code_the_same_bits_on_either_route_of_the_int8_gemm(spec, monkeypatch):
    """Where the int8 GEMM runs, the GRU reaches oneDNN through torch._int_mm or through the matmul
    primitive that runs AMX tiles (whichever a start-up timing finds faster: intops.int8_route). Each
    must give the pinned probabilities and bits."""
    from compbench.models import intops, peak

    if not (intops._int_mm_available() and peak.has_int8_matmul()):
        pytest.skip("no int8 GEMM here, or no oneDNN matmul op in this torch")
    data = golden_input()
    for route in intops.INT8_ROUTES:
        monkeypatch.setattr(intops, "_INT8_ROUTE", route)
        coder = registry.make_coder(spec)
        assert coder.probability_digest(data) == GOLDEN[spec][0], f"{spec} on the {route} route"
        body = coder.encode_body(data)
        assert hashlib.sha256(body).hexdigest() == GOLDEN[spec][1], f"{spec} on the {route} route"
        assert coder.decode_body(body, len(data)) == data
        assert coder._engine.layers[0]["w_hh"].path() == {"int_mm": "int8", "matmul": "int8-u8"}[route]


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
