"""Decoding payloads that came from strangers: the one place that turns a header into a decoder.

A payload header names a coder and its format options. Trusting that blindly would let a file run
programs or make the decoder allocate whatever it claims, so :func:`open_decoder` applies a policy:

* **No programs from headers.** A coder that runs external programs (``runs_programs``) is built
  only when the user names it: ``--coder SPEC`` (which must match the header) or ``--allow-external``.
* **Artifacts by fingerprint.** The header stores ``sha256(artifact)[:8]``; the artifact is taken
  from ``--artifact``, else the store's artifact folder, else the artifacts that ship with the coder
  (the packaged models), so a payload decodes wherever its artifact sits.
* **Bounded output.** The original length is checked against ``max_output`` before decoding
  (:mod:`compbench.payload` checks every other claim against real bytes).
* **Crash-prone decoders run in a child process** (``isolate = True``: pyppmd can crash on crafted
  bodies). The child only decodes bytes to bytes; a crash becomes a one-line PayloadError.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import struct
from dataclasses import dataclass
from typing import BinaryIO, Callable

from .coder import Coder, fingerprint
from .errors import ArtifactError, PayloadError
from .payload import Header, check_coder, decode_bytes, decode_stream_to


@dataclass(frozen=True)
class DecodePolicy:
    """What a decode may do beyond the payload's own claims."""

    allow_external: bool = False  # build coders that run programs from the header alone
    coder_spec: str | None = None  # the user's own spec for the coder (must match the header)
    max_output: int | None = None  # None: payload.DEFAULT_MAX_OUTPUT
    isolate: bool = True  # run crash-prone decoders (``Coder.isolate``) in a child process


def _coder_class(header: Header, policy: DecodePolicy) -> tuple[type[Coder], dict]:
    from .registry import get_coder_class, make_coder
    from .spec import format_options, parse_spec

    name, raw = parse_spec(header.spec)
    cls = get_coder_class(name)
    if policy.coder_spec:
        mine = make_coder(policy.coder_spec)
        if type(mine) is not cls:
            raise PayloadError(f"payload was written by coder {header.spec!r}, not {policy.coder_spec!r}")
        # The user's options, never the header's: a header that disagrees is refused by check_coder,
        # so a payload cannot swap in its own commands.
        return cls, mine.options_dict()
    if cls.runs_programs and not policy.allow_external:
        raise PayloadError(
            f"this payload's coder {name!r} runs external programs, and a payload never chooses programs to run: "
            f"pass --coder \"{name}:...\" with the commands you trust, or --allow-external to run the ones it names"
        )
    return cls, format_options(cls.Options, raw)


def find_artifact(header: Header, cls: type[Coder], given: bytes | None = None,
                  lookups: tuple[Callable[[str], bytes | None], ...] = ()) -> bytes:
    """The artifact whose fingerprint the header names: ``given``, then each lookup (the store's
    artifact folder), then what ships with the coder."""
    want = header.fingerprint
    if given is not None:
        if fingerprint(given) != want:
            raise ArtifactError(f"wrong artifact: the payload needs artifact {want.hex()}, "
                                f"the one given is {fingerprint(given).hex()}")
        return given
    if want == fingerprint(b""):
        return b""
    for lookup in lookups:
        found = lookup(want.hex())
        if found is not None and fingerprint(found) == want:
            return found
    found = cls.find_artifact(want)
    if found is not None:
        return found
    raise ArtifactError(f"this payload needs artifact {want.hex()}: pass it with --artifact "
                        "(or keep it in the store's artifact folder)")


def open_decoder(header: Header, artifact: bytes | None = None, policy: DecodePolicy = DecodePolicy(),
                 lookups: tuple[Callable[[str], bytes | None], ...] = ()) -> Coder:
    """Build the decoder a header names, from its artifact, under ``policy``."""
    cls, options = _coder_class(header, policy)
    if artifact is None and policy.coder_spec:  # the user's own coder may hold it (external's code=)
        from .registry import make_coder

        mine = make_coder(policy.coder_spec).artifact()
        if mine and fingerprint(mine) == header.fingerprint:
            artifact = mine
    blob = find_artifact(header, cls, artifact, lookups)
    coder = cls.from_artifact(blob, **options)
    check_coder(coder, header)
    return coder


def _quiet_crash() -> None:
    """In a decoding child: its crash is the parent's to report, as one line. A fault handler
    inherited from the parent (pytest's, PYTHONFAULTHANDLER, ``-X faulthandler``) would print
    the child's Python stack on the shared stderr first."""
    if faulthandler.is_enabled():
        faulthandler.disable()


def _isolated(coder: Coder, context: bytes) -> Callable[[bytes, int], bytes]:
    """decode_body(body, size) in a forked child: its crash, or a hang past the deadline, is a PayloadError."""

    def run(body: bytes, size: int) -> bytes:
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: decode, send "ok" + bytes or "er" + message, exit without cleanup
            _quiet_crash()
            os.close(rfd)
            try:
                # A hang is an error too: the alarm kills the child, which the parent reports.
                # The deadline grows with everything the decoder codes: the output, and any context it
                # re-codes first (a primed PPMd codes its prefix's stored text before the body).
                signal.alarm(int(60 + (size + len(context) + coder.stored_bytes) / 250_000))
                try:
                    out, tag = coder.decode_body(body, size, context), b"ok"
                    if len(out) != size:  # never send the parent more than it reads
                        out, tag = f"decoded {len(out):,} bytes, header says {size:,}".encode(), b"er"
                except Exception as err:  # noqa: BLE001  (reported to the parent as text)
                    out, tag = (str(err).splitlines()[0] if str(err) else type(err).__name__).encode()[:4000], b"er"
                with os.fdopen(wfd, "wb") as fh:
                    fh.write(tag + struct.pack("<Q", len(out)) + out)
            finally:
                os._exit(0)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as fh:
            msg = fh.read(size + 10 + 4096)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            raise PayloadError(f"payload body is corrupted (the {coder.name} decoder crashed on it: {name})")
        if len(msg) < 10:
            raise PayloadError(f"payload body is corrupted (the {coder.name} decoder gave no result)")
        tag, (n,) = msg[:2], struct.unpack("<Q", msg[2:10])
        data = msg[10 : 10 + n]
        if tag != b"ok":
            raise PayloadError(f"payload body is corrupted or truncated ({coder.name}: {data.decode(errors='replace')})")
        return data

    return run


def _isolated_stream(coder: Coder, header: Header, f, write, context: bytes, policy: DecodePolicy, progress) -> None:
    """The whole streaming decode in a forked child, its output sent back through a pipe in
    length-prefixed pieces: memory stays flat and a crash is a PayloadError. The caller's output is
    only trusted (renamed into place) once the child has checked the final CRC and said so."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        _quiet_crash()
        os.close(rfd)
        out = os.fdopen(wfd, "wb")
        try:
            def send(piece: bytes) -> None:
                out.write(struct.pack("<I", len(piece)))
                out.write(piece)

            decode_stream_to(coder, header, f, send, context, policy.max_output)
            out.write(struct.pack("<I", 0))
        except Exception as err:  # noqa: BLE001  (reported to the parent as one line)
            msg = (str(err).splitlines()[0] if str(err) else type(err).__name__).encode()[:4000]
            out.write(struct.pack("<II", 0xFFFFFFFF, len(msg)) + msg)
        finally:
            out.flush()
            os._exit(0)
    os.close(wfd)
    ok, error, done = False, None, 0
    with os.fdopen(rfd, "rb") as pipe:
        while True:
            head = pipe.read(4)
            if len(head) < 4:
                break
            (n,) = struct.unpack("<I", head)
            if n == 0:
                ok = True
                break
            if n == 0xFFFFFFFF:
                (m,) = struct.unpack("<I", pipe.read(4))
                error = pipe.read(m).decode(errors="replace")
                break
            write(pipe.read(n))
            done += n
            if progress:
                progress(done)
    _, status = os.waitpid(pid, 0)
    if error is not None:
        raise PayloadError(error)
    if not ok:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        raise PayloadError(f"payload body is corrupted (the {coder.name} decoder crashed on it"
                           + (f": {signal.Signals(sig).name})" if sig else ")"))


def _isolating(coder: Coder, policy: DecodePolicy) -> bool:
    return policy.isolate and coder.isolate and hasattr(os, "fork")


def isolated_body_decoder(coder: Coder, context: bytes = b"", policy: DecodePolicy = DecodePolicy()):
    """``decode_body`` in a child process for a crash-prone coder under ``policy``; None otherwise
    (the caller decodes in-process)."""
    return _isolated(coder, context) if _isolating(coder, policy) else None


def decode_payload(payload: bytes, artifact: bytes | None = None, context: bytes = b"",
                   policy: DecodePolicy = DecodePolicy(), lookups=()) -> bytes:
    """Decode any in-memory compbench payload; the coder is found from the header itself."""
    from .payload import read_header

    payload = bytes(payload)
    header = read_header(payload)
    coder = open_decoder(header, artifact, policy, lookups)
    return decode_bytes(coder, header, payload, context, policy.max_output, isolated_body_decoder(coder, context, policy))


def decode_file(f: BinaryIO, write: Callable[[bytes], object], artifact: bytes | None = None, context: bytes = b"",
                policy: DecodePolicy = DecodePolicy(), lookups=(), progress=None) -> Header:
    """Stream-decode a version-2 payload from ``f`` into ``write`` (version 1: read whole)."""
    from .payload import read_header

    head = f.read(5)
    if len(head) == 5 and head[4] == 1:  # version 1: in memory, as it was written
        payload = head + f.read()
        write(decode_payload(payload, artifact, context, policy, lookups))
        return read_header(payload)
    stream = _Prefixed(head, f)
    header = read_header(stream)
    coder = open_decoder(header, artifact, policy, lookups)
    if progress is not None and hasattr(progress, "set_total"):
        progress.set_total(header.size)
    if _isolating(coder, policy) and coder.streaming:
        from .payload import check_size

        check_size(header, policy.max_output)
        _isolated_stream(coder, header, stream, write, context, policy, progress)
        return header
    decode_stream_to(coder, header, stream, write, context, policy.max_output,
                     isolated_body_decoder(coder, context, policy), progress)
    return header


class _Prefixed:
    """A stream with some bytes already read put back in front."""

    def __init__(self, head: bytes, f: BinaryIO):
        self.head, self.f = head, f

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                out, self.head = self.head + self.f.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            if len(out) < n:
                out += self.f.read(n - len(out))
            return out
        return self.f.read(n)
