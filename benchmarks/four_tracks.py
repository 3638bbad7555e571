"""The four-track quality table: compbench's neural coders against the best classical coders at 1 MB.

    python benchmarks/four_tracks.py [--tracks enwik8,sagas,dickens,ptb] [--bytes 0] [--max-time 60]

Every row is a real ``compbench run`` (encode, decode by a decoder rebuilt from the artifact alone,
byte-for-byte compare) on the track's test split, judged against a 1,000,000-byte artifact budget:
the model, any stored context and the decoder code. Rows, per track:

* ``ppmd``: PPMd var. H, order 8, nothing stored;
* the 1 MB classical hybrid: PPMd primed with as much of the train split's tail as PPMd itself
  compresses into the budget (``prefix:inner=(ppmd):store=(ppmd)``);
* the shipped GRU as the previous release coded (``mix=0``: the LM and a per-stream match model);
* the shipped GRU with context mixing (``mix=1``, the default);
* the same, primed with as much of the train split's tail as fits the budget beside the model
  (``prefix:inner=(gru...):store=(ppmd)``);
* where a small model is shipped for the track (ptb), that model primed the same way: most of the
  budget then goes to stored train text.

Run it on an idle machine: the speed columns are real. Each is one timed pass after the verifying
one, as ``compbench run`` times (``--max-time``: a verifying pass that already took that long is
the timing itself; ``--max-time 0`` times every row's first pass, which also pays for loading
compiled code and for first touching the mixer's tables). Writes .compbench/bench/four_tracks.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACKS = {  # name: (corpus, shipped model, a small shipped model that leaves the budget to stored text, or None)
    "enwik8": ("enwik8", "enwik8", None),
    "sagas": ("icelandic", "sagas", None),
    "dickens": ("silesia/dickens", "dickens", None),
    "ptb": ("ptb", "ptb", "ptb-small"),
}
PAQ8PX = {"enwik8": 1.621, "sagas": 1.531, "dickens": 1.685, "ptb": 1.581}  # issue 11's figures, same bytes


def rows_for(model: str, small: str | None = None) -> list[tuple[str, str]]:
    gru = f"gru:model={model}"
    extra = []
    if small:  # most of the budget on stored train text, the rest on a small LM
        extra = [("small GRU + context mixing, primed with train text",
                  f"prefix:inner=(gru:model={small}):store=(ppmd)")]
    return [
        ("PPMd o8", "ppmd"),
        ("1 MB classical hybrid (PPMd primed with train text)", "prefix:inner=(ppmd):store=(ppmd)"),
        ("GRU, previous coding (mix=0)", f"{gru}:mix=0"),
        ("GRU + context mixing (mix=1)", gru),
        ("GRU + context mixing, primed with train text", f"prefix:inner=({gru}):store=(ppmd)"),
    ] + extra


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", default=",".join(TRACKS))
    ap.add_argument("--bytes", default="0", help="evaluate only the first SIZE bytes of each test split (0: all)")
    ap.add_argument("--max-time", type=float, default=60.0,
                    help="seconds: a verifying pass shorter than this is followed by a timed one (0: time the "
                         "first pass; default 60)")
    ap.add_argument("--out", default=".compbench/bench/four_tracks.json")
    args = ap.parse_args()
    tracks = args.tracks.split(",")
    unknown = [t for t in tracks if t not in TRACKS]
    if unknown:
        ap.error(f"unknown track {', '.join(unknown)} (the tracks: {', '.join(TRACKS)})")
    from compbench.corpus import load_corpus

    for track in tracks:  # stop in a second, not minutes in, if a track's data is missing
        load_corpus(TRACKS[track][0], "test")
    exe = Path(sys.executable).with_name("compbench")
    results, failed = [], 0
    for track in tracks:
        corpus, model, small = TRACKS[track]
        for label, spec in rows_for(model, small):
            t0 = time.time()
            cmd = [str(exe), "run", "--coders", spec, "--corpus", corpus, "--split", "test", "--budget", "1MB",
                   "--repeat", "1", "--max-time", f"{args.max_time:g}", "--format", "json", "--no-store", "-q", "--bytes", args.bytes]
            res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            if res.returncode != 0:
                print(f"{track}: {spec}: failed: {res.stderr.strip()[-500:]}", flush=True)
                failed += 1
                continue
            recs = json.loads(res.stdout)
            n = sum(r["n_bytes"] for r in recs)
            payload = sum(r["payload_bytes"] for r in recs)  # the whole payload: its container included
            row = {
                "track": track, "row": label, "spec": spec, "n_bytes": n,
                "bpb": round(8 * payload / n, 4),
                "artifact_bytes": recs[0]["artifact_bytes"], "fits_1MB": all(r["fits_budget"] for r in recs),
                "roundtrip": all(r["roundtrip_ok"] for r in recs),
                "encode_kb_s": round(n / sum(r["encode_wall_s"] for r in recs) / 1e3, 1),
                "decode_kb_s": round(n / sum(r["decode_wall_s"] for r in recs) / 1e3, 1),
                "stored_bytes": recs[0]["stored_bytes"], "cpu": recs[0]["cpu"], "wall_s": round(time.time() - t0, 1),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    print()
    print("| track | row | bpb | artifact bytes | fits 1 MB | round trip | enc KB/s | dec KB/s |")
    print("|---|---|---:|---:|---|---|---:|---:|")
    for r in results:
        print(f"| {r['track']} | {r['row']} | {r['bpb']:.4f} | {r['artifact_bytes']:,} | {'yes' if r['fits_1MB'] else 'NO'} "
              f"| {'ok' if r['roundtrip'] else 'FAIL'} | {r['encode_kb_s']} | {r['decode_kb_s']} |")
    for track in dict.fromkeys(r["track"] for r in results):
        mine = [r for r in results if r["track"] == track and "GRU + context" in r["row"] and r["fits_1MB"]]
        hybrid = [r for r in results if r["track"] == track and r["row"].startswith("1 MB classical")]
        if mine and hybrid:
            best = min(mine, key=lambda r: r["bpb"])
            verdict = "beats" if best["bpb"] < hybrid[0]["bpb"] else "does NOT beat"
            print(f"{track}: best neural {best['bpb']:.4f} {verdict} the 1 MB classical hybrid {hybrid[0]['bpb']:.4f}; "
                  f"paq8px -8L {PAQ8PX[track]:.3f} ({'beaten' if best['bpb'] < PAQ8PX[track] else 'not beaten'})")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"budget": 1_000_000, "rows": results}, indent=2) + "\n")
    if failed:
        print(f"{failed} row(s) failed: see above", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    from _run import run_main

    run_main(main)
