"""The neural coders' quality/speed knob: bpb against KB/s as the lockstep stream count changes.

    python benchmarks/neural_knob.py [--bytes 262144] [--streams 16,64,256,1024] [--models gru-enwik8,gru-sagas,transformer-enwik8]

``streams`` is the knob: the input is cut into that many segments (``min_segment=1``, so the count
is what is asked), coded in lockstep. More streams put more rows into every matrix product (faster)
but start more segments cold (worse bpb). For each shipped model, on the head of its corpus's test
split, every point is a real encode and a decode from the artifact alone, compared byte for byte,
each timed once (wall clock, this process's threads). Time it on an idle machine. Writes
.compbench/bench/neural_knob.json and reports/knob/knob.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

CORPUS = {"enwik8": "enwik8", "sagas": "icelandic"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bytes", type=int, default=262144)
    ap.add_argument("--streams", default="16,64,256,1024")
    ap.add_argument("--models", default="gru-enwik8,gru-sagas,transformer-enwik8")
    ap.add_argument("--out", default="reports/knob")
    ap.add_argument("--plot-only", action="store_true", help="redraw OUT/knob.png from OUT/knob.json")
    args = ap.parse_args()
    if args.plot_only:
        result = json.loads((Path(args.out) / "knob.json").read_text())
        plot(result["rows"], Path(args.out) / "knob.png", result["cpu"], result["bytes"])
        return
    from compbench.corpus import load_corpus
    from compbench.environment import cpu_model
    from compbench.registry import make_coder

    rows = []
    for key in args.models.split(","):
        arch, name = key.split("-", 1)
        data = load_corpus(CORPUS[name], "test").joined()[: args.bytes]
        # The transformer keeps a 512-position KV cache per stream and layer (about 3 MB per stream
        # for the shipped one): 1024 streams would need 3 GB, so it stops at 256.
        for s in [x for x in map(int, args.streams.split(",")) if arch != "transformer" or x <= 256]:
            spec = f"{arch}:model={name}:streams={s}:min_segment=1"
            enc = make_coder(spec)
            t0 = time.perf_counter()
            payload = enc.encode(data)
            enc_s = time.perf_counter() - t0
            dec = make_coder(spec)
            t0 = time.perf_counter()
            ok = dec.decode(payload) == data
            dec_s = time.perf_counter() - t0
            if not ok:
                raise SystemExit(f"{spec}: round trip FAILED")
            row = {"model": key, "streams": s, "bytes": len(data), "bpb": round(8 * len(payload) / len(data), 4),
                   "encode_kb_s": round(len(data) / enc_s / 1e3, 1), "decode_kb_s": round(len(data) / dec_s / 1e3, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    bench = Path(".compbench/bench/neural_knob.json")
    bench.parent.mkdir(parents=True, exist_ok=True)
    result = {"cpu": cpu_model(), "bytes": args.bytes, "rows": rows}
    bench.write_text(json.dumps(result, indent=2) + "\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "knob.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, out / "knob.png", result["cpu"], args.bytes)
    print(f"wrote {bench}, {out}/knob.json and {out}/knob.png")


def plot(rows: list[dict], path: Path, cpu: str, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model in dict.fromkeys(r["model"] for r in rows):
        pts = [r for r in rows if r["model"] == model]
        ax.plot([r["decode_kb_s"] for r in pts], [r["bpb"] for r in pts], marker="o", label=model)
        for r in pts:
            ax.annotate(str(r["streams"]), (r["decode_kb_s"], r["bpb"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    from matplotlib.ticker import FixedLocator, NullFormatter

    ax.set_xscale("log")
    ticks = [1, 2, 5, 10, 20, 50, 100, 200]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("decode KB/s (log scale; labels: streams)")
    ax.set_ylabel("bits per byte (payload)")
    ax.set_title(f"quality/speed knob: streams, first {n:,} bytes of each test split\n{cpu}, 2 cores", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
