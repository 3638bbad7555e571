"""External-command coder: rank any compressor binary (xz, lstm-compress, cmix, paq8, nncp) beside
the built-ins, CompressAI's "binary codec" idea.

Templates are argument lists (split like a POSIX shell, never run through one) with placeholders
``{in}`` and ``{out}``: ``{in}`` is a file holding the input, ``{out}`` a path the program must write.
Without ``{in}`` the input goes to stdin; without ``{out}`` the output is read from stdout::

    compbench run --coders "external:compress='xz -9e -c {in}':decompress='xz -dc {in}'"

Every call runs in a fresh temporary directory (its working directory) with a timeout. If ``code``
names a file (the binary, say), its bytes are the coder's artifact: counted in ``artifact_bytes`` and
fingerprinted into every payload, so decoding with a different build fails clearly.

Trust: this coder runs programs, so it is never built from a payload header alone
(``runs_programs``): ``compbench decode`` asks for ``--coder`` or ``--allow-external``. ``timeout``
and ``code`` are locator options (where the binary is, how long to wait), not part of the header.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from compbench.coder import Coder
from compbench.errors import ArtifactError, CompbenchError, PayloadError
from compbench.registry import register_coder
from compbench.spec import locator


def _spawn(argv: list[str], stdin: bytes | None, cwd: str, timeout: float, what: str):
    """Run a program, feeding ``stdin`` and collecting its output, then reap it with ``wait4`` so
    its own peak RSS is known (the harness's memory figure cannot see a child). Returns
    (process, stdout, stderr, peak RSS bytes)."""
    import threading

    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    except FileNotFoundError:
        raise CompbenchError(f"external: program {argv[0]!r} not found") from None
    except OSError as err:
        raise CompbenchError(f"external: cannot run {argv[0]!r}: {err.strerror}") from None
    sinks: dict[str, bytes] = {}

    def read(name, stream):
        sinks[name] = stream.read()

    def write():
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    threads = [threading.Thread(target=read, args=("out", proc.stdout)), threading.Thread(target=read, args=("err", proc.stderr))]
    if stdin is not None:
        threads.append(threading.Thread(target=write))
    for t in threads:
        t.start()
    killed = threading.Event()

    def kill():
        killed.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in threads:
        t.join()
    if killed.is_set():
        raise CompbenchError(f"external: {what} command timed out after {timeout:g} s")
    return proc, sinks.get("out", b""), sinks.get("err", b""), usage.ru_maxrss * 1024


@register_coder("external")
class ExternalCoder(Coder):
    description = "any compressor CLI: compress='cmd {in}' decompress='cmd {in}' ({out} optional), timeout s"
    family = "external"
    in_all = False  # needs templates, so the 'all' group leaves it out
    runs_programs = True

    @dataclass(frozen=True)
    class Options:
        compress: str = ""
        decompress: str = ""
        timeout: float = locator(600.0)
        code: str = locator("")

        def __post_init__(self):
            for key in ("compress", "decompress"):
                template = getattr(self, key)
                if not template:
                    raise ValueError(f"option {key}='COMMAND {{in}}' is required")
                try:
                    argv = shlex.split(template)
                except ValueError as err:
                    raise ValueError(f"{key} template {template!r}: {err}") from None
                if not argv:
                    raise ValueError(f"{key} template is empty")
            if self.timeout <= 0:
                raise ValueError("timeout must be positive (seconds)")

    def __init__(self, **options):
        super().__init__(**options)
        self._code: bytes | None = None

    def artifact(self) -> bytes:
        if not self.options.code:
            return b""
        if self._code is None:
            try:
                self._code = Path(self.options.code).read_bytes()
            except OSError as err:
                raise CompbenchError(f"external: cannot read code file {self.options.code}: {err.strerror}") from None
        return self._code

    def load_artifact(self, artifact: bytes) -> None:
        if not self.options.code:
            super().load_artifact(artifact)
            return
        if self.artifact() != artifact:
            raise ArtifactError(f"external: {self.options.code} is not the program the payload was made with")

    def _run(self, template: str, data: bytes, what: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="compbench-ext-") as tmp:
            in_path, out_path = os.path.join(tmp, "input.bin"), os.path.join(tmp, "output.bin")
            words = shlex.split(template)
            uses_in = any("{in}" in w for w in words)
            uses_out = any("{out}" in w for w in words)
            argv = [w.replace("{in}", in_path).replace("{out}", out_path) for w in words]
            if uses_in:
                Path(in_path).write_bytes(data)
            proc, out, err_bytes, peak = _spawn(argv, None if uses_in else data, tmp, self.options.timeout, what)
            self.child_peak_rss = max(getattr(self, "child_peak_rss", 0) or 0, peak)
            proc.stdout, proc.stderr = out, err_bytes
            if proc.returncode != 0:
                err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
                tail = err[-1] if err else ""
                raise CompbenchError(f"external: {what} command exited with {proc.returncode}: {tail}")
            if uses_out:
                try:
                    return Path(out_path).read_bytes()
                except FileNotFoundError:
                    raise CompbenchError(f"external: {what} command did not write {{out}}") from None
            return proc.stdout

    def encode_body(self, data: bytes, context: bytes = b"") -> bytes:
        return self._run(self.options.compress, data, "compress")

    def decode_body(self, body: bytes, size: int, context: bytes = b"") -> bytes:
        try:
            out = self._run(self.options.decompress, body, "decompress")
        except CompbenchError as err:
            raise PayloadError(f"payload body could not be decoded ({err})") from None
        if len(out) != size:
            raise PayloadError(f"payload body is corrupted (external decoder gave {len(out)} bytes, expected {size})")
        return out
