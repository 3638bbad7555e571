"""``compbench train``: the harness side of training. Loads the corpus's splits, runs the engine
package's trainer (:mod:`compbench.models.train`: sizing, loop, export), then measures the exported
artifact as the coders will use it and writes ``train.json`` beside ``model.cbnm``.

* **Data.** Train split only; val bpb (float model during training, then the int8 engine alone and
  the coder with its match model at the end) on the first ``val_bytes`` of the val split.
* **Outputs** in ``--out``: ``model.cbnm`` (the artifact a coder loads), ``train.json`` (config,
  command, figures, sha256) and ``checkpoint.pt`` (rerun the same command to resume).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

from .errors import CompbenchError
from .fsutil import atomic_write
from .models.settings import TrainSettings
from .units import parse_size  # noqa: F401  (re-exported: compbench.train.parse_size)

@dataclasses.dataclass
class TrainConfig(TrainSettings):
    """The engine's training settings plus what the harness loads: the corpus and its val bytes."""

    corpus: str = "enwik8"
    val_bytes: int = 100_000
    data_dir: str | None = None


def train(tc: TrainConfig, say=print) -> dict:
    from . import corpus as corpus_mod
    from .models import ARCHS

    if tc.model not in ARCHS:
        raise CompbenchError(f"unknown model {tc.model!r} (choose from: {', '.join(ARCHS)})")
    from .models.train import TrainError
    from .models.train import train as run_training

    train_b = corpus_mod.load_corpus(tc.corpus, "train", tc.data_dir).joined()
    val_b = corpus_mod.load_corpus(tc.corpus, "val", tc.data_dir).joined()[: tc.val_bytes]
    settings = dataclasses.replace(tc, size=dict(tc.size), meta={"corpus": tc.corpus, "split": "train"})
    try:
        result = run_training(settings, train_b, val_b, say=say)
    except TrainError as err:
        raise CompbenchError(f"{tc.corpus}: {err}" if "train bytes" in str(err) else str(err)) from None
    out = Path(tc.out)
    blob = (out / "model.cbnm").read_bytes()
    say(f"artifact {out / 'model.cbnm'}: {len(blob):,} bytes; measuring the int8 engine on val ...")
    from .registry import make_coder

    # The int8 engine alone (comparable with the float figure), then the coder as it ships, with the
    # match model: both through the coder a user would run.
    def bpb(spec: str) -> float:
        return round(make_coder(spec).model_bits(val_b) / len(val_b), 4) if val_b else float("nan")

    path = str(out / "model.cbnm").replace("'", "")
    int8_bpb, coder_bpb = bpb(f"{tc.model}:model='{path}':match=0"), bpb(f"{tc.model}:model='{path}'")
    result.update(corpus=tc.corpus, split="train", artifact_sha256=hashlib.sha256(blob).hexdigest(),
                  val_bpb_int8=int8_bpb, val_bpb_coder=coder_bpb,
                  command=" ".join(["compbench", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("compbench") else None)
    atomic_write(out / "train.json", (json.dumps(result, indent=2) + "\n").encode())
    say(f"done: {result['steps']:,} steps in {result['minutes']:.1f} min ({result['train_bytes_per_s'] / 1e3:.1f} KB/s); "
        f"val bpb float {result['val_bpb_float']:.4f}, int8 engine {int8_bpb:.4f}, coder (with match model) "
        f"{coder_bpb:.4f}; artifact {len(blob):,} bytes sha256 {result['artifact_sha256'][:16]}")
    return result
