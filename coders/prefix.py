"""The ``prefix`` coder: stored bytes plus an inner coder, the hybrid of a model and stored data.

``kind=context``: the tail of the corpus's **train** split, ``size`` bytes of it, is
compressed by the ``store`` coder and kept in the artifact; the inner coder is primed with it on
both sides (zlib: a 32 KB preset dictionary; zstd: a raw-content dictionary; PPMd: its model, by
coding the slice first, see :class:`~compbench.coders.classical.PpmdCoder`; the neural coders:
with ``mix=1`` the slice primes the mixer's context models and its shared match model searches it,
see :class:`~compbench.models.mixing.ContextMixer`; with ``mix=0`` the per-stream match model
searches it, see :class:`~compbench.models.lockstep.MatchModel`; the LM itself is not warmed on it). It is what a zstd
dictionary or a primed PPMd does, with the stored bytes paid for in ``artifact_bytes``:

    compbench run --coders "prefix:inner=(ppmd):size=3000000,ppmd" --corpus enwik8 --split test --budget 1MB

Artifact layout: ``b"CBPX"``, version (1), varint length of the inner coder's artifact, that
artifact, then the stored slice as a compbench payload of the ``store`` coder (self-describing and
CRC-checked). Loading one never runs a program: neither nested coder may be one that does, and the
stored payload is decoded under a 256 MiB output limit.

``kind=paid``: the first ``size`` bytes of the **evaluated** data (the files in order) are stored
instead, as parameter golf's "paid prefix" entries did; the payload codes the rest, primed with
what was stored before it. Each body starts with ``varint offset, varint k``: the file's first ``k``
bytes are ``stored[offset:offset + k]``. Rows made this way are flagged (``stores_eval_data``) in
every table and in the JSON: ``bpb`` (payload bits over all evaluated bytes, the competition score)
then counts stored bytes as free, and only ``bpb_total`` is an honest figure.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from compbench.coder import Coder
from compbench.errors import ArtifactError, CompbenchError
from compbench.payload import read_varint, varint
from compbench.registry import register_coder
from compbench.spec import CoderSpec

MAGIC = b"CBPX"
VERSION = 1
STORED_LIMIT = 256 << 20  # a stored slice may claim at most this many bytes when decoded


def _check_nested(role: str, spec: str) -> None:
    from compbench.registry import get_coder_class
    from compbench.spec import parse_spec

    cls = get_coder_class(parse_spec(spec)[0])
    if cls.runs_programs:
        raise ValueError(f"{role}={spec!r}: a prefix cannot wrap a coder that runs programs")
    if cls.name == "prefix":
        raise ValueError(f"{role}={spec!r}: prefixes do not nest")


@register_coder("prefix", groups=("hybrid",))
class PrefixCoder(Coder):
    description = ("stored bytes + a primed inner coder: inner=(SPEC) store=(SPEC) size=BYTES (0: as much as fits "
                   "--budget) or share=FRACTION of the budget, kind=context (train-split tail) | paid (head of the "
                   "evaluated data, flagged)")
    family = "prefix"
    in_all = False  # needs a train split
    isolate = True  # replaced per instance by the inner coder's: a PPMd inner can crash on a crafted body

    @dataclass(frozen=True)
    class Options:
        inner: CoderSpec = CoderSpec("ppmd")
        store: CoderSpec = CoderSpec("lzma")
        size: int = 0  # bytes of the train split's tail to store; 0: as many as fit the run's --budget
        kind: str = "context"
        share: float = 0.0  # size=0: the stored part may take at most this fraction of the budget (0: all that is left)

        def __post_init__(self):
            if self.kind not in ("context", "paid"):
                raise ValueError(f"kind={self.kind!r}: give context (a slice of the train split) or paid (of the evaluated data)")
            if self.size < 0:
                raise ValueError("size must be a number of bytes, or 0 for as many as fit the budget")
            if not 0.0 <= self.share <= 1.0:
                raise ValueError(f"share={self.share}: give a fraction of the budget in [0, 1]")
            if self.share and self.size:
                raise ValueError("give size= (stored bytes) or share= (a fraction of the budget), not both")
            _check_nested("inner", self.inner)
            _check_nested("store", self.store)

    def __init__(self, **options):
        super().__init__(**options)
        from compbench.registry import make_coder

        self._inner = make_coder(self.options.inner)
        # Asked of the configured coder, not its class: a neural coder with mix=0 and match=0 has
        # nothing to search the stored text with.
        if not self._inner.supports_context:
            from compbench.errors import SpecError

            raise SpecError(f"prefix: inner={self.options.inner!r} cannot be primed with context (no preset "
                            "dictionary or model to prime); prime zlib, zstd, ppmd or a neural coder with mix=1 or match > 0")
        self._store = make_coder(self.options.store)
        # A body is decoded by the inner coder alone, so it needs a child process exactly when the
        # inner coder does (PPMd). A neural inner must not be forked: its OpenMP pool does not survive
        # fork(), and a deadline sized for PPMd would cut a slow model short.
        self.isolate = self._inner.isolate
        self._slice: bytes | None = None
        self._blob: bytes | None = None
        self.budget: int | None = None
        self._cover: dict[bytes, tuple[int, int]] = {}  # paid: sha256(file) -> (offset in stored, bytes covered)

    @property
    def stores_eval_data(self) -> bool:
        return self.options.kind == "paid"

    @property
    def stored_bytes(self) -> int:
        return len(self._slice or b"")

    # -- fitting and the artifact ------------------------------------------------------------
    @property
    def needs_fit(self) -> bool:
        if self.options.kind == "paid":  # stores evaluated data (fit_eval), not train data
            return self._inner.needs_fit
        return self._slice is None

    def set_budget(self, budget: int) -> None:
        self.budget = budget

    def fit(self, train: bytes) -> None:
        if not train:
            raise CompbenchError("prefix: needs a train split to store a slice of (use --split test or val)")
        if self._inner.needs_fit:
            self._inner.fit(train)
        if self.options.kind == "paid":
            return
        self._pack(self._tail(train))

    def fit_eval(self, files: list[bytes]) -> None:
        """kind=paid: store the head of the evaluated data and note how much of each file it covers."""
        if self.options.kind != "paid":
            return
        joined = b"".join(files)
        inner_bytes = len(self._inner.artifact())
        size = self.options.size or self._largest_fit(joined, inner_bytes, head=True)
        self._pack(joined[:size])
        pos = 0
        for data in files:
            covered = max(0, min(len(data), size - pos))
            self._cover[hashlib.sha256(data).digest()] = (min(pos, size), covered)
            pos += len(data)

    def _tail(self, train: bytes) -> bytes:
        size = self.options.size or self._largest_fit(train, len(self._inner.artifact()))
        return bytes(train[-size:])

    def _pack(self, stored_text: bytes) -> None:
        inner_art = self._inner.artifact()
        self._slice = bytes(stored_text)
        stored = self._store.encode(self._slice)
        self._blob = MAGIC + bytes([VERSION]) + varint(len(inner_art)) + inner_art + stored
        if self.budget is not None and len(self._blob) > self.budget:
            raise CompbenchError(
                f"prefix: {len(self._slice):,} stored bytes compress to an artifact of {len(self._blob):,} bytes "
                f"({self.options.store} payload {len(stored):,}, inner artifact {len(inner_art):,}), over the "
                f"{self.budget:,}-byte budget: give a smaller size="
            )

    def _largest_fit(self, train: bytes, inner_bytes: int, head: bool = False) -> int:
        """The longest tail of ``train`` (head: the longest head) whose artifact fits the budget, and
        whose stored part fits ``share`` of it if given: a binary search over real compressions by
        the store coder, to within 1/512 of the length (at least 1 KB). (At 1/64, the search left
        6.5 KB of a 1 MB budget unused beside a 70 KB model and 4.9 MB of text.)"""
        if self.budget is None:
            raise CompbenchError("prefix: size=0 stores as much as fits the budget: pass --budget (1MB, 16MB), "
                                 "or give size=BYTES")
        room = self.budget - inner_bytes - 5 - len(varint(inner_bytes))
        if self.options.share:
            room = min(room, int(self.options.share * self.budget))
        fits = lambda n: len(self._store.encode(train[:n] if head else train[-n:])) <= room  # noqa: E731
        if room > 0 and fits(len(train)):
            return len(train)
        lo, hi = 0, len(train)
        while room > 0 and hi - lo > max(1024, hi // 512):
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        if lo == 0:
            what = f"{self.options.share:g} of " if self.options.share else ""
            raise CompbenchError(f"prefix: no stored text fits {what}the {self.budget:,}-byte budget beside the "
                                 f"inner coder's {inner_bytes:,}-byte artifact")
        return lo

    def artifact(self) -> bytes:
        if self._blob is None:
            raise CompbenchError("prefix: fit it on a train split first")
        return self._blob

    def load_artifact(self, artifact: bytes) -> None:
        from compbench.payload import check_coder, decode_bytes, read_header

        blob = bytes(artifact)
        if blob[:4] != MAGIC or len(blob) < 6:
            raise ArtifactError("not a prefix artifact (bad magic number)")
        if blob[4] != VERSION:
            raise ArtifactError(f"prefix artifact version {blob[4]} is not supported (expected {VERSION})")
        n, pos = read_varint(blob, 5, "inner artifact length")
        if pos + n > len(blob):
            raise ArtifactError("prefix artifact is truncated")
        self._inner = type(self._inner).from_artifact(blob[pos : pos + n], **self._inner.format_options())
        stored = blob[pos + n :]
        header = read_header(stored)
        check_coder(self._store, header)
        # An artifact comes from strangers as much as a payload does: a crash-prone store coder (PPMd)
        # decodes it in a child process here too.
        from compbench.decoding import isolated_body_decoder

        self._slice = decode_bytes(self._store, header, stored, max_output=STORED_LIMIT,
                                   decode_one=isolated_body_decoder(self._store))
        self._blob = blob

    # -- coding --------------------------------------------------------------------------------
    def _context(self, context: bytes) -> bytes:
        if self._slice is None:
            raise CompbenchError("prefix: fit it on a train split first")
        return self._slice + context

    def _paid_cover(self, data: bytes) -> tuple[int, int]:
        # A file of the evaluated set: its stored head; anything else (a chunk, another file): none.
        return self._cover.get(hashlib.sha256(data).digest(), (self.stored_bytes, 0))

    def encode_body(self, data: bytes, context: bytes = b"") -> bytes:
        if self.options.kind == "paid":
            offset, k = self._paid_cover(data)
            known = self._context(b"")[: offset + k] + context  # everything stored up to here
            return varint(offset) + varint(k) + self._inner.encode_body(data[k:], known)
        return self._inner.encode_body(data, self._context(context))

    def decode_body(self, body: bytes, size: int, context: bytes = b"") -> bytes:
        if self.options.kind == "paid":
            from compbench.errors import PayloadError

            offset, pos = read_varint(body, 0, "stored offset")
            k, pos = read_varint(body, pos, "stored length")
            stored = self._context(b"")
            if k > size or offset + k > len(stored):
                raise PayloadError("payload body is corrupted (it names stored bytes the artifact does not have)")
            known = stored[: offset + k] + context
            return stored[offset : offset + k] + self._inner.decode_body(body[pos:], size - k, known)
        return self._inner.decode_body(body, size, self._context(context))

    def model_bits(self, data: bytes, context: bytes = b"") -> float | None:
        if self.options.kind == "paid":  # the stored head costs nothing in the payload
            offset, k = self._paid_cover(data)
            return self._inner.model_bits(data[k:], self._context(b"")[: offset + k] + context)
        return self._inner.model_bits(data, self._context(context))
