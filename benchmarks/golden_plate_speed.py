"""Golden-Plate export: speed and fidelity of the shipped GRU exported at several windows.

    python benchmarks/golden_plate_speed.py [--coder gru] [--windows 512,128,96,64] [--repeat 3]
                                            [--corpus enwik8 --split test --bytes 20000]

For each window: the validator's batch (1024 random contexts of 0-512 bytes) and a batch of 1024
full 512-byte contexts (what scoring gives nearly every position), each timed ``repeat`` times
inside ``predict`` in the child process; medians, and the projection for a 1 MB test against the
10-minute limit. Then the zip's score of the first ``--bytes`` of the corpus split (the challenge's
rule, in the sandbox), against compbench's own cross-entropy of the same model under the same rule
with a 512-byte window (:func:`compbench.submission.reference.windowed_bits`, the integer engine).
Time it on an idle machine. Writes .compbench/bench/golden_plate_speed.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coder", default="gru")
    ap.add_argument("--windows", default="512,128,96,64")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus", default="enwik8")
    ap.add_argument("--split", default="test")
    ap.add_argument("--bytes", type=int, default=20000)
    args = ap.parse_args()
    from compbench.corpus import load_corpus
    from compbench.environment import cpu_model
    from compbench.registry import make_coder
    from compbench.submission.golden_plate import export_golden_plate
    from compbench.submission.reference import windowed_bits
    from compbench.submission.sandbox import Sandbox, random_contexts, score

    data = load_corpus(args.corpus, args.split).joined()[: args.bytes]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in map(int, args.windows.split(",")):
            zip_path = Path(tmp) / f"w{w}.zip"
            info = export_golden_plate(args.coder, zip_path, window=w)
            with Sandbox(zip_path) as sb:
                val = [sb.predict(random_contexts(1024, seed=i))[1] for i in range(args.repeat)]
                full = [sb.predict(random_contexts(1024, min_len=512, seed=100 + i))[1] for i in range(args.repeat)]
                bpb, score_s = score(sb, data)
            row = {"coder": args.coder, "window": w, "zip_bytes": info["zip_bytes"],
                   "validator_batch_s": round(statistics.median(val), 3), "full_batch_s": round(statistics.median(full), 3),
                   "projected_1MB_min": round(statistics.median(full) * 1_000_000 / 1024 / 60, 1),
                   "score_bpb": round(bpb, 5), "score_s": round(score_s, 1),
                   "runs": {"validator": [round(x, 3) for x in val], "full": [round(x, 3) for x in full]}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    ref = windowed_bits(make_coder(args.coder).engine, data, window=512, batch=1024) / len(data)
    for row in rows:
        row["vs_reference_pct"] = round(100 * (row["score_bpb"] - ref) / ref, 3)
    print(json.dumps({"reference_bpb_window512": round(ref, 5)}))
    out = Path(".compbench/bench/golden_plate_speed.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu_model(), "corpus": args.corpus, "split": args.split, "bytes": len(data),
                               "reference_bpb_window512": round(ref, 5), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    from _run import run_main

    run_main(main)
