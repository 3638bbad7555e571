"""Train a byte-LM to an artifact budget and export its int8 artifact, for any registered architecture.

Three parts, each driven by the architecture's record (:mod:`.archs`) and module, never by its name:

* **sizing** (:func:`fit_to_budget`): the largest model whose *uncompressed* int8 weights, fp16
  scalars, compressed decoder code and header slack fit the budget, so the compressed artifact fits;
* **the loop** (:func:`train`): the module's own ``batches`` (GRU: truncated BPTT with carried state;
  transformer: random windows), AdamW with warm-up and cosine decay, bf16 autocast where the CPU has
  AMX/AVX512-BF16, periodic float val bpb, atomic checkpoints every few minutes and on Ctrl-C
  (read back with ``torch.load(weights_only=True)``, which cannot run code), resume by rerunning;
* **export** (:func:`export`): the module's ``export`` to int8 tensors, packed by :mod:`.artifact`.

It takes bytes and returns a dict: corpora, coders and the CLI belong to the harness
(``compbench/train.py``). Errors are :class:`TrainError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import json
import lzma
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import artifact, peak
from .archs import ARCHS
from .intops import BOS
from .settings import TrainSettings


class TrainError(ValueError):
    """A training request that cannot be carried out; the message says why."""


# -- sizing --------------------------------------------------------------------------------------
def _code_bytes(arch: str) -> int:
    return len(lzma.compress(b"".join(b for _, b in artifact.decoder_code(arch)), preset=9))


def artifact_bound(arch: str, cfg) -> int:
    """Upper bound on the artifact size: raw int8 + fp16 payload, compressed code, header slack."""
    int8, fp16 = cfg.artifact_params()
    return int8 + 2 * fp16 + _code_bytes(arch) + 4096


def make_config(arch: str, fields: dict):
    cls = ARCHS[arch].load().Config
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise TrainError(f"{arch} has no config field {', '.join(unknown)} (its fields: {', '.join(known)})")
    try:
        return cls(**fields)
    except (TypeError, ValueError) as err:
        raise TrainError(f"invalid {arch} config: {err}") from None


def fit_to_budget(arch: str, budget: int, fixed: dict):
    """Largest model of the architecture whose artifact bound fits ``budget`` (explicit fields win)."""
    info = ARCHS[arch]
    key = info.size_field
    if key in fixed:
        cfg = make_config(arch, fixed)
    else:
        make_config(arch, fixed)  # the fixed fields alone must make a valid config
        best = None
        for size in range(info.size_step, 4097, info.size_step):
            try:
                cand = make_config(arch, {**fixed, key: size})
            except TrainError:  # a width the other fields rule out (say, not divisible by heads)
                continue
            if artifact_bound(arch, cand) > budget:
                break
            best = cand
        if best is None:
            raise TrainError(f"no {arch} fits a {budget:,}-byte budget")
        cfg = best
    bound = artifact_bound(arch, cfg)
    if bound > budget:
        raise TrainError(f"{arch} {cfg} needs up to {bound:,} bytes, over the {budget:,}-byte budget")
    return cfg


# -- evaluation ----------------------------------------------------------------------------------
@torch.no_grad()
def float_bpb(model, data: torch.Tensor, device, autocast) -> float:
    """Float-model bpb on ``data`` cut into BOS-started segments (val progress; cheap)."""
    model.eval()
    seg = model.eval_segment
    n = (len(data) // seg) * seg
    if n == 0:
        model.train()
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


def _amx_or_bf16() -> bool:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# -- the loop ------------------------------------------------------------------------------------
def train(ts: TrainSettings, train_bytes: bytes, val_bytes: bytes, say=print) -> dict:
    """Train, checkpoint, export ``model.cbnm`` into ``ts.out``; returns the record (no val by the engine)."""
    if ts.model not in ARCHS:
        raise TrainError(f"unknown model {ts.model!r} (choose from: {', '.join(ARCHS)})")
    if ts.minutes is None and ts.steps is None:
        raise TrainError("give --minutes or --steps")
    if not 0.0 <= ts.dropout < 1.0:
        raise TrainError(f"dropout must be in [0, 1), got {ts.dropout}")
    if ts.device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError("--device cuda was asked for, but torch sees no CUDA GPU")
    if ts.threads:
        torch.set_num_threads(ts.threads)
    info, mod = ARCHS[ts.model], ARCHS[ts.model].load()
    cfg = fit_to_budget(ts.model, ts.budget, ts.size)
    batch = ts.batch or info.batch
    seq = ts.seq_len or info.seq_len or getattr(cfg, "ctx", 256)
    lr = ts.lr or info.lr
    device = torch.device(ts.device)
    bf16 = ts.precision == "bf16" or (ts.precision == "auto" and (device.type == "cuda" or _amx_or_bf16()))

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    if len(train_bytes) < 4 * 8192 + seq:
        raise TrainError(f"only {len(train_bytes):,} train bytes; too few to train on")
    data = torch.frombuffer(bytearray(train_bytes), dtype=torch.uint8).to(torch.int64)
    val = torch.frombuffer(bytearray(val_bytes), dtype=torch.uint8).to(torch.int64) if val_bytes else torch.zeros(0, dtype=torch.int64)

    out = Path(ts.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    torch.manual_seed(ts.seed)
    gen = torch.Generator().manual_seed(ts.seed)
    model = mod.LM(cfg, dropout=ts.dropout).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": ts.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.98),
    )
    batches = mod.batches(data, batch, seq, gen)
    h = None
    history: list[dict] = []
    step, elapsed, seen = 0, 0.0, 0
    plan = {"arch": ts.model, "config": dataclasses.asdict(cfg), "corpus": ts.meta.get("corpus"), "seed": ts.seed,
            "batch": batch, "seq": seq, "lr": lr, "dropout": ts.dropout, "weight_decay": ts.weight_decay}
    if ckpt_path.exists():
        try:
            ck = torch.load(ckpt_path, weights_only=True)
        except Exception as err:  # noqa: BLE001  (a truncated or foreign file)
            raise TrainError(f"{ckpt_path} cannot be read ({type(err).__name__}); delete it or use another --out") from None
        if json.loads(ck["plan"]) != plan:
            raise TrainError(f"{ckpt_path} is from a different training setup; use another --out or delete it")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        step, elapsed, seen = int(ck["step"]), float(ck["elapsed"]), int(ck["seen"])
        history[:] = json.loads(ck.get("history", "[]"))
        batches.load(ck["batches"])
        say(f"resuming {ckpt_path} at step {step:,} ({elapsed / 60:.1f} min done)")

    def save_checkpoint():
        _atomic_save({"plan": json.dumps(plan), "model": model.state_dict(), "opt": opt.state_dict(),
                      "gen": gen.get_state(), "step": step, "elapsed": elapsed, "seen": seen,
                      "batches": batches.state(), "history": json.dumps(history)}, ckpt_path)

    n_params = sum(p.numel() for p in model.parameters())
    say(f"{ts.model} {cfg}: {n_params:,} float params; artifact bound {artifact_bound(ts.model, cfg):,} <= budget "
        f"{ts.budget:,} bytes\ntrain {len(train_bytes):,} bytes, val {len(val_bytes):,}; batch {batch} x {seq}, "
        f"lr {lr}, dropout {ts.dropout}, weight decay {ts.weight_decay}, {'bf16 autocast' if bf16 else 'fp32'} "
        f"on {device}, {torch.get_num_threads()} threads")
    limit_s = ts.minutes * 60 if ts.minutes is not None else math.inf
    limit_steps = ts.steps if ts.steps is not None else math.inf
    # Short --steps runs (tests, smoke runs) get a proportionally short warm-up.
    warmup = 100 if ts.steps is None else max(1, min(100, ts.steps // 5))

    def progress() -> float:
        return min(1.0, max(elapsed / limit_s, step / limit_steps))

    last_eval = last_ckpt = elapsed
    val_bpb = history[-1]["val_bpb"] if history else float("nan")
    t_prev = time.perf_counter()
    loss_avg = None
    try:
        while progress() < 1.0:
            cur_lr = lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress())))
            for g in opt.param_groups:
                g["lr"] = cur_lr
            x, y, reset = batches.next()
            x, y = x.to(device), y.to(device)
            h = model.carry(h, reset)
            with autocast():
                logits, h = model(x, h)
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
            if elapsed - last_eval >= ts.eval_s or done:
                val_bpb = float_bpb(model, val, device, autocast)
                history.append({"step": step, "minutes": round(elapsed / 60, 2), "train_bpb": round(loss_avg, 4),
                                "val_bpb": round(val_bpb, 4)})
                last_eval = elapsed
                t_prev = time.perf_counter()  # evaluation time is not training time
            if step % 20 == 0 or done or step <= 3:
                left = (1 - progress()) * (limit_s if limit_s < math.inf else elapsed / max(progress(), 1e-9))
                val_txt = "-" if math.isnan(val_bpb) else f"{val_bpb:.3f}"
                say(f"\r[{progress() * 100:5.1f}%] step {step:,}  train {loss_avg:.3f} bpb  val {val_txt} bpb  "
                    f"{seen / max(elapsed, 1e-9) / 1e3:.1f} KB/s  {elapsed / 60:.1f} min, ~{left / 60:.1f} left",
                    end="\n" if done or not sys.stderr.isatty() else "")
            if elapsed - last_ckpt >= ts.checkpoint_s:
                save_checkpoint()
                last_ckpt = elapsed
    except KeyboardInterrupt:
        save_checkpoint()
        raise TrainError(f"interrupted at step {step:,}; checkpoint saved, rerun the same command to resume") from None
    save_checkpoint()
    if step < 200:
        say(f"warning: only {step:,} optimizer steps ({seen / max(elapsed, 1e-9) / 1e3:.1f} KB/s on this machine); "
            "the model is barely trained: give more --minutes or --steps")
    if math.isnan(val_bpb):  # a resumed, already finished run: evaluate once
        val_bpb = float_bpb(model, val, device, autocast)
    blob = export(ts.model, cfg, model, {**ts.meta, "steps": step, "minutes": round(elapsed / 60, 2), "seed": ts.seed,
                                        "train_bytes_seen": seen})
    if len(blob) > ts.budget:  # cannot happen with the bound above; kept as a guard on the bound itself
        raise TrainError(f"artifact is {len(blob):,} bytes, over the {ts.budget:,}-byte budget")
    atomic_write(out / "model.cbnm", blob)
    # Training throughput as a share of the matrix peak for the precision trained in, measured now,
    # in this process (once per process: a grid's later runs reuse it).
    precision = "bf16" if bf16 else "fp32"  # the peak is that of the precision trained in
    peak_flops = peak.gemm_peak(precision, str(device))
    flops_per_byte = peak.matmul_flops_per_byte(model, seq)
    train_flops = flops_per_byte * seen / max(elapsed, 1e-9)
    return {
        "arch": ts.model, "config": dataclasses.asdict(cfg), "budget": ts.budget, "artifact": str(out / "model.cbnm"),
        "artifact_bytes": len(blob), "steps": step, "minutes": round(elapsed / 60, 2), "train_bytes_seen": seen,
        "train_bytes_per_s": round(seen / max(elapsed, 1e-9)), "val_bytes": len(val_bytes),
        "val_bpb_float": round(val_bpb, 4), "precision": precision,
        "train_matmul_flops_per_byte": flops_per_byte, "train_flops_per_s": round(train_flops),
        "peak_dtype": precision, "peak_flops_per_s": round(peak_flops),
        "peak_fraction": round(train_flops / peak_flops, 5),
        "threads": torch.get_num_threads(), "seed": ts.seed, "dropout": ts.dropout,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "weight_decay": ts.weight_decay, "history": history,
    }


# -- export --------------------------------------------------------------------------------------
def export(arch: str, cfg, model, meta: dict) -> bytes:
    """A trained float module -> artifact bytes (int8 tensors, config, decoder code)."""
    model = model.to("cpu").float().eval()
    return artifact.pack(arch, dataclasses.asdict(cfg), ARCHS[arch].load().export(model), meta)
