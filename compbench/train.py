"""``compbench train``: the harness side of training. Loads the corpus's splits, runs the engine
package's trainer (:mod:`compbench.models.train`: sizing, loop, export), then measures the exported
artifact as the coders will use it and writes ``train.json`` beside ``model.cbnm``.

* **Data.** Train split only; val bpb (float model during training, then the int8 engine alone and
  the coder with its match model at the end) on the first ``val_bytes`` of the val split.
* **Outputs** in ``--out``: ``model.cbnm`` (the artifact a coder loads), ``train.json`` (config,
  command, figures, sha256) and ``checkpoint.pt`` (rerun the same command to resume).
* **Grids.** ``--set hidden=256,424,544`` trains one model per combination of the listed values
  (:func:`train_grid`), each a job on an executor (:mod:`compbench.executors`): serial, ``--jobs``
  local processes or Ray. A job gets the train and val bytes by content hash (shipped once),
  trains in a temporary folder wherever it runs, and returns its artifact and record; the driver
  writes ``OUT/<field=value,...>/`` (``model.cbnm``, ``train.json``), which ``compbench tradeoff
  --models`` and any coder's ``model=`` take. Grid jobs do not keep checkpoints.
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


def _splits(tc: TrainConfig) -> tuple[bytes, bytes]:
    from . import corpus as corpus_mod

    train_b = corpus_mod.load_corpus(tc.corpus, "train", tc.data_dir).joined()
    val_b = corpus_mod.load_corpus(tc.corpus, "val", tc.data_dir).joined()[: tc.val_bytes]
    return train_b, val_b


def train(tc: TrainConfig, say=print) -> dict:
    if tc.model not in _archs():
        raise CompbenchError(f"unknown model {tc.model!r} (choose from: {', '.join(_archs())})")
    train_b, val_b = _splits(tc)
    return train_on(tc, train_b, val_b, say)


def _archs():
    from .models import ARCHS

    return ARCHS


def train_on(tc: TrainConfig, train_b: bytes, val_b: bytes, say=print) -> dict:
    """Train on these bytes (the corpus's train split and the head of its val split) into ``tc.out``."""
    from .models.train import TrainError
    from .models.train import train as run_training

    settings = dataclasses.replace(tc, size=dict(tc.size), meta={"corpus": tc.corpus, "split": "train"})
    try:
        result = run_training(settings, train_b, val_b, say=say)
    except TrainError as err:
        raise CompbenchError(f"{tc.corpus}: {err}" if "train bytes" in str(err) else str(err)) from None
    out = Path(tc.out)
    blob = (out / "model.cbnm").read_bytes()
    say(f"artifact {out / 'model.cbnm'}: {len(blob):,} bytes; measuring the int8 engine on val ...")
    from .registry import make_coder

    # The int8 engine alone (comparable with the float figure; mix=0 match=0), then the coder as it
    # ships (context mixing): both through the coder a user would run.
    def bpb(spec: str) -> float:
        return round(make_coder(spec).model_bits(val_b) / len(val_b), 4) if val_b else float("nan")

    path = str(out / "model.cbnm").replace("'", "")
    int8_bpb, coder_bpb = bpb(f"{tc.model}:model='{path}':match=0:mix=0"), bpb(f"{tc.model}:model='{path}'")
    result.update(corpus=tc.corpus, split="train", artifact_sha256=hashlib.sha256(blob).hexdigest(),
                  val_bpb_int8=int8_bpb, val_bpb_coder=coder_bpb, device=device_record(result),
                  command=cli_command())
    atomic_write(out / "train.json", (json.dumps(result, indent=2) + "\n").encode())
    say(f"done: {result['steps']:,} steps in {result['minutes']:.1f} min on {result['device']} "
        f"({result['train_bytes_per_s'] / 1e3:.1f} KB/s, "
        f"{result['train_flops_per_s'] / 1e9:.1f} GFLOP/s: {result['peak_fraction']:.1%} of the "
        f"{result['peak_dtype']} matrix peak, {result['peak_flops_per_s'] / 1e9:.1f} GFLOP/s, measured now); "
        f"val bpb float {result['val_bpb_float']:.4f}, int8 engine {int8_bpb:.4f}, coder (context mixing) "
        f"{coder_bpb:.4f}; artifact {len(blob):,} bytes sha256 {result['artifact_sha256'][:16]}")
    return result


def device_record(result: dict) -> str:
    """Which device trained a model, for its record: the GPU's name, or the CPU's model name, its
    widest matrix instructions and the threads used; then the precision trained in."""
    from . import environment

    if result.get("gpu"):
        return f"GPU: {result['gpu']}, {result['precision']}"
    isa = environment.cpu_isa()
    threads = result["threads"]
    return (f"CPU: {environment.cpu_model()}{f' ({isa})' if isa else ''}, {threads} thread{'s' if threads != 1 else ''}, "
            f"{result['precision']}")


def cli_command(argv: list[str] | None = None) -> str | None:
    """The ``compbench ...`` command line this process runs, for the record; None when it is not the
    CLI (a library call, a test). ``python -m compbench`` counts: its argv[0] is the package's
    ``__main__.py`` (how the shipped GPU models were trained, from an uninstalled checkout)."""
    argv = sys.argv if argv is None else argv
    if not argv:
        return None
    prog = Path(argv[0])
    if prog.name == "compbench" or (prog.name == "__main__.py" and prog.parent.name == "compbench"):
        return " ".join(["compbench", *argv[1:]])
    return None


# -- grids ----------------------------------------------------------------------------------------
def grid(sizes: dict[str, list[int]]) -> list[dict[str, int]]:
    """Every combination of the listed values: {"hidden": [256, 424], "layers": [1]} -> 2 configs."""
    combos: list[dict[str, int]] = [{}]
    for field, values in sizes.items():
        combos = [{**c, field: v} for c in combos for v in values]
    return combos


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """One model of a grid, as plain data an executor can ship."""

    config: dict  # TrainConfig fields, except ``out``
    label: str  # "hidden=256,layers=1": its folder under the grid's --out
    needs: tuple[str, str]  # sha256 of the train bytes and of the val bytes


def train_job(job: TrainJob, train_b: bytes, val_b: bytes, progress=None) -> dict:
    """Train one grid model wherever this runs; returns its record and artifact (the driver writes them)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="compbench-train-") as tmp:
        tc = TrainConfig(**{**job.config, "out": tmp})
        say = (lambda msg, end="\n": progress(f"  {job.label}: {msg.strip()}") if msg.strip() else None) if progress \
            else (lambda msg, end="\n": None)
        result = train_on(tc, train_b, val_b, say)
        return {"result": result, "model": (Path(tmp) / "model.cbnm").read_bytes()}


def train_grid(tc: TrainConfig, sizes: dict[str, list[int]], executor, say=print) -> list[dict]:
    """Train every combination of ``sizes`` on ``executor``; writes ``tc.out/<label>/``. Returns the
    records, in grid order. A job that fails is reported and the others still finish."""
    if tc.model not in _archs():
        raise CompbenchError(f"unknown model {tc.model!r} (choose from: {', '.join(_archs())})")
    train_b, val_b = _splits(tc)
    needs = (hashlib.sha256(train_b).hexdigest(), hashlib.sha256(val_b).hexdigest())
    blobs = {needs[0]: train_b, needs[1]: val_b}
    base = {f.name: getattr(tc, f.name) for f in dataclasses.fields(tc) if f.name != "out"}
    jobs = [TrainJob({**base, "size": {**tc.size, **combo}}, ",".join(f"{k}={v}" for k, v in combo.items()), needs)
            for combo in grid(sizes)]
    out, results, failures = Path(tc.out), {}, []
    say(f"training {len(jobs)} model(s): {', '.join(j.label for j in jobs)} -> {out}/")

    def done(job: TrainJob, rec: dict | None, error: str | None) -> None:
        if rec is None:
            failures.append(f"{job.label}: {error}")
            say(f"  {job.label}: FAILED: {error}")
            return
        folder = out / job.label
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "model.cbnm", rec["model"])
        result = {**rec["result"], "grid": job.label,
                  "command": cli_command()}
        atomic_write(folder / "train.json", (json.dumps(result, indent=2) + "\n").encode())
        results[job.label] = result
        say(f"  {job.label}: val bpb {result['val_bpb_coder']:.4f} (coder), artifact {len(rec['model']):,} bytes, "
            f"{result['minutes']:.1f} min -> {folder}")

    executor.run(jobs, blobs, done, work=train_job)
    if failures:
        raise CompbenchError(f"{len(failures)} of {len(jobs)} model(s) failed: {failures[0]}")
    return [results[j.label] for j in jobs]
