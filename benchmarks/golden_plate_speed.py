"""Golden-Plate export speed: the shipped GRU exported at several windows, timed in the sandbox.

    python benchmarks/golden_plate_speed.py [--coder gru] [--windows 512,128,64] [--repeat 3]

For each window: the validator's batch (1024 random contexts of 0-512 bytes) and a batch of 1024
full 512-byte contexts (what scoring gives nearly every position), each timed ``repeat`` times
inside ``predict`` in the child process; medians, and the projection for a 1 MB test against the
10-minute limit. Time it on an idle machine. Writes .compbench/bench/golden_plate_speed.json.
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
    ap.add_argument("--windows", default="512,128,64")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from compbench.environment import cpu_model
    from compbench.submission.golden_plate import export_golden_plate
    from compbench.submission.sandbox import Sandbox, random_contexts

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in map(int, args.windows.split(",")):
            zip_path = Path(tmp) / f"w{w}.zip"
            info = export_golden_plate(args.coder, zip_path, window=w)
            with Sandbox(zip_path) as sb:
                val = [sb.predict(random_contexts(1024, seed=i))[1] for i in range(args.repeat)]
                full = [sb.predict(random_contexts(1024, min_len=512, seed=100 + i))[1] for i in range(args.repeat)]
            row = {"coder": args.coder, "window": w, "zip_bytes": info["zip_bytes"],
                   "validator_batch_s": round(statistics.median(val), 3), "full_batch_s": round(statistics.median(full), 3),
                   "projected_1MB_min": round(statistics.median(full) * 1_000_000 / 1024 / 60, 1),
                   "runs": {"validator": [round(x, 3) for x in val], "full": [round(x, 3) for x in full]}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(".compbench/bench/golden_plate_speed.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu_model(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
