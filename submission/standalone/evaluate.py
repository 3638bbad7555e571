"""Re-evaluate this parameter-golf submission from its own bytes, written by
`compbench export --format param-golf`.

    python evaluate.py TEXT_FILE [--json]

Loads model.cbnm with the engine in this folder (compbench/models/, never an installed compbench)
and prints the bits per byte the model assigns to TEXT_FILE: the cross-entropy of exactly the
probabilities compbench's range coder codes with (integer engine, lockstep streams, match model),
which is compbench's ``bpb_model``. The integer engine makes the figure bit-identical on any CPU.
"""

import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # this folder's engine, never an installed one


def main(argv):
    args = [a for a in argv[1:] if a != "--json"]
    if len(args) != 1:
        print("usage: python evaluate.py TEXT_FILE [--json]", file=sys.stderr)
        return 2
    with open(os.path.join(HERE, "submission.json")) as fh:
        sub = json.load(fh)
    with open(os.path.join(HERE, sub["model_file"]), "rb") as fh:
        blob = fh.read()
    with open(args[0], "rb") as fh:
        data = fh.read()
    import compbench.models
    from compbench.models import artifact, lockstep

    if os.path.dirname(os.path.abspath(compbench.models.__file__)) != os.path.join(HERE, "compbench", "models"):
        print("evaluate: the engine was not imported from this folder", file=sys.stderr)
        return 1
    try:
        _, engine = artifact.load_engine(blob)
    except artifact.ArtifactError as err:
        print(f"evaluate: {err}", file=sys.stderr)
        return 1
    o = sub["coder"]["options"]
    mix = o.get("mix", 0)  # a folder from before mix existed coded with mix=0
    bits = lockstep.model_bits(engine, data, o["streams"], o["min_segment"], o["match"], mix=mix)
    result = {"val_bpb": bits / len(data) if data else None, "val_bytes": len(data),
              "val_sha256": hashlib.sha256(data).hexdigest(), "model_sha256": hashlib.sha256(blob).hexdigest()}
    print(json.dumps(result) if "--json" in argv else f"val_bpb {result['val_bpb']:.6f} on {len(data):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
