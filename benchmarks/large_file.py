"""Streaming round trips of a large file through `compbench encode` / `compbench decode`, each in its
own process, with that process's peak resident memory (its own VmHWM, read by the parent through
``wait4``). Memory must stay flat whatever the file size; issue 7's goal is under 300 MB.

    python benchmarks/large_file.py [--size 1GB] [--coders 'zlib:level=6,zstd:level=3,...']

The input is the enwik8 head (or the built-in corpus) repeated with a changing line every 64 KB, so
it is text, not a trivially repeating block. Writes .compbench/bench/large_file.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = "identity,zlib:level=6,bz2:level=9,lzma:preset=1,zstd:level=3,brotli:quality=5,ppmd:order=4:mem_mib=64"


def make_input(path: Path, size: int) -> None:
    from compbench.corpus import load_corpus

    try:
        seed = load_corpus("enwik8").joined()
    except Exception:  # noqa: BLE001  (no data folder)
        seed = load_corpus("pystdlib").joined()
    block = 1 << 16
    with open(path, "wb") as fh:
        written, i = 0, 0
        while written < size:
            start = (i * 7919 * block) % max(1, len(seed) - block)
            piece = (b"%d\n" % i) + seed[start : start + block]
            piece = piece[: size - written]
            fh.write(piece)
            written += len(piece)
            i += 1


def run(argv: list[str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS bytes of the child, exit status)."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed: {err.strip().splitlines()[-1:]}")
    return time.perf_counter() - t, usage.ru_maxrss * 1024, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1GB")
    ap.add_argument("--coders", default=DEFAULT)
    ap.add_argument("--dir", default=None, help="scratch folder (needs about 2.5x the size free)")
    args = ap.parse_args()
    from compbench.spec import split_specs
    from compbench.units import parse_size

    size = parse_size(args.size)
    exe = [sys.executable, "-m", "compbench"]
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="compbench-large-") as tmp:
        src, payload, out = Path(tmp) / "input.bin", Path(tmp) / "payload.cbp", Path(tmp) / "output.bin"
        make_input(src, size)
        for spec in split_specs(args.coders):
            enc_s, enc_rss, _ = run([*exe, "encode", "-q", "-f", "--coder", spec, str(src), str(payload)])
            dec_s, dec_rss, _ = run([*exe, "decode", "-q", "-f", str(payload), str(out)])
            same = subprocess.run(["cmp", "-s", str(src), str(out)]).returncode == 0
            row = {"coder": spec, "bytes": size, "payload_bytes": payload.stat().st_size, "encode_s": round(enc_s, 1),
                   "decode_s": round(dec_s, 1), "encode_peak_rss_mb": round(enc_rss / 1e6, 1),
                   "decode_peak_rss_mb": round(dec_rss / 1e6, 1), "identical": same}
            rows.append(row)
            print(json.dumps(row), flush=True)
            out.unlink(missing_ok=True)
    dest = Path(".compbench/bench/large_file.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({"size": size, "rows": rows}, indent=2) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    from _run import run_main

    run_main(main)
