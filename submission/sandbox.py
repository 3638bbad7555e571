"""Run a stranger's Golden-Plate ``model.py`` in a child process, under limits, and talk to it
through a pipe of plain bytes.

The zip is checked and extracted by :mod:`.zipcheck` into a fresh temporary folder, which is the
child's working directory and ``HOME``. The child (``python -I``: no user site, no ``PYTHON*``
variables) gets a minimal environment, address-space, CPU-time, file-size and core-dump limits
(``resource.setrlimit``), and no network where the machine lets an unprivileged user make a network
namespace (``unshare -rn``; :attr:`Sandbox.network_isolated` says which). It imports ``model.py``,
builds ``Model(folder)`` and answers batches of contexts with ``predict``.

Protocol (little-endian): the parent sends ``u32 count`` then ``count`` contexts, each ``u16
length`` and its bytes; ``count = 0`` ends. The child answers ``u8 status`` (0 ok, 1 error), then
``f64 seconds`` and ``count * 256`` float64 logits, or ``u32 length`` and an error message. The
parent never trusts a size the child states: it reads exactly what it asked for, and the child's
own prints go to stderr, not into the protocol.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .zipcheck import SubmissionError, ZipLimits, extract

CHILD = r"""
import importlib.util, os, struct, sys, time
out = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)  # the model's own prints go to stderr, never into the protocol
inp = sys.stdin.buffer
def fail(msg):
    msg = msg.encode("utf-8", "replace")[:2000]
    out.write(b"\x01" + struct.pack("<I", len(msg)) + msg); out.flush(); sys.exit(0)
try:
    import numpy as np
    folder = os.getcwd()
    sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("model", os.path.join(folder, "model.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.Model(folder)
except BaseException as err:
    fail(f"model.py failed to load: {type(err).__name__}: {err}")
while True:
    head = inp.read(4)
    if len(head) < 4:
        break
    (count,) = struct.unpack("<I", head)
    if count == 0:
        break
    contexts = []
    for _ in range(count):
        (n,) = struct.unpack("<H", inp.read(2))
        contexts.append(list(inp.read(n)))
    try:
        t0 = time.perf_counter()
        logits = model.predict(contexts)
        seconds = time.perf_counter() - t0
        arr = np.asarray(logits, dtype=np.float64)
    except BaseException as err:
        fail(f"predict failed: {type(err).__name__}: {err}")
    if arr.shape != (count, 256):
        fail(f"predict returned shape {tuple(arr.shape)} for {count} contexts; expected ({count}, 256)")
    out.write(b"\x00" + struct.pack("<d", seconds) + arr.astype("<f8").tobytes()); out.flush()
"""


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 4 << 30  # the challenge machine's 4 GB
    cpu_seconds: int = 1200  # CPU time over all threads (10 minutes on 2 cores)
    file_bytes: int = 64 << 20  # largest file the model may write
    threads: int = 2


def _network_isolation() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return [unshare, "-rn"]
    return []


class Sandbox:
    """A running submission: ``with Sandbox(zip) as sb: logits, seconds = sb.predict(contexts)``."""

    def __init__(self, zip_path: str | Path, limits: SandboxLimits = SandboxLimits(),
                 zip_limits: ZipLimits = ZipLimits()):
        self.limits = limits
        self._tmp = tempfile.TemporaryDirectory(prefix="compbench-sub-")
        self.folder = Path(self._tmp.name) / "submission"
        self.report = extract(zip_path, self.folder, zip_limits)
        prefix = _network_isolation()
        self.network_isolated = bool(prefix)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.folder), "TMPDIR": str(self.folder), "LANG": "C.UTF-8",
               "OMP_NUM_THREADS": str(limits.threads), "MKL_NUM_THREADS": str(limits.threads)}
        # stderr goes to a file beside the folder: a pipe nobody reads would block a chatty model.
        self._err_path = Path(self._tmp.name) / "stderr.txt"
        with open(self._err_path, "wb") as err:
            self._proc = subprocess.Popen(
                prefix + [sys.executable, "-I", "-c", CHILD], cwd=self.folder, env=env, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, preexec_fn=self._limit)

    def _limit(self) -> None:  # in the child, before exec
        import resource

        lim = self.limits
        for what, value in ((resource.RLIMIT_AS, lim.memory_bytes), (resource.RLIMIT_CPU, lim.cpu_seconds),
                            (resource.RLIMIT_FSIZE, lim.file_bytes), (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(what, (value, value))

    def _read(self, n: int) -> bytes:
        data = self._proc.stdout.read(n)
        if len(data) != n:
            self._proc.kill()
            self._proc.wait(timeout=30)
            with open(self._err_path, "rb") as fh:
                fh.seek(max(0, self._err_path.stat().st_size - 4000))
                tail = fh.read().decode("utf-8", "replace").strip().splitlines()
            code = self._proc.returncode
            why = tail[-1][:300] if tail else (f"killed by signal {-code}" if code and code < 0 else f"exit status {code}")
            raise SubmissionError(f"the submission's process stopped ({why})")
        return data

    def predict(self, contexts: list[bytes]) -> tuple[np.ndarray, float]:
        """Logits [len(contexts), 256] (float64) and the seconds ``predict`` took in the child."""
        msg = [struct.pack("<I", len(contexts))]
        for c in contexts:
            msg.append(struct.pack("<H", len(c)) + bytes(c))
        try:
            self._proc.stdin.write(b"".join(msg))
            self._proc.stdin.flush()
        except BrokenPipeError:
            self._read(1)  # reports why it stopped
        status = self._read(1)
        if status != b"\x00":
            (n,) = struct.unpack("<I", self._read(4))
            raise SubmissionError(self._read(min(n, 2000)).decode("utf-8", "replace").splitlines()[0][:300])
        (seconds,) = struct.unpack("<d", self._read(8))
        logits = np.frombuffer(self._read(8 * 256 * len(contexts)), dtype="<f8").reshape(len(contexts), 256)
        return logits, seconds

    def peak_rss(self) -> int | None:
        """The child's peak resident memory so far (bytes; Linux's VmHWM), or None where unknown."""
        try:
            with open(f"/proc/{self._proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return None

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write(struct.pack("<I", 0))
                self._proc.stdin.close()
                self._proc.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
                self._proc.kill()
                self._proc.wait()
        self._tmp.cleanup()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def random_contexts(n: int = 1024, max_len: int = 512, seed: int = 0, min_len: int = 0) -> list[bytes]:
    """The validator's timing batch: ``n`` random contexts of random length min_len..max_len (0..512).
    Scoring gives almost every position a full 512 bytes: ``min_len=512`` times that case."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, int(k), dtype=np.uint8).tobytes() for k in rng.integers(min_len, max_len + 1, n)]


def score(sb: Sandbox, data: bytes, window: int = 512, batch: int = 1024, progress=None) -> tuple[float, float]:
    """The challenge's score of ``data``: every position gets its previous <= ``window`` bytes, the
    returned logits go through a softmax (float64, max-subtracted), and ``-log2 p(true byte)`` is
    summed. Returns (bits per byte, seconds spent in ``predict``)."""
    bits, seconds = 0.0, 0.0
    for start in range(0, len(data), batch):
        stop = min(len(data), start + batch)
        contexts = [data[max(0, i - window) : i] for i in range(start, stop)]
        logits, dt = sb.predict(contexts)
        if not np.isfinite(logits).all():
            raise SubmissionError(f"predict returned non-finite logits at positions {start}..{stop - 1}")
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        truth = np.frombuffer(data[start:stop], dtype=np.uint8)
        bits -= float(logp[np.arange(len(truth)), truth].sum()) / np.log(2.0)
        seconds += dt
        if progress is not None:
            progress(stop)
    return bits / max(1, len(data)), seconds
