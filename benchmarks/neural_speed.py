"""Neural coder speed: encode and decode KB/s, and the fraction of the machine's int8 matrix-unit peak.

    python benchmarks/neural_speed.py [--corpus enwik8] [--bytes 1000000] [--repeat 3] [--coders gru,transformer]
                                      [--emulate-avx2]

For each coder it encodes the first ``--bytes`` of the corpus's test split, decodes in the same
process from the artifact alone, checks the bytes, and reports median KB/s over ``--repeat`` runs.
In the same run it measures the int8 GEMM peak and the bf16 peak, and reports what share of the int8
peak the coder's own int8 multiply-accumulates reach. The int8 peak is the faster of two oneDNN
routes on a large square product: ``torch._int_mm`` (the engines' int8 GEMM; oneDNN's BLAS-style gemm
API) and oneDNN's int8 matmul primitive (brgemm, which takes AMX tiles where present); both are
reported, with the oneDNN kernel behind each (``peak.onednn_kernels``), and which of the two routes the
engines took here (``intops.int8_route``: the faster at start-up). It also measures the float32
GEMM peak, and reports the share of the peak of
the matrix path each engine takes on this machine (``intops.matrix_path``: int8; where int8 has no
fast exact kernel, the int16-pair kernel of ``models/gemm16.py`` on AVX2, else float32; the
transformer takes the int16 kernel where an int8 GEMM runs too; each path's peak is measured the same
way). For a transformer, whose decoder step reads every stream's key/value window once per byte, it
also reports those bytes, the memory read bandwidth measured in the same run, and the KB/s that
bandwidth allows (the memory roof). Results go to .compbench/bench/neural_speed.json.

``--emulate-avx2`` runs the same measurement as an AVX2-only machine would on this one (see
:func:`avx2_env`): no int8 GEMM, and no AVX-512 or VNNI instructions in torch's, MKL's or numba's code
(the int16 kernel is compiled for AVX2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import compbench  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def macs_per_byte(coder) -> int:
    """int8 multiply-accumulates the engine does per coded byte (matmuls only)."""
    info = coder.model_info
    cfg = info["config"]
    if info["arch"] == "gru":
        h, layers = cfg["hidden"], cfg["layers"]
        return 3 * h * h * layers + 3 * h * h * (layers - 1) + 256 * h
    d, m, L = cfg["d_model"], cfg["mlp_mult"] * cfg["d_model"], cfg["layers"]
    # q.k and weights.v over the window the coder attends to are exact integer products too
    return L * (3 * d * d + d * d + 2 * m * d + 2 * window(coder) * d) + 256 * d


def window(coder) -> int:
    """Positions a transformer coder attends to: its engine's (the ``window`` option, at most the
    model's ctx, as ``IntTransformer.for_coding`` decides)."""
    return coder.engine.ctx


def kv_bytes_per_byte(coder) -> int:
    """Bytes of key/value cache a transformer's decoder step reads per coded byte: per layer and
    window slot, the int8 key (d), its float32 scale per head, the int16 value (2 d) and its width
    flag per head (see ``IntTransformer.start``; keys are kept for whole blocks of 32 slots and
    values in slot pairs, so a window that is not a multiple of 32 reads a few padded slots too).
    0 for an engine without such a cache."""
    info = coder.model_info
    cfg = info["config"]
    if info["arch"] != "transformer":
        return 0
    w, d, h = window(coder), cfg["d_model"], cfg["heads"]
    key_width = h * -(-(d // h) // 2) * 2  # each head's dimensions rounded up to pairs
    return cfg["layers"] * (-(-w // 32) * 32 * key_width + w * 5 * h + (w + w % 2) * 2 * d)


# An AVX2-only machine, emulated on a newer one: no int8 GEMM (COMPBENCH_NO_INT_MM), ATen, oneDNN and
# MKL capped at AVX2, and numba told the host's CPU features with every AVX-512, AVX10, AMX and VNNI
# feature off. NUMBA_CPU_NAME alone is not enough: numba still takes the host's features unless
# NUMBA_CPU_FEATURES is given, and emits AVX-512 code. It is the same machine otherwise (caches,
# memory, clock), so its figures stand in for an AVX2-only machine's; they are not one's.
_AVX2_OFF = ("avx512", "avx10", "amx", "avxvnni", "avxifma", "avxneconvert")
_AVX2_OFF_EXACT = ("evex512", "vaes", "vpclmulqdq", "gfni")


def avx2_env() -> dict[str, str]:
    """The environment variables of the AVX2 emulation (read at import by numba, torch and MKL)."""
    import llvmlite.binding as ll

    feats = ll.get_host_cpu_features()
    numba = ",".join(("+" if on and not (f.startswith(_AVX2_OFF) or f in _AVX2_OFF_EXACT) else "-") + f
                     for f, on in sorted(feats.items()))
    return {"COMPBENCH_NO_INT_MM": "1", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2", "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": numba,
            "COMPBENCH_EMULATED": "avx2"}


def main() -> None:
    from compbench import corpus, registry
    from compbench.decoding import decode_payload

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="enwik8", help="corpus whose test split is coded (default: enwik8)")
    ap.add_argument("--bytes", type=int, default=1_000_000, help="code the first BYTES of the test split")
    ap.add_argument("--repeat", type=int, default=3, help="encode/decode runs per coder; medians are reported")
    ap.add_argument("--coders", default="gru,transformer",
                    help='comma-separated coder specs, e.g. "gru:model=enwik8:streams=256,gru:mix=0"')
    ap.add_argument("--out", default=".compbench/bench/neural_speed.json", help="where the JSON results go")
    ap.add_argument("--emulate-avx2", action="store_true",
                    help="run as an AVX2-only machine would: no int8 GEMM (so the int16-pair kernels of "
                         "models/gemm16.py), no AVX-512 or VNNI code (see avx2_env)")
    args = ap.parse_args()
    if args.emulate_avx2 and os.environ.get("COMPBENCH_EMULATED") != "avx2":
        # numba, torch and MKL read these once, at import: start again with them set.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **avx2_env()})

    data = corpus.load_corpus(args.corpus, "test").joined()[: args.bytes]
    from compbench.models import intops
    from compbench.models.peak import gemm_peak, has_int8_matmul, onednn_kernels, read_bandwidth

    kernels = onednn_kernels()
    int_mm_peak, bf16_peak, fp32_peak = gemm_peak("int8"), gemm_peak("bf16"), gemm_peak("fp32")
    # The machine's int8 peak is its faster int8 route: on an AMX Xeon the matmul primitive may use
    # the tiles where torch._int_mm does not, and the share of peak must not flatter the engine.
    matmul_peak = None
    if has_int8_matmul():
        try:
            matmul_peak = gemm_peak("int8-matmul")
        except RuntimeError as e:  # a oneDNN build without this kernel: report torch._int_mm alone
            print(f"oneDNN's int8 matmul primitive did not run here: {str(e).splitlines()[0]}", file=sys.stderr)
    int8_peak = max(int_mm_peak, matmul_peak or 0.0)
    bandwidth = read_bandwidth(torch.get_num_threads())
    # The engine's exact matrix path on this machine: int8 GEMMs where the CPU has VNNI/AMX, else the
    # int16-pair kernel on AVX2, else float32 GEMMs of small integers (see intops). Its peak is the
    # fair denominator here.
    # Where the int8 path runs, the engines reach oneDNN by the route a start-up timing chose
    # (intops.int8_route): its peak is the int8 path's.
    route = intops.int8_route() if intops.matrix_path() == "int8" else None
    route_seconds = intops.int8_route_seconds() if route else {}
    peaks = {"int8": matmul_peak if route == "matmul" and matmul_peak else int_mm_peak, "fp32": fp32_peak}

    def path_of(engine=None) -> tuple[str, float]:
        """The matrix path (and its peak, measured once) of ``engine``, or of this machine: an engine
        may prefer another path than the machine's (the transformer takes the int16 kernel on VNNI)."""
        p = getattr(engine, "matrix_path", intops.matrix_path)()
        p = {"float": "fp32"}.get(p, p)
        if p not in peaks:
            peaks[p] = gemm_peak(p)
        return p, peaks[p]

    path, path_peak = path_of()
    emulated = os.environ.get("COMPBENCH_EMULATED") == "avx2"
    print(f"{len(data):,} bytes of {args.corpus} test; {torch.get_num_threads()} threads; "
          f"{'emulating an AVX2-only machine; ' if emulated else ''}"
          f"peak int8 {int8_peak / 1e12:.2f} TOPS (torch._int_mm {int_mm_peak / 1e12:.2f}"
          + (f", oneDNN matmul {matmul_peak / 1e12:.2f}" if matmul_peak else "") + "), "
          f"bf16 {bf16_peak / 1e12:.2f} TFLOPS, fp32 {fp32_peak / 1e12:.2f} "
          f"TFLOPS, memory read {bandwidth / 1e9:.1f} GB/s; the engine's matrix path here: {path}"
          + (f" ({path_peak / 1e12:.2f} TOPS)" if path == "int16" else "")
          + (f", by the {route} route" if route else "")
          + (" (start-up timing of the GRU's two products on one thread: "
             + ", ".join(f"{r} {t * 1e6:.0f} us" for r, t in route_seconds.items()) + ")" if route_seconds else ""),
          file=sys.stderr)
    rows = []
    for spec in args.coders.split(","):
        coder = registry.make_coder(spec)
        art = coder.artifact()
        enc_t, dec_t = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            payload = coder.encode(data)
            enc_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            out = decode_payload(payload, art)
            dec_t.append(time.perf_counter() - t)
            if out != data:
                raise SystemExit(f"{spec}: round trip FAILED")
        enc, dec = len(data) / statistics.median(enc_t), len(data) / statistics.median(dec_t)
        ops = 2 * macs_per_byte(coder)
        row_path, row_peak = path_of(getattr(coder, "engine", None))
        row = {
            "coder": coder.spec, "bytes": len(data), "payload_bytes": len(payload), "artifact_bytes": len(art),
            "bpb": round(8 * len(payload) / len(data), 4),
            "encode_KBps": round(enc / 1e3, 1), "decode_KBps": round(dec / 1e3, 1),
            "int8_ops_per_byte": ops,
            "encode_peak_fraction": round(enc * ops / int8_peak, 5), "decode_peak_fraction": round(dec * ops / int8_peak, 5),
            "matrix_path": row_path, "matrix_path_peak_ops": row_peak,
            "encode_path_peak_fraction": round(enc * ops / row_peak, 5),
            "decode_path_peak_fraction": round(dec * ops / row_peak, 5),
        }
        kv = kv_bytes_per_byte(coder)
        if kv:
            # The memory roof: KB/s at which reading the key/value windows alone takes all the time.
            row.update({"kv_bytes_per_byte": kv, "memory_roof_KBps": round(bandwidth / kv / 1e3, 1),
                        "decode_memory_fraction": round(dec * kv / bandwidth, 4)})
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    result = {"corpus": args.corpus, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "emulated": "avx2" if emulated else None,
              "int8_peak_ops": int8_peak, "int8_int_mm_peak_ops": int_mm_peak, "int8_matmul_peak_ops": matmul_peak,
              "onednn_kernels": kernels, "bf16_peak_flops": bf16_peak, "fp32_peak_flops": fp32_peak,
              "read_bandwidth_bytes_per_s": bandwidth, "matrix_path": path, "matrix_path_peak_ops": path_peak,
              "int8_route": route, "int8_route_seconds": route_seconds, "repeat": args.repeat, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    from tabulate import tabulate

    cols = ["coder", "bpb", "encode_KBps", "decode_KBps", "encode_peak_fraction", "decode_peak_fraction",
            "encode_path_peak_fraction", "decode_path_peak_fraction", "artifact_bytes"]
    if any("memory_roof_KBps" in r for r in rows):
        cols += ["memory_roof_KBps", "decode_memory_fraction"]
    print(tabulate([{k: r.get(k, "") for k in cols} for r in rows], headers="keys", tablefmt="github"))
    for r in rows:
        if r["matrix_path"] != path:
            print(f"\n{r['coder']} runs {r['matrix_path']} GEMMs here (the engine's preference); its "
                  f"*_path_peak_fraction columns are against that kernel's peak ({r['matrix_path_peak_ops'] / 1e12:.2f} TOPS).")
    if path != "int8":
        why = ("COMPBENCH_NO_INT_MM is set (emulating a machine without one), although torch's int8 GEMM measured "
               f"{int_mm_peak / 1e12:.3f} TOPS here" if os.environ.get("COMPBENCH_NO_INT_MM") else
               f"this CPU has no fast exact int8 GEMM (torch._int_mm measured {int_mm_peak / 1e12:.3f} TOPS, a "
               "reference kernel)")
        why += (f"; the *_peak_fraction columns are against the int8 peak ({int8_peak / 1e12:.3f} TOPS), which "
                "this path does not use, and can exceed 1")
        kernel = "int16-pair GEMMs (models/gemm16.py)" if path == "int16" else "float32 GEMMs"
        print(f"\nThe engine runs exact {kernel} here: {why}. The *_path_peak_fraction columns are against "
              f"that kernel's peak ({path_peak / 1e12:.2f} TOPS).")


if __name__ == "__main__":
    from _run import run_main

    run_main(main)
