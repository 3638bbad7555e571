"""Any Golden-Plate submission as a coder: ``golden-plate:zip=submission.zip``.

A Golden-Plate submission is a zip whose ``model.py`` answers ``predict(contexts)`` with 256 logits
per context. This coder ranks one beside the others:

* **Artifact.** The zip itself, byte for byte: ``artifact_bytes`` is what the challenge counts.
* **bpb_model** is the challenge's own score of the same bytes (:func:`compbench.submission.sandbox.score`):
  every position gets its previous <= ``window`` bytes, in batches of 1024 consecutive positions,
  and the logits go through a float64 softmax.
* **bpb** is real range coding (``constriction``) with the probabilities of the same softmax. A
  decoder cannot ask for a batch of consecutive positions (it has not decoded them yet), so the
  coder uses the neural coders' lockstep layout: the input is cut into B segments, and step ``t``
  asks one ``predict`` call for byte ``t`` of every segment, each context being the previous
  <= ``window`` bytes of its own segment. The decoder makes exactly the same calls, in the same
  order, with the same batch shapes. The segment starts see shorter contexts, so ``bpb`` sits a
  little above ``bpb_model``.
* **Not portable.** A float model promises nothing across machines, thread counts or library
  builds, so a payload is only known to decode where it was made: every row says
  ``portable = False``. The harness checks the round trip on the same machine, with a decoder
  rebuilt from the zip's bytes in a fresh sandboxed process, under the same thread count.
* **Untrusted code.** The submission runs only inside :class:`~compbench.submission.sandbox.Sandbox`
  (checked extraction, a child process under memory and CPU limits, no network where the machine
  allows it). Decoding runs the submission's program, so the coder is ``runs_programs``: a payload
  alone never picks a submission to run; ``compbench decode`` needs ``--coder`` or ``--allow-external``.

Body layout: the neural coders' (:func:`compbench.coders.neural.pack_body`), so one reader frames both.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from compbench.coder import Coder
from compbench.errors import ArtifactError, CompbenchError, PayloadError
from compbench.coders.neural import pack_body, unpack_body
from compbench.registry import register_coder
from compbench.spec import locator

# Longest context a step may ask for: the challenge's 512, and the protocol's u16 lengths.
MAX_WINDOW = 4096


def layout(n: int, max_streams: int, min_segment: int) -> tuple[int, int]:
    """(streams, segment length): the neural coders' rule (``compbench.models.lockstep.layout``),
    restated here because importing that module imports torch, which this coder never needs."""
    if n == 0:
        return 0, 0
    streams = max(1, min(max_streams, n // max(1, min_segment)))
    seg = -(-n // streams)
    return -(-n // seg), seg


def _softmax(logits):
    """The scorer's softmax (float64, max-subtracted), as probabilities for the range coder."""
    import numpy as np

    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


@register_coder("golden-plate")  # in no group: it needs zip=, so `--coders all` cannot include it
class GoldenPlateCoder(Coder):
    """A sandboxed Golden-Plate ``model.py`` driving constriction's range coder."""

    family = "submission"
    description = "a Golden-Plate submission zip (model.py, run sandboxed) driving a range coder; not portable"
    runs_programs = True  # decoding runs the submission's model.py (in the sandbox)
    portable = False  # float logits: decodes only where it was made

    @dataclass(frozen=True)
    class Options:
        zip: str = locator("")  # the submission zip; its bytes are the artifact
        window: int = 512  # context bytes each position gets (the challenge gives 512)
        streams: int = 64  # lockstep segments coded at once (one predict call per step)
        min_segment: int = 4096
        cpu_limit: int = locator(7200)  # CPU seconds the submission's process may use (runtime: not in headers)

        def __post_init__(self):
            if not 0 <= self.window <= MAX_WINDOW:
                raise ValueError(f"window={self.window} is out of range [0, {MAX_WINDOW}]")
            if not 1 <= self.streams <= 4096:
                raise ValueError(f"streams={self.streams} is out of range [1, 4096]")
            if self.min_segment < 1:
                raise ValueError("min_segment must be at least 1")
            if self.cpu_limit < 1:
                raise ValueError("cpu_limit must be at least 1 second")

    def __init__(self, **options):
        super().__init__(**options)
        self._zip: bytes | None = None
        self._sandbox = None
        self._bits: dict[bytes, float] = {}

    # -- artifact ------------------------------------------------------------------------------
    def artifact(self) -> bytes:
        if self._zip is None:
            if not self.options.zip:
                raise CompbenchError("golden-plate needs the submission: golden-plate:zip=PATH.zip")
            path = Path(self.options.zip).expanduser()
            if not path.is_file():
                raise CompbenchError(f"golden-plate: no such file {str(path)!r}")
            self._zip = path.read_bytes()
        return self._zip

    def load_artifact(self, artifact: bytes) -> None:
        if not artifact:
            raise ArtifactError("golden-plate needs its submission zip as the artifact (--artifact submission.zip)")
        self.close()
        self._zip, self._bits = bytes(artifact), {}

    def _open(self):
        """A fresh sandboxed process running the submission (checked extraction first)."""
        from compbench.submission.sandbox import Sandbox, SandboxLimits
        from compbench.submission.zipcheck import SubmissionError

        blob = self.artifact()
        with tempfile.TemporaryDirectory(prefix="compbench-gp-") as tmp:
            path = Path(tmp) / "submission.zip"
            path.write_bytes(blob)
            try:
                return Sandbox(path, SandboxLimits(cpu_seconds=self.options.cpu_limit))
            except SubmissionError as err:
                raise ArtifactError(str(err)) from None

    def _running(self):
        if self._sandbox is None:
            self._sandbox = self._open()
        return self._sandbox

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _predict(self, contexts: list[bytes]):
        import numpy as np

        from compbench.submission.zipcheck import SubmissionError

        try:
            logits, _ = self._running().predict(contexts)
        except SubmissionError as err:
            self.close()
            raise CompbenchError(str(err)) from None
        if not np.isfinite(logits).all():
            raise CompbenchError("predict returned non-finite logits")
        return _softmax(logits)

    # -- coding --------------------------------------------------------------------------------
    def _steps(self, arr, n: int, coder, decoding: bool):
        """Advance every segment one byte per ``predict`` call; encode ``arr`` or fill it."""
        import constriction
        import numpy as np

        family = constriction.stream.model.Categorical(perfect=False)
        streams, seg = arr.shape
        last = n - (streams - 1) * seg
        w = self.options.window
        for t in range(seg):
            k = streams if t < last else streams - 1
            lo = max(0, t - w)
            probs = self._predict([arr[b, lo:t].tobytes() for b in range(k)])
            if decoding:
                arr[:k, t] = coder.decode(family, probs)
            else:
                coder.encode(arr[:k, t].astype(np.int32), family, probs)
            if self.on_progress is not None and t % 64 == 63:
                self.on_progress(min(n, (t + 1) * streams))
        # The model's memory is the child's: report its high-water mark as the harness does for
        # external programs (the parent's own mark cannot see it).
        peak = self._running().peak_rss()
        if peak:
            self.child_peak_rss = max(getattr(self, "child_peak_rss", 0) or 0, peak)

    def encode_body(self, data: bytes, context: bytes = b"") -> bytes:
        import constriction
        import numpy as np

        n = len(data)
        if n == 0:
            return pack_body(0, 0, b"", data)
        streams, seg = layout(n, self.options.streams, self.options.min_segment)
        arr = np.zeros((streams, seg), dtype=np.uint8)
        arr.reshape(-1)[:n] = np.frombuffer(data, dtype=np.uint8)
        encoder = constriction.stream.queue.RangeEncoder()
        self._steps(arr, n, encoder, decoding=False)
        return pack_body(streams, seg, encoder.get_compressed().astype("<u4").tobytes(), data)

    def decode_body(self, body: bytes, size: int, context: bytes = b"") -> bytes:
        import constriction
        import numpy as np

        stored, streams, seg, pos = unpack_body(body, size)
        if stored is not None:
            return stored
        # The layout must be the one the encoder derives, checked before anything is allocated.
        if (streams, seg) != layout(size, self.options.streams, self.options.min_segment):
            raise PayloadError(f"payload body is corrupted (stream layout {streams} x {seg} is not this coder's for "
                               f"{size} bytes)")
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(body[pos:], dtype="<u4").astype(np.uint32))
        arr = np.zeros((streams, seg), dtype=np.uint8)
        try:
            self._steps(arr, size, decoder, decoding=True)
        except (ValueError, RuntimeError) as err:
            raise PayloadError(f"payload body is corrupted (range decoder: {err})") from None
        return arr.reshape(-1)[:size].tobytes()

    def model_bits(self, data: bytes, context: bytes = b"") -> float:
        """The challenge's score of ``data`` (in bits), from a fresh process of its own, so nothing
        the submission saw while coding can shape it."""
        from compbench.submission.sandbox import score
        from compbench.submission.zipcheck import SubmissionError

        key = hashlib.sha256(data).digest()
        if key not in self._bits:
            sb = self._open()
            try:
                bpb, _ = score(sb, bytes(data), window=self.options.window)
            except SubmissionError as err:
                raise CompbenchError(str(err)) from None
            finally:
                sb.close()
            if len(self._bits) >= 4096:
                self._bits.pop(next(iter(self._bits)))
            self._bits[key] = bpb * len(data)
        return self._bits[key]
