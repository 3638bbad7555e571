"""Measure one coder on one corpus: real payload bits, verified round trip, CPU/wall time, memory.

For every file the first pass is both warm-up and verification: encode, rebuild a fresh decoder from
the artifact bytes alone (``from_artifact``), decode the self-describing payload and compare byte
for byte. Then ``repeat`` timed passes of encode and of decode give min and median CPU and wall time.
Timed passes cover the coder's own work (``encode_body``/``decode_body``, one call per chunk in
chunked mode), not the container's CRC and header, as lzbench times only the codec; the harness
overhead benchmark (``benchmarks/harness_overhead.py``) checks that this adds under 10%.

Peak memory is the growth of the process's resident-set high-water mark during the verification
encode or decode (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``); None where unsupported.

Chunked mode (``chunk_size > 0``) codes every chunk independently, the protocol of "Language Modeling
Is Compression" (Delétang et al., 2023). ``bpb`` stays the real size of the payload (one container
header, a chunk-length table, every chunk's own headers). ``bpb_lmic`` accounts headers as that
paper's code does: the coder's fixed overhead, measured as the size of coding empty input, is
counted once instead of once per chunk, and compbench's container is not counted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

from .coder import Coder, fingerprint
from .corpus import Corpus, Member
from .environment import available_memory
from .errors import CompbenchError
from .payload import PartsReader, assemble_parts, check_coder, chunks_of, decode_stream_to, encode_bodies, read_header


@dataclass(frozen=True)
class MeasureConfig:
    repeat: int = 3  # timed passes after the warm-up/verification pass (at most); 0: time the verification pass
    chunk_size: int = 0  # 0: code each file as one stream
    memory: bool = True
    # Timed passes of one direction stop once they have used this many seconds; a coder whose
    # verification pass alone took longer is timed from that pass (neural coders on MB inputs).
    max_time_s: float = 60.0
    budget: int | None = None  # artifact byte budget the records are judged against (1MB = 1,000,000)


@dataclass
class Record:
    """One coder x file measurement; field names are the JSON / store schema (units in the name)."""

    coder: str
    spec: str
    label: str
    family: str
    corpus: str
    split: str
    file: str
    chunk_size: int
    n_bytes: int
    payload_bytes: int
    container_bytes: int
    artifact_bytes: int
    bpb: float | None  # None for an empty file: bits per byte of nothing is not a figure
    bpb_model: float | None
    bpb_total: float | None
    bpb_lmic: float | None
    model_bits: float | None
    encode_cpu_s: float
    encode_wall_s: float
    encode_wall_min_s: float
    decode_cpu_s: float
    decode_wall_s: float
    decode_wall_min_s: float
    encode_mb_s: float | None  # None when the time was too short to measure
    decode_mb_s: float | None
    encode_peak_mem_bytes: int | None
    decode_peak_mem_bytes: int | None
    fit_s: float
    repeat: int
    roundtrip_ok: bool
    error: str | None
    corpus_sha256: str
    file_sha256: str
    artifact_sha256: str
    options: dict = field(default_factory=dict)
    budget: int | None = None  # the artifact budget this run was judged against, if any
    fits_budget: bool | None = None  # artifact_bytes <= budget
    stores_eval_data: bool = False  # the artifact holds part of the evaluated data (a paid prefix)
    stored_bytes: int = 0  # bytes of text the artifact stores (a prefix's slice), before compression
    portable: bool = True  # False: the payload is only known to decode on the machine that made it
    decoder_zip_bytes: int | None = None  # `run --ltcb`: the standalone decompressor, zipped (counted once per corpus)
    host: str = ""  # where it was measured (compbench.cells.where): timings from different machines do not compare
    cpu: str = ""
    threads: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# -- memory -------------------------------------------------------------------------------------
def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            m = re.search(rf"^{key}:\s+(\d+) kB", fh.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


class PeakMemory:
    """Resident-set growth (bytes) during a block, from Linux's resettable high-water mark."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.peak: int | None = None

    def __enter__(self):
        self._base = None
        if self.enabled:
            try:
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
                self._base = _status_kib("VmRSS")
            except OSError:
                self._base = None
        return self

    def __exit__(self, *exc):
        if self._base is not None:
            hwm = _status_kib("VmHWM")
            self.peak = max(0, (hwm - self._base) * 1024) if hwm is not None else None
        return False


def _child_peak(coder, reset: bool = False) -> int | None:
    """Peak RSS of the programs a coder ran (external coders), which the process's own high-water
    mark cannot see: xz -9e needs 674 MiB, not the 1.5 MB its parent grows by."""
    peak = getattr(coder, "child_peak_rss", None)
    if reset and peak is not None:
        coder.child_peak_rss = 0
    return peak


def _with_children(own: int | None, child: int | None) -> int | None:
    if child:
        return max(own or 0, child)
    return own


def timed(fn: Callable[[], object], repeat: int, budget_s: float = float("inf")) -> tuple[list[float], list[float]]:
    """Run ``fn`` up to ``repeat`` times, stopping once ``budget_s`` seconds are spent (at least once);
    returns (wall seconds, CPU seconds) per run."""
    walls, cpus = [], []
    for _ in range(max(1, repeat)):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        if sum(walls) >= budget_s:
            break
    return walls, cpus


def _rate(n: int, seconds: float) -> float | None:
    return n / seconds / 1e6 if seconds > 0 and n > 0 and seconds == seconds else None


# -- one file -----------------------------------------------------------------------------------
def check_fits(name: str, n: int) -> None:
    """Measuring a file holds it, its coded body (up to its size) and a decoded copy: refuse clearly
    instead of being killed for memory half-way through a run."""
    avail = available_memory()
    need = 2 * n + (64 << 20)  # bodies and the decoded copy, beyond the input already held
    if avail is not None and need > avail:
        raise CompbenchError(
            f"{name} ({n:,} bytes) needs about {need / 1e6:,.0f} MB more to measure (its coded body and a decoded "
            f"copy), and {avail / 1e6:,.0f} MB are available: measure it with --chunk-size, or round-trip it "
            "with `compbench encode`/`decode`, which stream in flat memory"
        )


class _Ticker:
    """A progress line every few seconds inside one long file, with an ETA."""

    def __init__(self, say: Callable[[str], None] | None, what: str, total: int, every_s: float = 5.0):
        self.say, self.what, self.total, self.every = say, what, total, every_s
        self.t0 = self.last = time.perf_counter()

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if self.say is None or now - self.last < self.every or not done:
            return
        self.last = now
        eta = (now - self.t0) * (self.total - done) / done
        self.say(f"    {self.what}: {done / 1e6:,.1f} of {self.total / 1e6:,.1f} MB, ~{eta:,.0f} s left")


def _encode_with_progress(coder, data: bytes, context: bytes, cs: int, tick: _Ticker) -> list[bytes]:
    if cs <= 0:
        return encode_bodies(coder, data, context, cs)
    bodies = []
    for i, chunk in enumerate(chunks_of(data, cs)):
        bodies.append(coder.encode_body(chunk, context))
        tick((i + 1) * cs if (i + 1) * cs < len(data) else len(data))
    return bodies


def measure_member(
    coder: Coder, artifact: bytes, member: Member, corpus: Corpus, cfg: MeasureConfig,
    fit_s: float = 0.0, context: bytes = b"", progress: Callable[[str], None] | None = None,
) -> Record:
    data, n, cs = member.data, len(member.data), cfg.chunk_size
    check_fits(member.name, n)
    base = dict(
        coder=coder.name, spec=coder.spec, label=coder.located_spec, family=coder.family, corpus=corpus.name, split=corpus.split,
        file=member.name, chunk_size=cs, n_bytes=n, artifact_bytes=len(artifact), fit_s=fit_s,
        repeat=cfg.repeat, corpus_sha256=corpus.sha256, file_sha256=member.sha256,
        artifact_sha256=hashlib.sha256(artifact).hexdigest(), options=coder.options_dict(),
        budget=cfg.budget, fits_budget=None if cfg.budget is None else len(artifact) <= cfg.budget,
        stores_eval_data=bool(coder.stores_eval_data), stored_bytes=int(coder.stored_bytes),
        portable=bool(coder.portable),
    )
    error = None
    # Pass 1: warm-up + verification through the full container and a decoder rebuilt from the artifact.
    _child_peak(coder, reset=True)
    enc_tick, dec_tick = _Ticker(progress, f"{member.name} encode", n), _Ticker(progress, f"{member.name} decode", n)
    coder.on_progress = enc_tick if cs <= 0 else None  # chunked: ticked per chunk below
    with PeakMemory(cfg.memory) as enc_mem:
        c0, w0 = time.process_time(), time.perf_counter()
        bodies = _encode_with_progress(coder, data, context, cs, enc_tick)
        verify_enc = ([time.perf_counter() - w0], [time.process_time() - c0])
    coder.on_progress = None
    enc_child = _child_peak(coder)
    # The payload as parts (the bodies are not copied); the decoder reads its real bytes from them.
    parts = assemble_parts(coder.header_spec, fingerprint(artifact), data, bodies, cs)
    payload_bytes = sum(len(p) for p in parts)
    reader = PartsReader(parts)
    header = read_header(reader)
    # A fresh decoder from the artifact bytes and the header's format options alone: a model path
    # or any other locator option the encoder was given is not available to it.
    decoder = type(coder).from_artifact(artifact, **coder.format_options())
    decoder.on_progress = dec_tick if cs <= 0 else None
    out = None
    with PeakMemory(cfg.memory) as dec_mem:
        try:
            check_coder(decoder, header)
            c0, w0 = time.process_time(), time.perf_counter()
            # One decode buffer of the known size, filled piece by piece (a list then a join would
            # hold the output twice).
            out = bytearray(n)
            filled = 0

            def put(piece) -> None:
                nonlocal filled
                if filled + len(piece) > n:
                    raise CompbenchError("decoder produced more bytes than the input had")
                out[filled : filled + len(piece)] = piece
                filled += len(piece)

            decode_stream_to(decoder, header, reader, put, context, progress=dec_tick)
            if filled != n:
                raise CompbenchError(f"decoder produced {filled:,} of {n:,} bytes")
            verify_dec = ([time.perf_counter() - w0], [time.process_time() - c0])
        except CompbenchError as err:
            error, out = f"decode failed: {err}", None
    dec_child = _child_peak(decoder)
    decoder.on_progress = None
    ok = out == data
    if out is not None and not ok:
        error = "decoded bytes differ from the input"
    container_bytes = payload_bytes - sum(map(len, bodies))
    del parts, reader, out  # only the input and the bodies stay alive below (as in lzbench)

    # Timed passes: the coder's own work only (see module docstring).
    pieces = chunks_of(data, cs) if cs > 0 else [data]
    if verify_enc[0][0] >= cfg.max_time_s or cfg.repeat == 0:
        enc_w, enc_c = verify_enc
    else:
        enc_w, enc_c = timed(lambda: encode_bodies(coder, data, context, cs), cfg.repeat, cfg.max_time_s)
    if ok and (verify_dec[0][0] >= cfg.max_time_s or cfg.repeat == 0):
        dec_w, dec_c = verify_dec
    elif ok:
        sizes = [len(p) for p in pieces]
        dec_w, dec_c = timed(lambda: [decoder.decode_body(b, s, context) for b, s in zip(bodies, sizes)], cfg.repeat, cfg.max_time_s)
    else:
        dec_w = dec_c = [float("nan")]
    base["repeat"] = min(len(enc_w), len(dec_w))  # timed passes actually made

    parts = [coder.model_bits(p, context) for p in pieces]
    model_bits = None if any(b is None for b in parts) else float(sum(parts))
    bpb_lmic = None
    if cs > 0 and n:
        fixed = len(coder.encode_body(b"", context))  # what every chunk repeats: the coding of nothing
        bpb_lmic = 8 * (sum(map(len, bodies)) - fixed * (len(bodies) - 1)) / n
    per_byte = (lambda bits: bits / n) if n else (lambda bits: None)  # empty input: no per-byte figures
    return Record(
        **base,
        payload_bytes=payload_bytes,
        container_bytes=container_bytes,
        bpb=per_byte(8 * payload_bytes),
        bpb_model=None if model_bits is None else per_byte(model_bits),
        bpb_total=per_byte(8 * (payload_bytes + len(artifact))),
        bpb_lmic=bpb_lmic,
        model_bits=model_bits,
        encode_cpu_s=statistics.median(enc_c), encode_wall_s=statistics.median(enc_w), encode_wall_min_s=min(enc_w),
        decode_cpu_s=statistics.median(dec_c), decode_wall_s=statistics.median(dec_w), decode_wall_min_s=min(dec_w),
        encode_mb_s=_rate(n, statistics.median(enc_w)), decode_mb_s=_rate(n, statistics.median(dec_w)),
        encode_peak_mem_bytes=_with_children(enc_mem.peak, enc_child),
        decode_peak_mem_bytes=_with_children(dec_mem.peak, dec_child),
        roundtrip_ok=ok, error=error,
    )


def measure(coder: Coder, corpus: Corpus, cfg: MeasureConfig = MeasureConfig(), fit_s: float = 0.0,
            progress: Callable[[str], None] | None = None) -> list[Record]:
    """Measure ``coder`` (already fitted) on every file of ``corpus``."""
    artifact = coder.artifact()
    records = []
    for i, member in enumerate(corpus.members, 1):
        t0 = time.perf_counter()
        rec = measure_member(coder, artifact, member, corpus, cfg, fit_s=fit_s, progress=progress)
        records.append(rec)
        if progress:
            status = "ok" if rec.roundtrip_ok else f"FAILED: {rec.error}"
            # A failed decode has no speed and an empty file no bpb: print "-", never crash.
            fig = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
            progress(f"  [{i}/{len(corpus.members)}] {coder.located_spec} {member.name}: {fig(rec.bpb, '.3f')} bpb, "
                     f"{fig(rec.encode_mb_s, '.2f')}/{fig(rec.decode_mb_s, '.2f')} MB/s enc/dec, {status} "
                     f"({time.perf_counter() - t0:.1f} s)")
    return records
