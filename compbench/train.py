"""``compbench train``: fit a byte-LM to an artifact budget, train it on a corpus's train split, export int8.

* **Fit to budget.** The model is sized so that its *uncompressed* int8 weights, fp16 scales, the
  decoder code and the header fit the budget; the compressed artifact is then guaranteed to fit.
* **Data.** Train split only; val bpb (float model, then the int8 engine at the end) on the val split.
* **Resumable.** A checkpoint (model, optimizer, data RNG, step, elapsed time) is written atomically
  every ``checkpoint_s`` seconds and on Ctrl-C; rerunning the same command resumes it. Checkpoints are
  read with ``torch.load(weights_only=True)``, which cannot run code.
* **Speed.** bf16 autocast on CPUs with AMX/AVX512-BF16 (the matrix units), fp32 elsewhere.
* **Outputs** in ``--out``: ``model.cbnm`` (the artifact a coder loads), ``train.json`` (config,
  command, figures, sha256) and ``checkpoint.pt``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
import math
import os
import re
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import CompbenchError

_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2}


def parse_size(text: str) -> int:
    """'1MB' -> 1,000,000; '16MB' -> 16,000,000; '512KiB' -> 524,288; '123456' -> 123,456."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise CompbenchError(f"cannot read size {text!r} (examples: 1MB, 16MB, 500KB, 1MiB, 123456)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


@dataclasses.dataclass
class TrainConfig:
    model: str = "gru"
    corpus: str = "enwik8"
    budget: int = 1_000_000
    out: str = "runs/model"
    minutes: float | None = None
    steps: int | None = None
    seed: int = 0
    batch: int = 0  # 0: per-architecture default
    seq_len: int = 0  # 0: per-architecture default (GRU 256, transformer = context)
    lr: float = 0.0  # 0: per-architecture default
    # The train splits are small (3 MB for the enwik8 head): a 1 MB model memorises them within a
    # few epochs (transformer without dropout: train 1.7 bpb, val 2.2), so training regularises.
    dropout: float = 0.1
    weight_decay: float = 0.1
    device: str = "cpu"
    precision: str = "auto"  # auto | bf16 | fp32
    threads: int = 0
    size: dict = dataclasses.field(default_factory=dict)  # explicit config fields (skip budget fit)
    val_bytes: int = 100_000
    eval_s: float = 120.0
    checkpoint_s: float = 300.0
    data_dir: str | None = None


# -- sizing --------------------------------------------------------------------------------------


def _code_bytes(arch: str) -> int:
    from .models import artifact

    return len(lzma.compress(b"".join(b for _, b in artifact.decoder_code(arch)), preset=9))


def artifact_bound(arch: str, cfg) -> int:
    """Upper bound on the artifact size: raw int8 + fp16 payload, compressed code, header slack."""
    int8, fp16 = cfg.artifact_params()
    return int8 + 2 * fp16 + _code_bytes(arch) + 4096


def fit_to_budget(arch: str, budget: int, fixed: dict):
    """Largest model of the architecture whose artifact bound fits ``budget`` (explicit fields win)."""
    from .models import ARCHS

    cls = ARCHS[arch].config
    key = "hidden" if arch == "gru" else "d_model"
    if key in fixed:
        cfg = cls(**fixed)
    else:
        step = 8 if arch == "gru" else 16 * fixed.get("heads", cls().heads) // math.gcd(16, fixed.get("heads", cls().heads))
        best = None
        for size in range(step, 4097, step):
            try:
                cand = cls(**{**fixed, key: size})
            except ValueError:
                continue
            if artifact_bound(arch, cand) > budget:
                break
            best = cand
        if best is None:
            raise CompbenchError(f"no {arch} fits a {budget:,}-byte budget")
        cfg = best
    bound = artifact_bound(arch, cfg)
    if bound > budget:
        raise CompbenchError(f"{arch} {cfg} needs up to {bound:,} bytes, over the {budget:,}-byte budget")
    return cfg


# -- data --------------------------------------------------------------------------------------


class GRUBatches:
    """Truncated BPTT over B streams of the train bytes, state carried between chunks.

    Each stream runs ``span`` bytes from a random start, beginning with BOS and a zero state,
    then restarts elsewhere: the same shape as a coded segment (BOS, empty state, a few KB).
    """

    def __init__(self, data: torch.Tensor, batch: int, seq: int, gen: torch.Generator, span: int = 8192):
        self.data, self.B, self.T, self.gen, self.span = data, batch, seq, gen, span
        self.pos = torch.zeros(batch, dtype=torch.int64)
        self.left = torch.zeros(batch, dtype=torch.int64)  # bytes left before a restart

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs [B,T], targets [B,T], reset mask [B]); reset rows start from BOS and h = 0."""
        from .models.gru import BOS

        n = len(self.data)
        reset = self.left < self.T
        k = int(reset.sum())
        if k:
            self.pos[reset] = torch.randint(0, n - self.span - self.T - 1, (k,), generator=self.gen)
            self.left[reset] = self.span
        idx = self.pos[:, None] + torch.arange(-1, self.T)[None, :]
        chunk = self.data[idx.clamp_min(0)]
        x, y = chunk[:, :-1].clone(), chunk[:, 1:]
        x[reset, 0] = BOS
        self.pos += self.T
        self.left -= self.T
        return x, y, reset

    def state(self) -> dict:
        return {"pos": self.pos, "left": self.left}

    def load(self, s: dict) -> None:
        self.pos, self.left = s["pos"], s["left"]


def transformer_batch(data: torch.Tensor, batch: int, ctx: int, gen: torch.Generator):
    """Random windows of ``ctx`` bytes; one row in eight starts with BOS (a coded stream's start)."""
    from .models.gru import BOS

    start = torch.randint(0, len(data) - ctx - 1, (batch,), generator=gen)
    chunk = data[start[:, None] + torch.arange(ctx + 1)[None, :]]
    x, y = chunk[:, :-1].clone(), chunk[:, 1:].clone()
    bos = torch.rand(batch, generator=gen) < 0.125
    x[bos, 1:] = chunk[bos, :-2]
    x[bos, 0] = BOS
    y[bos] = chunk[bos, :-1]
    return x, y


@torch.no_grad()
def float_bpb(model, arch: str, data: torch.Tensor, device, autocast) -> float:
    """Float-model bpb on ``data`` cut into BOS-started segments (val progress; cheap)."""
    from .models.gru import BOS

    model.eval()
    seg = 4096 if arch == "gru" else model.cfg.ctx
    n = (len(data) // seg) * seg
    if n == 0:
        return float("nan")
    rows = data[:n].view(-1, seg)
    total = 0.0
    for i in range(0, len(rows), 64):
        y = rows[i : i + 64].to(device)
        x = torch.cat([torch.full((len(y), 1), BOS, device=device), y[:, :-1]], 1)
        with autocast():
            logits, _ = model(x)
        total += F.cross_entropy(logits.float().reshape(-1, 256), y.reshape(-1), reduction="sum").item()
    model.train()
    return total / n / math.log(2)


# -- training ------------------------------------------------------------------------------------


def _amx_or_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(tc: TrainConfig, say=print) -> dict:
    from . import corpus as corpus_mod
    from .models import ARCHS, artifact

    if tc.model not in ARCHS:
        raise CompbenchError(f"unknown model {tc.model!r} (choose from: {', '.join(ARCHS)})")
    if tc.minutes is None and tc.steps is None:
        raise CompbenchError("give --minutes or --steps")
    if tc.device.startswith("cuda") and not torch.cuda.is_available():
        raise CompbenchError("--device cuda was asked for, but torch sees no CUDA GPU")
    if tc.threads:
        torch.set_num_threads(tc.threads)
    arch = tc.model
    cfg = fit_to_budget(arch, tc.budget, tc.size)
    defaults = {"gru": (128, 256, 2e-3), "transformer": (32, cfg.ctx if arch == "transformer" else 0, 2e-3)}[arch]
    batch, seq, lr = tc.batch or defaults[0], tc.seq_len or defaults[1], tc.lr or defaults[2]
    device = torch.device(tc.device)
    bf16 = tc.precision == "bf16" or (tc.precision == "auto" and (device.type == "cuda" or _amx_or_bf16()))

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    train_c = corpus_mod.load_corpus(tc.corpus, "train", tc.data_dir)
    val_c = corpus_mod.load_corpus(tc.corpus, "val", tc.data_dir)
    train_b, val_b = train_c.joined(), val_c.joined()[: tc.val_bytes]
    if len(train_b) < 4 * 8192 + seq:
        raise CompbenchError(f"corpus {tc.corpus!r} has only {len(train_b):,} train bytes; too few to train on")
    data = torch.frombuffer(bytearray(train_b), dtype=torch.uint8).to(torch.int64)
    val = torch.frombuffer(bytearray(val_b), dtype=torch.uint8).to(torch.int64)

    out = Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    torch.manual_seed(tc.seed)
    gen = torch.Generator().manual_seed(tc.seed)
    dropout = tc.dropout
    if not 0.0 <= dropout < 1.0:
        raise CompbenchError(f"dropout must be in [0, 1), got {dropout}")
    model = ARCHS[arch].module(cfg, dropout=dropout).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.98),
    )
    batches = GRUBatches(data, batch, seq, gen) if arch == "gru" else None
    h = None
    history: list[dict] = []
    step, elapsed, seen = 0, 0.0, 0
    plan = {"arch": arch, "config": dataclasses.asdict(cfg), "corpus": tc.corpus, "seed": tc.seed, "batch": batch, "seq": seq, "lr": lr,
            "dropout": dropout, "weight_decay": tc.weight_decay}
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=True)
        if json.loads(ck["plan"]) != plan:
            raise CompbenchError(f"{ckpt_path} is from a different training setup; use another --out or delete it")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        step, elapsed, seen = int(ck["step"]), float(ck["elapsed"]), int(ck["seen"])
        history[:] = json.loads(ck.get("history", "[]"))
        if batches is not None:
            batches.load(ck["batches"])
        say(f"resuming {ckpt_path} at step {step:,} ({elapsed / 60:.1f} min done)")

    def save_checkpoint():
        _atomic_save(
            {
                "plan": json.dumps(plan),
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "gen": gen.get_state(),
                "step": step,
                "elapsed": elapsed,
                "seen": seen,
                "batches": batches.state() if batches is not None else {},
                "history": json.dumps(history),
            },
            ckpt_path,
        )

    n_params = sum(p.numel() for p in model.parameters())
    say(
        f"{arch} {cfg}: {n_params:,} float params; artifact bound {artifact_bound(arch, cfg):,} <= budget "
        f"{tc.budget:,} bytes\ntrain {len(train_b):,} bytes of {tc.corpus} (train split), val {len(val_b):,}; "
        f"batch {batch} x {seq}, lr {lr}, dropout {dropout}, weight decay {tc.weight_decay}, {'bf16 autocast' if bf16 else 'fp32'} on {device}, "
        f"{torch.get_num_threads()} threads"
    )
    limit_s = tc.minutes * 60 if tc.minutes is not None else math.inf
    limit_steps = tc.steps if tc.steps is not None else math.inf
    # Short --steps runs (tests, smoke runs) get a proportionally short warm-up.
    warmup = 100 if tc.steps is None else max(1, min(100, tc.steps // 5))

    def progress() -> float:
        return min(1.0, max(elapsed / limit_s, step / limit_steps))

    last_eval = last_ckpt = elapsed
    val_bpb = history[-1]["val_bpb"] if history else float("nan")
    t_prev = time.perf_counter()
    loss_avg = None
    try:
        while progress() < 1.0:
            frac = progress()
            cur_lr = lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
            for g in opt.param_groups:
                g["lr"] = cur_lr
            if arch == "gru":
                x, y, reset = batches.next()
                x, y = x.to(device), y.to(device)
                if h is not None:
                    h = h.detach()
                    h[:, reset.to(device)] = 0
                with autocast():
                    logits, h = model(x, h)
            else:
                x, y = transformer_batch(data, batch, seq, gen)
                x, y = x.to(device), y.to(device)
                with autocast():
                    logits, _ = model(x)
            loss = F.cross_entropy(logits.float().reshape(-1, 256), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            seen += x.numel()
            now = time.perf_counter()
            elapsed += now - t_prev
            t_prev = now
            lv = loss.item() / math.log(2)
            loss_avg = lv if loss_avg is None else 0.98 * loss_avg + 0.02 * lv
            done = progress() >= 1.0
            if elapsed - last_eval >= tc.eval_s or done:
                val_bpb = float_bpb(model, arch, val, device, autocast)
                history.append({"step": step, "minutes": round(elapsed / 60, 2), "train_bpb": round(loss_avg, 4), "val_bpb": round(val_bpb, 4)})
                last_eval = elapsed
                t_prev = time.perf_counter()  # evaluation time is not training time
            if step % 20 == 0 or done:
                left = (1 - progress()) * (limit_s if limit_s < math.inf else elapsed / max(progress(), 1e-9))
                say(
                    f"\r[{progress() * 100:5.1f}%] step {step:,}  train {loss_avg:.3f} bpb  val {val_bpb:.3f} bpb  "
                    f"{seen / max(elapsed, 1e-9) / 1e3:.1f} KB/s  {elapsed / 60:.1f} min, ~{left / 60:.1f} left",
                    end="\n" if done or not sys.stderr.isatty() else "",
                )
            if elapsed - last_ckpt >= tc.checkpoint_s:
                save_checkpoint()
                last_ckpt = elapsed
    except KeyboardInterrupt:
        save_checkpoint()
        raise CompbenchError(f"interrupted at step {step:,}; checkpoint saved, rerun the same command to resume") from None
    save_checkpoint()

    if math.isnan(val_bpb):  # a resumed, already finished run: evaluate once
        val_bpb = float_bpb(model, arch, val, device, autocast)
    model = model.to("cpu").float().eval()
    tensors = ARCHS[arch].export(model)
    meta = {"corpus": tc.corpus, "split": "train", "steps": step, "minutes": round(elapsed / 60, 2), "seed": tc.seed, "train_bytes_seen": seen}
    blob = artifact.pack(arch, dataclasses.asdict(cfg), tensors, meta)
    if len(blob) > tc.budget:  # cannot happen with the bound above; kept as a guard on the bound itself
        raise CompbenchError(f"artifact is {len(blob):,} bytes, over the {tc.budget:,}-byte budget")
    (out / "model.cbnm").write_bytes(blob)
    say(f"artifact {out / 'model.cbnm'}: {len(blob):,} bytes; measuring the int8 engine on val ...")
    from .registry import make_coder

    # The int8 engine alone (comparable with the float figure), then as the coder ships it, with
    # the match model (coders/neural.py).
    coder = make_coder(f"{arch}:model='{out / 'model.cbnm'}':match=0")
    int8_bpb = coder.model_bits(val_b) / max(1, len(val_b)) if val_b else float("nan")
    coder = make_coder(f"{arch}:model='{out / 'model.cbnm'}'")
    match_bpb = coder.model_bits(val_b) / max(1, len(val_b)) if val_b else float("nan")
    result = {
        "arch": arch,
        "config": dataclasses.asdict(cfg),
        "corpus": tc.corpus,
        "split": "train",
        "budget": tc.budget,
        "artifact": str(out / "model.cbnm"),
        "artifact_bytes": len(blob),
        "artifact_sha256": hashlib.sha256(blob).hexdigest(),
        "steps": step,
        "minutes": round(elapsed / 60, 2),
        "train_bytes_seen": seen,
        "train_bytes_per_s": round(seen / max(elapsed, 1e-9)),
        "val_bytes": len(val_b),
        "val_bpb_float": round(val_bpb, 4),
        "val_bpb_int8": round(int8_bpb, 4),
        "val_bpb_coder": round(match_bpb, 4),
        "precision": "bf16" if bf16 else "fp32",
        "threads": torch.get_num_threads(),
        "seed": tc.seed,
        "dropout": dropout,
        "weight_decay": tc.weight_decay,
        "history": history,
        "command": " ".join(["compbench", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("compbench") else None,
    }
    (out / "train.json").write_text(json.dumps(result, indent=2) + "\n")
    say(
        f"done: {step:,} steps in {elapsed / 60:.1f} min ({result['train_bytes_per_s'] / 1e3:.1f} KB/s); "
        f"val bpb float {val_bpb:.4f}, int8 engine {int8_bpb:.4f}, coder (with match model) {match_bpb:.4f}; artifact {len(blob):,} bytes "
        f"sha256 {result['artifact_sha256'][:16]}"
    )
    return result
