"""The neural coders' quality/speed knob: bpb against KB/s as ``mix`` and the lockstep stream count change.

    python benchmarks/neural_knob.py [--bytes 262144] [--streams 64,256,1024] [--mix 0,1]
        [--models gru-enwik8,gru-sagas,gru-dickens,gru-ptb,transformer-enwik8] [--transformer-bytes 65536]
        [--transformer-streams 16,32,64,128] [--transformer-windows 128,512]

Two settings trade speed for compression. ``mix=1`` (the default) mixes the LM bit by bit with
context models shared by every stream; ``mix=0`` codes with the LM and a per-stream match model.
``streams``: the input is cut into that many segments (``min_segment=1``, so the count is what is
asked), coded in lockstep. More streams put more rows into every matrix product (faster) but start
more segments cold (worse bpb). The transformer has a third: ``window``, how many of the last bytes
it attends to (default 256 of the shipped model's 512): a shorter window reads less key/value cache
every step. It is swept at 64 streams: on the knob's 65,536 transformer bytes that is what the
default (128 streams, ``min_segment=1024``) codes with. For each shipped model, on the head of its corpus's test
split, every point is a real encode and a decode from the artifact alone, compared byte for byte,
each timed once (wall clock, this process's threads). Time it on an idle machine. Writes
.compbench/bench/neural_knob.json and reports/knob/knob.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

CORPUS = {"enwik8": "enwik8", "sagas": "icelandic", "dickens": "silesia/dickens", "ptb": "ptb"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bytes", type=int, default=262144)
    ap.add_argument("--streams", default="64,256,1024")
    ap.add_argument("--mix", default="0,1")
    ap.add_argument("--models", default="gru-enwik8,gru-sagas,gru-dickens,gru-ptb,transformer-enwik8")
    ap.add_argument("--transformer-bytes", type=int, default=65536,
                    help="the transformer decodes at about 10 KB/s: it is timed on this many bytes")
    ap.add_argument("--transformer-streams", default="16,32,64,128",
                    help="the transformer's stream counts, at its default window (each stream keeps a "
                         "key/value cache of 1.6 KB per position attended to)")
    ap.add_argument("--transformer-windows", default="128,512",
                    help="the transformer's other windows, timed at 64 streams, what its default codes "
                         "65,536 bytes with (the default window, 256, is the 64-stream point of the "
                         "stream sweep)")
    ap.add_argument("--out", default="reports/knob")
    ap.add_argument("--plot-only", action="store_true", help="redraw OUT/knob.png from OUT/knob.json")
    args = ap.parse_args()
    if args.plot_only:
        result = json.loads((Path(args.out) / "knob.json").read_text())
        plot(result["rows"], Path(args.out) / "knob.png", result["cpu"], result["bytes"],
             result.get("transformer_bytes", 65536))
        return
    from compbench.corpus import load_corpus
    from compbench.environment import cpu_model
    from compbench.registry import make_coder

    rows = []
    for key in args.models.split(","):
        arch, name = key.split("-", 1)
        n = args.transformer_bytes if arch == "transformer" else args.bytes
        data = load_corpus(CORPUS[name], "test").joined()[:n]
        # The transformer reads its whole key/value window (413 KB a stream for the shipped model at
        # the default window) every step: its own, shorter list of counts, on fewer bytes.
        counts = list(map(int, (args.transformer_streams if arch == "transformer" else args.streams).split(",")))
        points = [(m, c, None) for m in map(int, args.mix.split(",")) for c in counts]
        if arch == "transformer":
            points += [(m, 64, w) for m in map(int, args.mix.split(",")) for w in map(int, args.transformer_windows.split(","))]
        for mix, s, window in points:
            spec = f"{arch}:model={name}:streams={s}:min_segment=1:mix={mix}" + (f":window={window}" if window else "")
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
            row = {"model": key, "mix": mix, "streams": s, "window": window or getattr(enc.options, "window", None),
                   "sweep": "window" if window else "streams",
                   "bytes": len(data), "bpb": round(8 * len(payload) / len(data), 4),
                   "encode_kb_s": round(len(data) / enc_s / 1e3, 1), "decode_kb_s": round(len(data) / dec_s / 1e3, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    bench = Path(".compbench/bench/neural_knob.json")
    bench.parent.mkdir(parents=True, exist_ok=True)
    result = {"cpu": cpu_model(), "bytes": args.bytes, "transformer_bytes": args.transformer_bytes, "rows": rows}
    bench.write_text(json.dumps(result, indent=2) + "\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "knob.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, out / "knob.png", result["cpu"], args.bytes, args.transformer_bytes)
    print(f"wrote {bench}, {out}/knob.json and {out}/knob.png")


def plot(rows: list[dict], path: Path, cpu: str, n: int, tn: int = 65536) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = {}
    for model, mix, sweep in dict.fromkeys((r["model"], r.get("mix", 0), r.get("sweep", "streams")) for r in rows):
        pts = [r for r in rows if (r["model"], r.get("mix", 0), r.get("sweep", "streams")) == (model, mix, sweep)]
        if sweep == "window":  # the window line passes through the default window: its 64-stream point
            pts += [r for r in rows if (r["model"], r.get("mix", 0), r.get("sweep")) == (model, mix, "streams")
                    and r["streams"] == pts[0]["streams"]]
            pts.sort(key=lambda r: r["window"])
        color = colors.setdefault(model, f"C{len(colors)}")
        ax.plot([r["decode_kb_s"] for r in pts], [r["bpb"] for r in pts], marker="o" if mix else "s", color=color,
                linestyle=(":" if sweep == "window" else "-") if mix else (0, (1, 3)) if sweep == "window" else "--",
                label=f"{model} mix={mix}" + (" (window)" if sweep == "window" else ""))
        for r in pts:
            if sweep == "window" and r.get("sweep") != "window":
                continue  # the default point: labelled by the stream sweep
            text = f"w{r['window']}" if sweep == "window" else str(r["streams"])
            ax.annotate(text, (r["decode_kb_s"], r["bpb"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    from matplotlib.ticker import FixedLocator, NullFormatter

    ax.set_xscale("log")
    ticks = [1, 2, 5, 10, 20, 50, 100, 200]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("decode KB/s (log scale; labels: streams, or wN: the transformer's window at 64 streams)")
    ax.set_ylabel("bits per byte (payload)")
    ax.set_title(f"quality/speed knob: mix (solid 1, dashed 0), streams (labels) and the transformer's window "
                 f"(dotted, wN),\nfirst {n:,} bytes of each test split (transformer: {tn:,} bytes), {cpu}, 2 cores",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    from _run import run_main

    run_main(main)
