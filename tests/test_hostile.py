"""Payloads from strangers: seeded hostile payloads for every coder family (classical, external,
neural) are decoded under the default policy. Each must decode to exactly its original (intact ones)
or be refused with a one-line error, in bounded time and memory, and none may run a program.
A fast subset runs in CI; the slow-marked test and ``benchmarks/hostile_payloads.py`` run 10,000+."""

import pytest

from compbench import fuzz


@pytest.fixture(scope="module")
def hostile_coders(tiny_models):
    return fuzz.default_coders({arch: path for arch, (path, _) in tiny_models.items()})


def _run(hostile_coders, seed, n, tmp_path):
    canary = tmp_path / "canary"
    rss0 = fuzz.peak_rss_bytes()
    outcomes = {"decoded": 0, "refused": 0}
    kinds = {}
    for case in fuzz.cases(seed, n, hostile_coders, canary):
        outcomes[fuzz.check(case)] += 1
        kinds[case.kind] = kinds.get(case.kind, 0) + 1
        assert not canary.exists(), f"{case.kind}/{case.spec}: a payload ran a program"
    assert fuzz.peak_rss_bytes() - rss0 < 1 << 30, "a hostile payload made the decoder allocate over 1 GiB"
    assert outcomes["refused"] > 0.8 * n and outcomes["decoded"] > 0
    assert set(kinds) == set(fuzz.KINDS)
    return outcomes


def test_hostile_payloads_are_refused_in_one_line_and_run_nothing(hostile_coders, tmp_path):
    _run(hostile_coders, seed=1, n=1200, tmp_path=tmp_path)


CRASH = r"""
import os
from compbench.decoding import _isolated
from compbench.errors import PayloadError

class Crashing:  # dies in C, as pyppmd's decoder can on a crafted body
    name, stored_bytes = "crashing", 0

    def decode_body(self, body, size, context):
        os.abort()

try:
    _isolated(Crashing(), b"")(b"body", 4)
except PayloadError as err:
    print(err)
"""


def test_a_decoder_crashing_in_its_child_is_one_line_even_with_a_fault_handler_on():
    """The forked child's crash is the parent's to report. A fault handler the child inherits
    (pytest's, PYTHONFAULTHANDLER) must not dump the child's stack on the user's stderr first."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", CRASH], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "payload body is corrupted (the crashing decoder crashed on it: SIGABRT)"
    assert proc.stderr == ""


@pytest.mark.slow
def test_ten_thousand_hostile_payloads(hostile_coders, tmp_path):
    _run(hostile_coders, seed=2, n=10_800, tmp_path=tmp_path)
