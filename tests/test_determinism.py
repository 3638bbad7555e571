"""A neural payload decodes bit-exactly in a fresh process on a "different machine": another thread
count, torch's scalar kernels (ATEN_CPU_CAPABILITY=default), oneDNN capped at AVX2 or SSE4.1, numpy
without AVX2/AVX-512 dispatch, no int8 GEMM at all, and an emulated AVX2-only machine (numba's
compiled code for AVX2, not this host's AVX-512). Each subprocess also hashes every float64
probability it computes on the decoder's one-step-at-a-time path; the hashes must equal those of the
encoder's path (the transformer's encoder computes many positions at once), not merely decode."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from compbench import registry
from conftest import speed_bench


def _numpy_dispatch_off() -> str:
    """NPY_DISABLE_CPU_FEATURES value that turns off every dispatched SIMD target above the baseline."""
    try:
        from numpy._core import _multiarray_umath as m
    except ImportError:  # numpy 1.x
        from numpy.core import _multiarray_umath as m
    return " ".join(f for f in m.__cpu_dispatch__ if m.__cpu_features__.get(f))


MACHINES = {
    "1-thread": {"OMP_NUM_THREADS": "1"},
    "2-threads": {"OMP_NUM_THREADS": "2"},
    "aten-default-isa": {"ATEN_CPU_CAPABILITY": "default"},
    "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "numpy-baseline-simd": {"NPY_DISABLE_CPU_FEATURES": _numpy_dispatch_off()},
    "oldest": {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
               "COMPBENCH_NO_INT_MM": "1", "COMPBENCH_NO_GEMM16": "1"},
    # Two threads and the int16-pair GEMM (an AVX2 machine without an int8 one): the GRU's helper
    # runs its recurrent sums and output weights while this thread runs the gates and mixes.
    "2-threads-int16-gemm": {"OMP_NUM_THREADS": "2", "COMPBENCH_NO_INT_MM": "1"},
    # Two threads and the int8 GEMM for every engine where the CPU has one: the transformer otherwise
    # takes the int16 kernel wherever the int8 GEMM runs (transformer._Int16First), so only this tests its
    # torch._int_mm path there.
    "2-threads-int8-gemm": {"OMP_NUM_THREADS": "2", "COMPBENCH_NO_GEMM16": "1", "COMPBENCH_INT8_ROUTE": "int_mm"},
    # The int8 GEMM's other route into oneDNN, its matmul primitive (AMX tiles where the CPU has them),
    # which the engines take where a start-up timing finds it faster: the GRU hands it q + 128 as uint8.
    "2-threads-int8-matmul": {"OMP_NUM_THREADS": "2", "COMPBENCH_NO_GEMM16": "1", "COMPBENCH_INT8_ROUTE": "matmul"},
    # Two threads and the float32 GEMM path: the GRU's helper thread runs only its recurrent sums.
    "2-threads-float-gemm": {"OMP_NUM_THREADS": "2", "COMPBENCH_NO_INT_MM": "1", "COMPBENCH_NO_GEMM16": "1"},
    # An AVX2-only machine, as the speed benchmark emulates one: numba compiles the mixer, the gates
    # and the kernels for another instruction set (no AVX-512 on an AVX-512 host), torch, oneDNN and
    # MKL are capped at AVX2, and there is no int8 GEMM.
    "avx2-emulated": {"OMP_NUM_THREADS": "2", **speed_bench().avx2_env()},
}

PROBE = r"""
import hashlib, json, sys, torch
from compbench import registry
from compbench.decoding import decode_payload
arch, art, payload, data, opts = sys.argv[1], *(open(p, "rb").read() for p in sys.argv[2:5]), json.loads(sys.argv[5])
out = decode_payload(payload, art)
coder = registry.get_coder_class(arch).from_artifact(art, **opts)
from compbench.models import intops
print(json.dumps({"decoded": hashlib.sha256(out).hexdigest(), "probs": coder.probability_digest(data, stepwise=True),
                  "threads": torch.get_num_threads(), "isa": torch.backends.cpu.get_cpu_capability(),
                  "route": intops.int8_route() if intops.matrix_path() == "int8" else None}))
"""


@pytest.mark.parametrize("mix", [1, 0])
@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_payload_decodes_bit_exactly_on_other_machines(tiny_models, arch, mix, tmp_path):
    """Both codings: context mixing (integer tables and mixer shared by the streams) and the LM with
    a per-stream match model."""
    path, _ = tiny_models[arch]
    coder = registry.make_coder(f"{arch}:model='{path}':streams=5:min_segment=700:mix={mix}")
    rng = np.random.default_rng(7)
    data = (b"Determinism is the product: " * 150) + rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
    payload = coder.encode(data)
    want = {"decoded": hashlib.sha256(data).hexdigest(), "probs": coder.probability_digest(data)}
    files = {"art": path, "payload": tmp_path / "p.cbp", "data": tmp_path / "d.bin"}
    files["payload"].write_bytes(payload)
    files["data"].write_bytes(data)
    for machine, env in MACHINES.items():
        res = subprocess.run(
            [sys.executable, "-c", PROBE, arch, str(files["art"]), str(files["payload"]), str(files["data"]),
             json.dumps(coder.options_dict())],
            env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
        )
        assert res.returncode == 0, f"{machine}: {res.stderr[-2000:]}"
        got = json.loads(res.stdout.strip().splitlines()[-1])
        assert {k: got[k] for k in want} == want, f"{arch} differs on {machine}"
        if env.get("OMP_NUM_THREADS"):
            assert got["threads"] == int(env["OMP_NUM_THREADS"])
        if env.get("ATEN_CPU_CAPABILITY"):
            assert got["isa"] == env["ATEN_CPU_CAPABILITY"].upper()
        _check_route(env, got)


def _check_route(env: dict, got: dict) -> None:
    """A machine that forces an int8 route ran on it, where this machine has that route at all."""
    from compbench.models import intops, peak

    want = env.get("COMPBENCH_INT8_ROUTE")
    if want and intops._int_mm_available() and (want == "int_mm" or peak.has_int8_matmul()):
        assert got["route"] == want, f"asked for the {want} route, ran {got['route']}"


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_a_two_group_mixed_payload_decodes_bit_exactly_whoever_steps_the_engine(tiny_models, arch, tmp_path):
    """From MIX_GROUP_MIN streams on, mix=1 codes two groups of streams in turn; with two threads
    the GRU steps one group on a helper thread while the mixer codes the other, with one thread it
    steps them in line. 41 streams: unequal groups, and a last stream that ends early."""
    from compbench.models import lockstep

    path, _ = tiny_models[arch]
    coder = registry.make_coder(f"{arch}:model='{path}':streams=41:min_segment=100")
    rng = np.random.default_rng(8)
    data = (b"Determinism is the product: " * 160) + rng.integers(0, 256, 320, dtype=np.uint8).tobytes()
    streams, seg = lockstep.layout(len(data), 41, 100)
    assert streams == 41 and len(lockstep.mixed_groups(streams)) == 2 and len(data) < streams * seg
    payload = coder.encode(data)
    want = {"decoded": hashlib.sha256(data).hexdigest(), "probs": coder.probability_digest(data)}
    files = {"art": path, "payload": tmp_path / "p.cbp", "data": tmp_path / "d.bin"}
    files["payload"].write_bytes(payload)
    files["data"].write_bytes(data)
    for machine in ("1-thread", "2-threads", "oldest", "2-threads-int16-gemm", "2-threads-int8-gemm",
                    "2-threads-int8-matmul", "2-threads-float-gemm"):
        res = subprocess.run(
            [sys.executable, "-c", PROBE, arch, str(files["art"]), str(files["payload"]), str(files["data"]),
             json.dumps(coder.options_dict())],
            env={**os.environ, **MACHINES[machine]}, capture_output=True, text=True, timeout=300,
        )
        assert res.returncode == 0, f"{machine}: {res.stderr[-2000:]}"
        got = json.loads(res.stdout.strip().splitlines()[-1])
        assert {k: got[k] for k in want} == want, f"{arch} differs on {machine}"
        _check_route(MACHINES[machine], got)


def test_two_group_steps_never_overlap_even_when_the_worker_pool_is_wide(tiny_models, monkeypatch):
    """The GRU's group steps share its scratch buffers, so they must run one at a time, in order,
    even after something in the process (the transformer's runs, at 3 threads) widened the shared
    worker pool: a payload coded then must decode, with the probabilities of a one-thread run."""
    import torch

    from compbench.decoding import decode_payload
    from compbench.models import intops

    path, _ = tiny_models["gru"]
    coder = registry.make_coder(f"gru:model='{path}':streams=64:min_segment=100")
    rng = np.random.default_rng(9)
    data = (b"Determinism is the product: " * 300) + rng.integers(0, 256, 600, dtype=np.uint8).tobytes()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        want = coder.probability_digest(data)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # as on a 2-core machine, whatever xdist set
    intops.workers(3)
    payload = coder.encode(data)
    assert decode_payload(payload, path.read_bytes()) == data
    assert coder.probability_digest(data) == want


@pytest.fixture
def two_threads():
    """Two torch threads in this test's thread, whatever xdist set: the overlapped schedules."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


SCHEDULES = ("step", "recurrent_sums", "sums_and_weights")


def test_every_gru_helper_schedule_gives_the_same_payload_and_probabilities(tiny_models, two_threads, monkeypatch):
    """A mixed run's helper thread runs a group's whole step ("step", where the int8 GEMM is fast),
    only its recurrent sums while this thread runs the rest ("recurrent_sums", the float32 and int16
    paths), or its recurrent sums and output weights while this thread runs the gates as soon as a group's
    bytes are coded ("sums_and_weights", the int16 path's under engine v1's mixer). All, on one
    machine, must give the same payload, decode and probabilities; the split ones must really have
    run, and leave this thread's torch thread count as they found it."""
    import torch

    from compbench.models import lockstep

    path, _ = tiny_models["gru"]
    coder = registry.make_coder(f"gru:model='{path}':streams=41:min_segment=100")
    rng = np.random.default_rng(11)
    data = (b"Determinism is the product: " * 160) + rng.integers(0, 256, 320, dtype=np.uint8).tobytes()
    built, split = [], lockstep._SplitSteps

    class Counted(split):
        def __init__(self, *args):
            built.append(1)
            split.__init__(self, *args)

    monkeypatch.setattr(lockstep, "_SplitSteps", Counted)
    got = {}
    for schedule in SCHEDULES:
        coder.engine.helper_runs = schedule
        body = coder.encode_body(data)
        assert coder.decode_body(body, len(data)) == data
        got[schedule] = (body, coder.probability_digest(data))
        assert torch.get_num_threads() == 2  # the split schedule ran its own ops on one thread, then restored 2
    assert len(built) >= 2 * 3  # the two split schedules ran (encode, decode, digest each)
    assert got["step"] == got["recurrent_sums"] == got["sums_and_weights"]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_a_two_group_decode_that_fails_midway_leaves_the_coder_usable(tiny_models, two_threads, schedule):
    """A body cut short makes the range decoder fail while the helper thread holds the other group's
    next step (or a group's recurrent sums). The failure surfaces (the payload layer turns it into a
    one-line PayloadError, see test_hostile), and the next decode in the same process, on the same
    coder, is exact."""
    path, _ = tiny_models["gru"]
    coder = registry.make_coder(f"gru:model='{path}':streams=64:min_segment=100")
    coder.engine.helper_runs = schedule
    rng = np.random.default_rng(10)
    data = (b"Determinism is the product: " * 300) + rng.integers(0, 256, 600, dtype=np.uint8).tobytes()
    body = coder.encode_body(data)
    with pytest.raises(Exception, match="invalid|truncated|corrupt"):
        coder.decode_body(body[: len(body) // 3], len(data))
    assert coder.decode_body(body, len(data)) == data


def test_the_transformer_s_shared_steps_give_the_payload_and_probabilities_of_one_thread(
        tiny_models, two_threads, monkeypatch):
    """A mixed transformer run on two threads steps each group in two runs of streams, one on the
    coding thread and one on the helper ("runs", :class:`lockstep._SharedSteps`). Whatever the split
    (``coding_share``) and against the helper running whole group steps ("step"), the payload,
    decode and probabilities must be those of a one-thread run; the shared schedule must really
    have run, and leave this thread's torch thread count as it found it."""
    import torch

    from compbench.models import lockstep

    path, _ = tiny_models["transformer"]
    coder = registry.make_coder(f"transformer:model='{path}':streams=41:min_segment=60")
    rng = np.random.default_rng(13)
    data = (b"Determinism is the product: " * 110) + rng.integers(0, 256, 320, dtype=np.uint8).tobytes()
    torch.set_num_threads(1)
    want = (coder.encode_body(data), coder.probability_digest(data))  # one thread: no overlap at all
    torch.set_num_threads(2)
    built, shared = [], lockstep._SharedSteps

    class Counted(shared):
        def __init__(self, *args):
            built.append(1)
            shared.__init__(self, *args)

    monkeypatch.setattr(lockstep, "_SharedSteps", Counted)
    for schedule, share in [("runs", 0.3), ("runs", 0.05), ("runs", 0.95), ("step", 0.3)]:
        coder.engine.helper_runs, coder.engine.coding_share = schedule, share
        body = coder.encode_body(data)
        assert coder.decode_body(body, len(data)) == data
        assert (body, coder.probability_digest(data)) == want, (schedule, share)
        assert torch.get_num_threads() == 2
    assert len(built) == 3 * 3  # the shared schedule ran (encode, decode, digest at each share)


def test_a_transformer_decode_that_fails_midway_leaves_the_coder_usable(tiny_models, two_threads):
    """As for the GRU: a body cut short fails while the helper holds a run of a group's next step;
    the next decode on the same coder is exact."""
    path, _ = tiny_models["transformer"]
    coder = registry.make_coder(f"transformer:model='{path}':streams=64:min_segment=60")
    rng = np.random.default_rng(10)
    data = (b"Determinism is the product: " * 150) + rng.integers(0, 256, 600, dtype=np.uint8).tobytes()
    body = coder.encode_body(data)
    with pytest.raises(Exception, match="invalid|truncated|corrupt"):
        coder.decode_body(body[: len(body) // 3], len(data))
    assert coder.decode_body(body, len(data)) == data


PRIMED_PROBE = r"""
import hashlib, json, sys
from compbench import registry
from compbench.decoding import decode_payload
art, payload, data, ctx = (open(p, "rb").read() for p in sys.argv[1:5])
inner = registry.make_coder(sys.argv[5])  # the model the prefix wraps, from its file
print(json.dumps({"decoded": hashlib.sha256(decode_payload(payload, art)).hexdigest(),
                  "probs": inner.probability_digest(data, stepwise=True, context=ctx)}))
"""


def test_a_primed_neural_payload_decodes_bit_exactly_on_other_machines(tiny_models, tmp_path):
    """The match model's search of a prefix's stored text (numpy integer work: hashing, a sorted
    index, byte compares) decides probabilities too: it must not depend on SIMD dispatch or threads."""
    path, _ = tiny_models["gru"]
    inner_spec = f"gru:model='{path}':streams=5:min_segment=700"
    coder = registry.make_coder(f"prefix:inner=({inner_spec}):size=3000:store=(zlib)")
    rng = np.random.default_rng(3)
    train = b"".join(b"stored text the streams will copy from, line %d. " % i for i in range(200))
    coder.fit(train)
    data = train[2000:3500] + rng.integers(0, 256, 200, dtype=np.uint8).tobytes() + train[-1500:]
    payload, art = coder.encode(data), coder.artifact()
    inner = registry.make_coder(inner_spec)
    want = {"decoded": hashlib.sha256(data).hexdigest(),
            "probs": inner.probability_digest(data, context=train[-3000:])}
    assert want["probs"] != inner.probability_digest(data)  # the stored text does change the probabilities
    files = [tmp_path / n for n in ("art", "payload", "data", "ctx")]
    for f, b in zip(files, (art, payload, data, train[-3000:])):
        f.write_bytes(b)
    for machine in ("numpy-baseline-simd", "oldest", "2-threads"):
        res = subprocess.run([sys.executable, "-c", PRIMED_PROBE, *map(str, files), inner_spec],
                             env={**os.environ, **MACHINES[machine]}, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, f"{machine}: {res.stderr[-2000:]}"
        assert json.loads(res.stdout.strip().splitlines()[-1]) == want, f"primed gru differs on {machine}"
