"""What a user waits for: one ``compbench encode`` and one ``compbench decode`` of a file, each a
fresh process, for the neural coders at several sizes.

    python benchmarks/one_shot.py [--coders gru,transformer] [--sizes 20000,262144,1000000]
                                  [--corpus enwik8] [--repeat 3]

The other speed benchmarks time the coding inside a warm process. A one-shot command also pays for
starting Python, importing torch and numba, loading the model and the compiled mixer, and setting
up the mixer's tables (up to about 800 MB, touched for the first time). Each input is the first
``size`` bytes of the corpus's test split (the built-in corpus where there is no data folder). For
every coder and size: one untimed round trip first (it compiles numba's cache on a fresh checkout),
then ``--repeat`` timed ones; each decode is compared byte for byte. Reports median wall seconds,
KB/s over the whole command, and each command's peak resident memory (the child's own, through
``wait4``). Also times ``python -c "import torch, numba"``, the floor under every row. Time it on an
idle machine. Writes .compbench/bench/one_shot.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(argv: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one child process; a failure ends the benchmark."""
    t = time.perf_counter()
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child cannot block on it
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        code = os.waitstatus_to_exitcode(status)
        if code:
            err.seek(0)
            last = err.read().decode(errors="replace").strip().splitlines()[-1:]
            why = last[0].removeprefix("Error: ") if last else f"exit status {code}"
            raise SystemExit(f"Error: {' '.join(argv[2:])} failed: {why}")
    return wall, usage.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coders", default="gru,transformer", help="comma-separated coder specs")
    ap.add_argument("--sizes", default="20000,262144,1000000", help="input sizes (bytes, or 20KB, 1MB, ...)")
    ap.add_argument("--corpus", default="enwik8")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=".compbench/bench/one_shot.json")
    args = ap.parse_args()

    from compbench import corpus, environment
    from compbench.errors import CompbenchError
    from compbench.spec import split_specs
    from compbench.units import parse_size

    try:
        data = corpus.load_corpus(args.corpus, "test").joined()
        source = f"{args.corpus} test"
    except CompbenchError:
        data = corpus.load_corpus("pystdlib", "test").joined()
        source = "pystdlib test (no data folder)"
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    if min(sizes) < 1 or max(sizes) > len(data) or args.repeat < 1:
        raise CompbenchError(f"--sizes must lie in 1 .. {len(data):,} bytes ({source}) and --repeat be at least 1")
    cli = [sys.executable, "-m", "compbench"]
    floor = statistics.median(run([sys.executable, "-c", "import torch, numba"])[0] for _ in range(args.repeat))
    print(f"python -c 'import torch, numba': {floor:.2f} s (median of {args.repeat})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in split_specs(args.coders):
            for size in sizes:
                raw, packed, back = Path(tmp, "in"), Path(tmp, "in.cbp"), Path(tmp, "out")
                raw.write_bytes(data[:size])
                enc = [*cli, "encode", "-q", "-f", "--coder", spec, str(raw), str(packed)]
                dec = [*cli, "decode", "-q", "-f", str(packed), str(back)]
                times: dict[str, list[float]] = {"encode": [], "decode": []}
                peaks: dict[str, int] = {"encode": 0, "decode": 0}
                for i in range(args.repeat + 1):
                    for name, argv in (("encode", enc), ("decode", dec)):
                        wall, peak = run(argv)
                        if i:  # the first round trip only warms up (and may compile)
                            times[name].append(wall)
                            peaks[name] = max(peaks[name], peak)
                    if back.read_bytes() != raw.read_bytes():
                        raise SystemExit(f"Error: {spec}: the decoded bytes differ from the input ({size:,} bytes)")
                row = {"coder": spec, "bytes": size, "payload_bytes": packed.stat().st_size}
                for name in ("encode", "decode"):
                    med = statistics.median(times[name])
                    row[f"{name}_s"] = round(med, 3)
                    row[f"{name}_s_all"] = [round(x, 3) for x in times[name]]
                    row[f"{name}_kb_s"] = round(size / med / 1000, 1)
                    row[f"{name}_peak_mb"] = round(peaks[name] / 1e6)
                rows.append(row)
                print(f"{spec:>12} {size:>9,} B: encode {row['encode_s']:.2f} s ({row['encode_kb_s']:.1f} KB/s, "
                      f"{row['encode_peak_mb']} MB), decode {row['decode_s']:.2f} s ({row['decode_kb_s']:.1f} KB/s, "
                      f"{row['decode_peak_mb']} MB), {8 * row['payload_bytes'] / size:.4f} bpb with the header",
                      flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"source": source, "repeat": args.repeat, "machine": environment.machine(),
                               "isa": environment.cpu_isa(), "commit": environment.git_commit(),
                               "import_torch_numba_s": round(floor, 3), "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _run import run_main

    run_main(main)
