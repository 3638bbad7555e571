"""Tiny decoder-only transformer byte-LM: torch module, int8 export, and the integer engine.

Pre-norm blocks (RMSNorm -> causal attention -> RMSNorm -> ReLU^2 MLP), ALiBi position biases with
power-of-two slopes (no sin/cos tables, whose libm values differ between machines, and a sliding
window that runs past the training context), and an untied int8 output head.

Integer engine (:class:`IntTransformer`): the residual stream is int64 fixed point (Q16), so the
RMSNorm sum of squares is an exact integer sum; every matmul input is quantized per row to int8 and
multiplied exactly (:func:`~compbench.models.intops.int_matmul`); attention weights come from the
integer exp table and multiply fixed-point values in float64 GEMMs whose partial sums stay below
2**53, so they are exact in any order. Norm gains are folded into the following weight columns.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit
from torch import nn

from . import gemm16, intops
from .gru import BOS, VOCAB_IN, _q_rows

RESID_BITS = 16  # residual stream fixed point
V_BITS = 8  # attention values fixed point
ATT_SHIFT = 14  # attention weights = exp table >> 14 (at most 2**16), keeping products below 2**53


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    d_model: int = 128
    layers: int = 4
    heads: int = 4
    ctx: int = 512
    mlp_mult: int = 4

    def __post_init__(self):
        if self.heads < 1 or self.heads & (self.heads - 1):
            raise ValueError("heads must be a power of two (ALiBi slopes are then exact powers of two)")
        if self.d_model % self.heads or not (8 <= self.d_model <= 2048) or not (1 <= self.layers <= 32):
            raise ValueError(f"transformer config out of range: {self}")
        if not 16 <= self.ctx <= 4096:
            raise ValueError("ctx must be in [16, 4096]")

    def artifact_params(self) -> tuple[int, int]:
        d, m = self.d_model, self.mlp_mult * self.d_model
        int8 = VOCAB_IN * d + self.layers * (3 * d * d + d * d + 2 * m * d) + 256 * d
        fp16 = VOCAB_IN + self.layers * (3 * d + d + m + d) + 256
        return int8, fp16


def alibi_slopes(heads: int) -> list[float]:
    return [2.0 ** (-8.0 * (i + 1) / heads) for i in range(heads)]


class RMSNorm(nn.Module):
    def __init__(self, d: int, gain: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d)) if gain else None

    def forward(self, x):
        y = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
        return (y * self.weight if self.weight is not None else y).type_as(x)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig, dropout: float = 0.0):
        super().__init__()
        d = cfg.d_model
        self.heads = cfg.heads
        self.dropout = dropout
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.fc1 = nn.Linear(d, cfg.mlp_mult * d, bias=False)
        self.fc2 = nn.Linear(cfg.mlp_mult * d, d, bias=False)

    def forward(self, x, bias):
        B, T, d = x.shape
        q, k, v = self.qkv(self.n1(x)).view(B, T, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # No dropout on the attention weights: on a CPU it draws B*H*T*T random numbers per layer and
        # takes the fused attention kernel away (5x slower training here).
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        p = self.dropout
        x = x + F.dropout(self.proj(a.transpose(1, 2).reshape(B, T, d)), p, self.training)
        return x + F.dropout(self.fc2(F.relu(self.fc1(self.n2(x))).square()), p, self.training)


class TransformerLM(nn.Module):
    """Float training module. ``dropout`` (on the embeddings and the residual branches) is a
    training setting, not part of the config: the exported engine has no dropout."""

    def __init__(self, cfg: TransformerConfig, dropout: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.dropout = dropout
        self.emb = nn.Embedding(VOCAB_IN, cfg.d_model)
        nn.init.normal_(self.emb.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(cfg, dropout) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.d_model, gain=False)
        # An untied head costs 256*d int8 bytes and learns far faster than a tied one, whose logits
        # start near zero (embedding std 0.02) and take hundreds of steps to reach a useful scale.
        self.head = nn.Linear(cfg.d_model, 256, bias=False)
        nn.init.normal_(self.head.weight, std=cfg.d_model**-0.5)
        for b in self.blocks:  # small residual branches at init (GPT-2 style)
            nn.init.normal_(b.proj.weight, std=0.02 / math.sqrt(2 * cfg.layers))
            nn.init.normal_(b.fc2.weight, std=0.02 / math.sqrt(2 * cfg.layers))
        self._bias_cache: dict[int, torch.Tensor] = {}

    def _bias(self, T: int, device) -> torch.Tensor:
        if T not in self._bias_cache:
            pos = torch.arange(T)
            dist = (pos[:, None] - pos[None, :]).float()
            slopes = torch.tensor(alibi_slopes(self.cfg.heads))[:, None, None]
            bias = -slopes * dist
            bias = bias.masked_fill(dist[None] < 0, float("-inf"))
            bias = bias.masked_fill(dist[None] >= self.cfg.ctx, float("-inf"))
            self._bias_cache[T] = bias[None]
        return self._bias_cache[T].to(device)

    @property
    def eval_segment(self) -> int:
        return self.cfg.ctx

    @staticmethod
    def carry(h, reset):
        return None  # no state between training windows

    def forward(self, x: torch.Tensor, h=None):
        T = x.shape[1]
        bias = self._bias(T, x.device)
        y = F.dropout(self.emb(x), self.dropout, self.training)
        for b in self.blocks:
            y = b(y, bias)
        return self.head(self.norm(y)), None


@torch.no_grad()
def export(model: TransformerLM) -> dict[str, torch.Tensor]:
    t: dict[str, torch.Tensor] = {}
    t["emb"], t["emb_scale"] = _q_rows(model.emb.weight.float())
    for i, b in enumerate(model.blocks):
        # Fold the RMSNorm gains into the columns of the matmuls they feed.
        t[f"qkv{i}"], t[f"qkv{i}_scale"] = _q_rows(b.qkv.weight.float() * b.n1.weight.float()[None, :])
        t[f"proj{i}"], t[f"proj{i}_scale"] = _q_rows(b.proj.weight.float())
        t[f"fc1{i}"], t[f"fc1{i}_scale"] = _q_rows(b.fc1.weight.float() * b.n2.weight.float()[None, :])
        t[f"fc2{i}"], t[f"fc2{i}_scale"] = _q_rows(b.fc2.weight.float())
    t["head"], t["head_scale"] = _q_rows(model.head.weight.float())
    return t


_F = np.float32
_V_ONE = float(1 << V_BITS)  # the values' fixed-point one, as in IntTransformer._attend
_RMS_EPS = 1e-6 * float(1 << (2 * RESID_BITS))  # RMSNorm's epsilon in Q16 squared units


@njit(cache=True, nogil=True)
def _rms_quantize(x, d, eps, q, step):
    """RMSNorm's input to an int8 matmul, per row of the Q16 int64 residual ``x``: q = round(x * 127 /
    max|x|) and step = max / 127 / rms, rms = sqrt(sum x^2 / d + eps). The integer sum is exact; the
    float64 operations are those of :meth:`IntTransformer._normed_linear_reference`, in its order."""
    n, k = x.shape
    for i in range(n):
        ss = np.int64(0)
        m = np.int64(0)
        for j in range(k):
            v = x[i, j]
            ss += v * v
            a = abs(v)
            m = a if a > m else m
        m = m if m > 1 else np.int64(1)
        mf = np.float64(m)
        for j in range(k):
            q[i, j] = np.int8(np.rint(np.float64(x[i, j]) * 127.0 / mf))
        step[i, 0] = mf / 127.0 / np.sqrt(np.float64(ss) / d + eps)


@njit(cache=True, nogil=True)
def _scale_rows(acc, step, scale, relu_sq, out):
    """out = acc * step[row] * scale[col] in float64 (exact integer sums in, two roundings); with
    ``relu_sq`` the result is then clamped at 0 and squared (the MLP's ReLU^2), as the reference does."""
    n, k = acc.shape
    for i in range(n):
        s = step[i, 0]
        for j in range(k):
            v = np.float64(acc[i, j]) * s * scale[j]
            if relu_sq:
                v = v if v > 0.0 else 0.0
                v = v * v
            out[i, j] = v


@njit(cache=True, nogil=True)
def _add_fixed_rows(x, o, out):
    """out = x + round(o * 2**RESID_BITS): a float64 output added to the Q16 int64 residual."""
    n, k = x.shape
    one = float(1 << RESID_BITS)
    for i in range(n):
        for j in range(k):
            out[i, j] = x[i, j] + np.int64(np.rint(o[i, j] * one))


def _add_fixed(x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    out = torch.empty(x.shape, dtype=torch.int64)
    _add_fixed_rows(x.contiguous().numpy(), o.contiguous().numpy(), out.numpy())
    return out


@njit(cache=True, nogil=True)
def _embed_rms(tokens, emb, emb_scale, eps, x, q, step):
    """The decoder step's start: the Q16 residual of each token (:meth:`IntTransformer._embed`'s
    operations: the int8 row times its float64 scale, times 2**16, rounded half to even), then the
    first block's RMSNorm quantization (:func:`_rms_quantize`)."""
    n, d = x.shape
    one = float(1 << RESID_BITS)
    for i in range(n):
        t = tokens[i]
        s = emb_scale[t]
        for j in range(d):
            x[i, j] = np.int64(np.rint(np.float64(emb[t, j]) * s * one))
    _rms_quantize(x, float(d), eps, q, step)


@njit(cache=True, nogil=True)
def _add_scaled_rms(x, acc, step, scale, eps, q, qstep):
    """x += round((acc * step * scale) * 2**16), then x's RMSNorm quantization into ``q``, ``qstep``:
    a residual branch's output scaled (:func:`_scale_rows`) and added (:func:`_add_fixed_rows`), in
    place, and the next normed linear's input (:func:`_rms_quantize`), in one call."""
    n, d = x.shape
    one = float(1 << RESID_BITS)
    for i in range(n):
        s = step[i, 0]
        for j in range(d):
            x[i, j] += np.int64(np.rint(np.float64(acc[i, j]) * s * scale[j] * one))
    _rms_quantize(x, float(d), eps, q, qstep)


@njit(cache=True, nogil=True)
def _relu_sq_quantize(acc, step, scale, q, qstep):
    """The MLP's hidden layer: :func:`_scale_rows` with ReLU^2, then :func:`intops.quantize_rows`
    of each row for the second matmul, without a float64 [N, m] tensor in between."""
    n, m = acc.shape
    row = np.empty(m, np.float64)
    for i in range(n):
        s = step[i, 0]
        for j in range(m):
            v = np.float64(acc[i, j]) * s * scale[j]
            v = v if v > 0.0 else 0.0
            row[j] = v * v
        qstep[i, 0] = intops.quantize_row(row, q[i])


@njit(cache=True, nogil=True)
def _qkv_to_cache(acc, step, scale, inv_sqrt_dh, slot, qq, qscale, kt, ks, v16, vwide, v32):
    """The attention's inputs from the qkv sums ``acc`` [N, 3d]: scaled as :func:`_scale_rows` does,
    then per head the query quantized to ``qq`` [N, H, dh] with its float32 scale times 1/sqrt(dh)
    in ``qscale`` [N, H], the key quantized into the cache ``kt`` (dimensions in pairs: [N, H, dh /
    2, slots, 2], see :func:`_attend_quantize`) at ``slot`` with its float32 scale in ``ks``, and
    the value in fixed point (x 2**V_BITS, rounded half to even, clamped to +-2**20) into the cache:
    ``v16`` (slots in pairs: [c / 2, dh, 2], see :func:`_attend_quantize`) when the head's row fits
    in int16 (always, on the shipped model: its values stay below 2**11), else ``v32``, with
    ``vwide`` saying which. The attention reads 2 bytes a value instead of 4; the integers are the
    same either way."""
    n = acc.shape[0]
    H, dh = qq.shape[1], qq.shape[2]
    d = H * dh
    o = np.empty(3 * d, np.float64)
    vr = np.empty(dh, np.int64)
    kr = np.empty(dh, np.int8)
    lim = float(1 << 20)
    for i in range(n):
        s = step[i, 0]
        for j in range(3 * d):
            o[j] = np.float64(acc[i, j]) * s * scale[j]
        for h in range(H):
            qscale[i, h] = np.float32(intops.quantize_row(o[h * dh:(h + 1) * dh], qq[i, h])) * inv_sqrt_dh
            ks[i, h, slot] = np.float32(intops.quantize_row(o[d + h * dh:d + (h + 1) * dh], kr))
            for e in range(dh):
                kt[i, h, e >> 1, slot, e & 1] = kr[e]
            wide = False
            for e in range(dh):
                x = np.rint(o[2 * d + h * dh + e] * _V_ONE)
                x = min(max(x, -lim), lim)
                vr[e] = np.int64(x)
                wide = wide or vr[e] > 32767 or vr[e] < -32768
            vwide[i, h, slot] = wide
            for e in range(dh):
                if wide:
                    v32[i, h, slot, e] = vr[e]
                else:
                    v16[i, h, slot >> 1, e, slot & 1] = vr[e]


@njit(cache=True, nogil=True)
def _attend_quantize(kt, ks, v16, vwide, v32, qq, qscale, bias, att_w, q, step):
    """One query per stream and head against the KV window, :meth:`IntTransformer._attend` for the
    decoder's step bit for bit, then each stream's output row [H * dh] quantized for the projection
    (:func:`intops.quantize_rows`) into ``q`` and ``step``. ``kt`` int8 [N, H, dh / 2, slots, 2]
    (keys, transposed, dimensions in pairs; dh and the c slots rounded up to 2 and to
    :data:`gemm16.SCORE_BLOCK` with zeros), ``ks`` float32 [N, H, c], values in ``v16`` [N, H, c / 2
    rounded up, dh, 2] or ``v32`` [N, H, c, dh] by ``vwide`` (see :func:`_qkv_to_cache`), ``qq``
    int8 [N, H, dh], ``qscale`` float32 [N, H], ``bias`` float32 [H, c] (-inf: an empty slot),
    ``att_w`` the attention weight table (int32).

    The dot products are integer sums (int32 scores; the weighted values int64), exact in any order;
    every other operation is the same correctly rounded float32 or float64 operation, in the same
    order, as the torch version, and numba compiles without fast-math (no FMA). The torch version
    reads a float32 key and a float64 value cache through batched matrix-vector products; this one
    reads int8 keys and int16 values, 4 times fewer bytes, once. Keys are stored transposed, two
    dimensions at a time, so the scores of 8 slots accumulate a pair of dimensions in one
    ``pmaddwd`` (:func:`gemm16.key_pair_scores`; a dot product per slot would need a horizontal sum
    per slot). Values are stored with the slots in pairs so that :func:`gemm16.weighted_pair_sums`
    sums them with ``pmaddwd``: each weight (an integer of at most 2**16) is split into two int16
    halves, and the torch version's float64 sums of products are exact integers below 2**53, so the
    int64 sums are the same numbers. A head whose window holds a wide (int32) row with a nonzero
    weight takes the float64 loop instead, reading both caches; so does a head whose width is not a
    multiple of 8.
    """
    B, H, dh, c = qq.shape[0], qq.shape[1], qq.shape[2], ks.shape[2]
    c2 = v16.shape[2]
    sacc = np.empty(kt.shape[3], np.int32)
    qpair = np.zeros(2 * kt.shape[2], np.int16)  # the query as int16; an odd dh's pad stays 0
    score = np.empty(c, np.float32)
    idx = np.empty(c, np.int32)
    lo = np.zeros(2 * c2, np.int16)  # the weights' halves; a padded last slot keeps weight 0
    hi = np.zeros(2 * c2, np.int16)
    part = np.empty(2 * max(dh, 8), np.int32)
    sums = np.empty(dh, np.int64)
    num = np.empty(dh, np.float64)
    row = np.empty(H * dh, np.float64)
    top = _F(intops.EMAX * intops.ERES)
    paired = dh % 8 == 0
    for b in range(B):
        for h in range(H):
            for d in range(dh):
                qpair[d] = qq[b, h, d]
            gemm16.key_pair_scores(kt[b, h], qpair, sacc)
            qs = qscale[b, h]
            mx = _F(-np.inf)  # float32: a float64 max would make the gaps below float64 arithmetic
            for t in range(c):
                sc = _F(sacc[t]) * qs * ks[b, h, t] + bias[h, t]
                score[t] = sc
                if sc > mx:
                    mx = sc
            # The weights: the gaps in float32 (vectorised), then the table lookups, summed as
            # integers (the torch version's float64 sum of the same integers, below 2**53, is exact).
            for t in range(c):
                gap = (mx - score[t]) * _F(intops.ERES) + _F(0.5)
                idx[t] = np.int32(gap if gap < top else top)
            isum = 0
            for t in range(c):
                iw = att_w[idx[t]]
                isum += iw
                lo[t] = iw & 255
                hi[t] = iw >> 8
            wsum = np.float64(isum)
            nwide = 0  # a count, not an early-exit loop: LLVM vectorises it
            for t in range(c):
                nwide += np.int32(vwide[b, h, t])
            wide = False
            if nwide:  # only a wide row with a nonzero weight needs the float64 loop
                for t in range(c):
                    wide = wide or (vwide[b, h, t] and att_w[idx[t]] != 0)
            if paired and not wide:
                gemm16.weighted_pair_sums(v16[b, h], lo, hi, part, sums)
                for d in range(dh):
                    num[d] = np.float64(sums[d])
            else:
                for d in range(dh):
                    num[d] = 0.0
                for t in range(c):
                    w = np.float64(att_w[idx[t]])
                    if w != 0.0:  # an exact zero adds nothing to an exact sum
                        if vwide[b, h, t]:
                            for d in range(dh):
                                num[d] += w * np.float64(v32[b, h, t, d])
                        else:
                            for d in range(dh):
                                num[d] += w * np.float64(v16[b, h, t >> 1, d, t & 1])
            for d in range(dh):
                row[h * dh + d] = num[d] / wsum / _V_ONE
        step[b, 0] = intops.quantize_row(row, q[b])


@njit(cache=True, nogil=True)
def _run_int16(tokens, emb, emb_scale, eps, x, q, qm, step, step2, qkv, accd, accm, acc2, head, logits,
               pk_qkv, pk_proj, pk_fc1, pk_fc2, pk_head, s_qkv, s_proj, s_fc1, s_fc2, s_head, inv_sqrt_dh,
               slot, qq, qscale, k, ks, v16, vwide, v32, r0, r1, bias, att_w):
    """:meth:`IntTransformer._step_run` for one run of streams (rows ``r0`` to ``r1`` of the KV
    cache) where every matrix takes the int16 kernel (:func:`gemm16.gemm`): the same kernels, in
    the same order, on the same buffers, in one call instead of about forty. Speed only: each call
    from Python takes the GIL to dispatch, and the two threads of a mixed run, each stepping a run
    of the same step, waited for it about 12% of their time (emulated AVX2, 64 streams)."""
    _embed_rms(tokens, emb, emb_scale, eps, x, q, step)
    for i in range(pk_qkv.shape[0]):
        kt, kst, v16t, vwt, v32t = k[i, r0:r1], ks[i, r0:r1], v16[i, r0:r1], vwide[i, r0:r1], v32[i, r0:r1]
        gemm16.gemm(q, pk_qkv[i], qkv)
        _qkv_to_cache(qkv, step, s_qkv[i], inv_sqrt_dh, slot, qq, qscale, kt, kst, v16t, vwt, v32t)
        _attend_quantize(kt, kst, v16t, vwt, v32t, qq, qscale, bias, att_w, q, step2)
        gemm16.gemm(q, pk_proj[i], accd)
        _add_scaled_rms(x, accd, step2, s_proj[i], eps, q, step)
        gemm16.gemm(q, pk_fc1[i], accm)
        _relu_sq_quantize(accm, step, s_fc1[i], qm, step2)
        gemm16.gemm(qm, pk_fc2[i], acc2)
        _add_scaled_rms(x, acc2, step2, s_fc2[i], eps, q, step)
    gemm16.gemm(q, pk_head, head)
    _scale_rows(head, step, s_head, False, logits)


class _Int16First(intops.Int8Matrix):
    """An :class:`intops.Int8Matrix` that takes the int16 kernel (:mod:`.gemm16`) where the machine
    has an int8 GEMM too (VNNI or AMX): see :class:`IntTransformer`. The same integers on every path."""

    def path(self) -> str:
        p = super().path()
        if p == "int8" and self.shape[0] % 2 == 0 and self.shape[0] <= gemm16.MAX_K \
                and intops._gemm16_available():
            return "int16"
        return p


class IntTransformer:
    """Integer-arithmetic transformer with a sliding KV cache of ``self.ctx`` positions per stream
    (the model's ctx, or a coder's shorter window: :meth:`for_coding`)."""

    # The encoder knows every input up front and could score 64 positions at once
    # (:meth:`logits_blocks`, torch ops); the compiled decoder step (:meth:`step`) was measured twice
    # as fast (enwik8 at 64 streams: 9.1-9.7 KB/s against 4.6-4.9), so both directions step.
    # logits_blocks stays as the torch reference that the step must equal bit for bit.
    encode_in_blocks = False
    # A mixed run (lockstep._run_mixed) steps each group of streams in two runs, one on the coding
    # thread right after it codes the group's bytes and one on the helper thread, which has no mixing
    # to do (lockstep._SharedSteps). The coding thread's run is the smaller, so that both threads
    # finish together: it also mixes. Speed only: any split gives the same numbers.
    mixer_overlap = True
    helper_runs = "runs"
    # Of a group's streams, in the coding thread's run. 0.4 since engine v2's faster mixer left the
    # coding thread more time: decoding enwik8 on the Zen 5 EPYC, alternating in one process (medians),
    # 42.4 KB/s against 35.9 at 0.3 and 42.0 at 0.45 on 262,144 bytes, 37.4 against 31.8 on 131,072,
    # 49.9 against 44.8 on 65,536; emulated AVX2, 39.9 against 34.3 (0.45: 41.4). (0.3 before, from
    # the Zen 4's emulation with engine v1's mixer: 15.8 and 15.3 KB/s against 14.6 and 14.7 at 0.4.)
    coding_share = 0.4

    def __init__(self, cfg: TransformerConfig, t: dict[str, torch.Tensor]):
        self.cfg = cfg
        self.ctx = cfg.ctx  # positions attended to (the KV window); see for_coding
        f64 = lambda name: t[name].to(torch.float64)  # noqa: E731
        self.emb = t["emb"]
        self.emb_scale = f64("emb_scale")
        # The final RMSNorm has no gain, so the head is a normed linear like any other.
        # The int16 kernel even where an int8 GEMM runs (VNNI or AMX): the decoder's step is many
        # small products, and with every matrix there a run of streams is one compiled call
        # (_run_int16). Decoding enwik8, alternating in one process (medians of 3): on a 2-core EPYC
        # with AVX-512 VNNI, 14.0 against 10.1 KB/s with torch._int_mm on 65,536 bytes; on 2 pinned
        # cores of a Xeon with AMX (the GPU machine's host, torch 2.11), 18.2 against 14.1 KB/s on
        # 262,144 bytes.
        mat = _Int16First
        self.head_w = (mat(t["head"].T), f64("head_scale"))
        self.blocks = [
            {k: (mat(t[f"{k}{i}"].T), f64(f"{k}{i}_scale")) for k in ("qkv", "proj", "fc1", "fc2")}
            for i in range(cfg.layers)
        ]
        dh = cfg.d_model // cfg.heads
        self.inv_sqrt_dh = float(torch.tensor(1.0 / math.sqrt(dh), dtype=torch.float32))  # a float32 constant
        self.slopes32 = torch.tensor(alibi_slopes(cfg.heads), dtype=torch.float32)[None, :, None]
        # Integers <= 2**16, held as float64 (exact) so a lookup needs no conversion pass.
        self.att_exp = (intops.exp_table() >> ATT_SHIFT).to(torch.float64)
        # numpy views for the decoder step's compiled passes
        self.emb_np, self.emb_scale_np = self.emb.numpy(), self.emb_scale.numpy()
        self.scales_np = [{k: w[1].numpy() for k, w in blk.items()} for blk in self.blocks]
        self.head_scale_np = self.head_w[1].numpy()
        self.att_w_np = self.att_exp.numpy().astype(np.int32)  # the same integers, for the compiled step
        self.inv_sqrt_dh32 = np.float32(self.inv_sqrt_dh)
        self._int16 = None  # the stacked int16-path weights of _run_int16, made at first use

    def for_coding(self, window: int) -> "IntTransformer":
        """This engine attending to the last ``min(window, ctx)`` positions (a coder's ``window``
        option), sharing its weights. ALiBi needs nothing else: each position in the window keeps
        its distance bias, and positions further back leave it just as those beyond ctx always did.
        The KV cache, and so the bytes each decoder step reads, shrink with the window."""
        eng = copy.copy(self)
        eng.ctx = min(window, self.cfg.ctx)
        return eng

    def start(self, batch: int, shared: bool = False) -> dict:
        """A coding's state for ``batch`` streams: the KV cache and the runs each step is split into.
        By default one run per torch thread, run in parallel by :meth:`step`; ``shared``: two runs,
        the first with :attr:`coding_share` of the streams, that the caller runs itself
        (:meth:`begin_step`, :meth:`step_run`, :meth:`end_step`)."""
        c, L, H, dh = self.ctx, self.cfg.layers, self.cfg.heads, self.cfg.d_model // self.cfg.heads
        # The streams are split into runs, one per thread, each stepped on its own (every operation is
        # row-wise or an exact sum, so the split changes no bit); fewer than 8 streams a run is not
        # worth a thread's hand-off.
        if shared and batch >= 2:
            cuts = [0, min(batch - 1, max(1, round(batch * self.coding_share))), batch]
        else:
            n = max(1, min(torch.get_num_threads(), batch // 8))
            cuts = [batch * j // n for j in range(n + 1)]
        return {
            "t": 0,
            "pos": torch.full((c,), -1, dtype=torch.int64),
            # int8 keys and int16 fixed-point values (int32 for a row that would not fit: see
            # _qkv_to_cache): the compiled attention reads the whole window every step, so the cache's
            # size is its speed. np.zeros leaves the wide cache's pages unmapped until a row needs them.
            # Keys: dimensions in pairs, slots padded to whole blocks; values: slots in pairs (the
            # layouts of gemm16's kernels; see _attend_quantize).
            "k": np.zeros((L, batch, H, (dh + 1) // 2, -(-c // gemm16.SCORE_BLOCK) * gemm16.SCORE_BLOCK, 2), np.int8),
            "ks": np.zeros((L, batch, H, c), np.float32),
            "v16": np.zeros((L, batch, H, (c + 1) // 2, dh, 2), np.int16),  # slots in pairs: see _attend_quantize
            "vwide": np.zeros((L, batch, H, c), np.bool_),
            "v32": np.zeros((L, batch, H, c, dh), np.int32),
            "runs": [(slice(a, b), self._buffers(b - a)) for a, b in zip(cuts, cuts[1:])],
        }

    def _buffers(self, n: int) -> dict:
        """One run's working tensors for :meth:`_step_run`, allocated once per coding: matmul inputs
        in the GEMM's input dtype, sums in its output dtype (see :func:`intops.matmul_into`)."""
        cfg = self.cfg
        d, m, H = cfg.d_model, cfg.mlp_mult * cfg.d_model, cfg.heads
        blk = self.blocks[0]
        qd, ad = intops.gemm_input_dtype(blk["qkv"][0]), intops.acc_dtype(blk["qkv"][0])
        qm, am = intops.gemm_input_dtype(blk["fc2"][0]), intops.acc_dtype(blk["fc2"][0])
        return {
            "x": np.zeros((n, d), np.int64),
            "q": torch.zeros(n, d, dtype=qd), "qm": torch.zeros(n, m, dtype=qm),
            "qkv": torch.zeros(n, 3 * d, dtype=ad), "accd": torch.zeros(n, d, dtype=ad),
            "accm": torch.zeros(n, m, dtype=ad), "acc2": torch.zeros(n, d, dtype=am),
            "head": torch.zeros(n, 256, dtype=ad),
            "step": np.zeros((n, 1)), "step2": np.zeros((n, 1)),
            "qq": np.zeros((n, H, d // H), np.int8), "qscale": np.zeros((n, H), np.float32),
        }

    def matrix_path(self) -> str:
        """The GEMM path this engine's matrices take here (see :class:`_Int16First`)."""
        return self.head_w[0].path()

    def _int16_weights(self) -> tuple | None:
        """Where every matrix takes the int16 kernel (an AVX2 machine without an int8 GEMM), each
        kind's packed weights and scales stacked over the layers, for :func:`_run_int16`; else None."""
        if self._int16 is None:
            mats = [blk[k][0] for blk in self.blocks for k in ("qkv", "proj", "fc1", "fc2")] + [self.head_w[0]]
            if all(m.path() == "int16" for m in mats):
                kinds = ("qkv", "proj", "fc1", "fc2")
                packed = [np.stack([blk[k][0].as_pairs() for blk in self.blocks]) for k in kinds]
                scales = [np.stack([sc[k] for sc in self.scales_np]) for k in kinds]
                self._int16 = (*packed, self.head_w[0].as_pairs(), *scales)
            else:
                self._int16 = ()
        return self._int16 or None

    # Each linear layer runs as: one compiled pass that quantizes the rows, the exact int8 matmul,
    # one compiled pass that scales the integer sums. The ``_reference`` methods are the same math as
    # torch ops (about fifteen passes over the rows, each a kernel launch that dominated a decoder
    # step at 64 streams); a test holds the two equal bit for bit.

    @staticmethod
    def _scaled(q: torch.Tensor, w, step: torch.Tensor, relu_sq: bool = False) -> torch.Tensor:
        """(q @ W) * step * scale, as float64 [N, out]; with ``relu_sq``, then clamped at 0 and squared."""
        mat = w[0]
        acc = intops.int_matmul(q, mat, torch.float32 if mat.small else torch.float64)
        out = torch.empty(acc.shape, dtype=torch.float64)
        _scale_rows(acc.numpy(), step.numpy(), w[1].numpy(), relu_sq, out.numpy())
        return out

    def _linear(self, x: torch.Tensor, w, relu_sq: bool = False) -> torch.Tensor:
        q, step = intops.quantize_rows(x)
        return self._scaled(q, w, step, relu_sq)

    def _normed_linear(self, x_int: torch.Tensor, w, relu_sq: bool = False) -> torch.Tensor:
        """matmul(RMSNorm(x), W) with the gain folded into W; x is the Q16 int64 residual."""
        x_int = x_int.contiguous()
        q = torch.empty(x_int.shape, dtype=torch.int8)
        step = torch.empty(x_int.shape[0], 1, dtype=torch.float64)
        _rms_quantize(x_int.numpy(), float(self.cfg.d_model), _RMS_EPS, q.numpy(), step.numpy())
        return self._scaled(q, w, step, relu_sq)

    def _linear_reference(self, x: torch.Tensor, w) -> torch.Tensor:
        q, step = intops.quantize_rows_reference(x)
        return intops.int_matmul(q, w[0]) * step * w[1]

    def _normed_linear_reference(self, x_int: torch.Tensor, w) -> torch.Tensor:
        d = self.cfg.d_model
        ss = (x_int * x_int).sum(dim=-1, keepdim=True).to(torch.float64)  # exact integer sum
        m = x_int.abs().amax(dim=-1, keepdim=True).clamp_min(1)
        q = torch.round(x_int.to(torch.float64) * 127.0 / m.to(torch.float64)).to(torch.int8)
        # RMSNorm(x) = x / rms; quantized x = q * m / 127 (in Q16 units, which cancel in x / rms).
        rms = torch.sqrt(ss / d + 1e-6 * float(1 << (2 * RESID_BITS)))
        step = m.to(torch.float64) / 127.0 / rms
        return intops.int_matmul(q, w[0]) * step * w[1]

    def _embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Token ids [N] -> the Q16 int64 residual [N, d]."""
        x = self.emb.index_select(0, inputs).to(torch.float64) * self.emb_scale.index_select(0, inputs)[:, None]
        return torch.round(x * float(1 << RESID_BITS)).to(torch.int64)

    def _attend(self, s_int, qscale, ks, bias, v) -> torch.Tensor:
        """Attention output [..., Q, dh] from exact int8 scores ``s_int`` [..., Q, K], the queries'
        float32 scales [..., Q, 1], the keys' [..., 1, K], ALiBi biases and fixed-point values
        [..., K, dh]. One function for :meth:`step` and :meth:`logits_blocks`, so the two cannot drift."""
        score = s_int * qscale * ks + bias
        # -inf marks keys outside the window: their gap clamps to the table's end, whose >> 14
        # attention weight is exactly 0.
        gap = (score.amax(dim=-1, keepdim=True) - score) * float(intops.ERES) + 0.5
        idx = gap.clamp_(max=float(intops.EMAX * intops.ERES)).to(torch.int32)
        wts = self.att_exp.index_select(0, idx.view(-1)).view(idx.shape)  # integers <= 2**16
        # Partial sums of wts * v are integers below 2**16 * 2**20 * 4096 < 2**53: exact in any order.
        num = torch.matmul(wts, v)
        return num / wts.sum(dim=-1, keepdim=True) / float(1 << V_BITS)

    def _proj_and_mlp(self, x: torch.Tensor, att: torch.Tensor, w: dict) -> torch.Tensor:
        """The rest of a block: attention projection and ReLU^2 MLP, each added to the Q16 residual."""
        x = _add_fixed(x, self._linear(att, w["proj"]))
        return _add_fixed(x, self._linear(self._normed_linear(x, w["fc1"], relu_sq=True), w["fc2"]))

    def logits_blocks(self, tokens: torch.Tensor, block: int = 0):
        """Yield the logits of every position of ``tokens`` [B, n] (each row: BOS, then its bytes),
        as [B, T, 256] float64 blocks of T positions, left to right.

        The numbers are those of n calls to :meth:`step`, bit for bit: every operation is either
        row-wise (the same op on the same row gives the same result whatever else is in the batch)
        or an exact integer sum, so scoring T queries against the window at once, as matrix-matrix
        products instead of matrix-vector ones, changes nothing but speed. It is the torch reference
        that the compiled :meth:`step` must equal; the coder steps in both directions (see
        ``encode_in_blocks``).
        """
        cfg = self.cfg
        B, n = tokens.shape
        H, d, c = cfg.heads, cfg.d_model, self.ctx
        dh = d // H
        block = block or 64  # queries per block: the key window is 64 + ctx - 1, little wasted
        # Per layer: the previous c - 1 positions' keys (int8 values as float32), key scales and
        # fixed-point values, laid out [B, H, P, dh] as in the step cache.
        prev = [
            (torch.zeros(B, H, 0, dh), torch.zeros(B, H, 0), torch.zeros(B, H, 0, dh, dtype=torch.float64))
            for _ in range(cfg.layers)
        ]
        slopes = self.slopes32[..., None]  # [1, H, 1, 1]
        for t0 in range(0, n, block):
            T = min(block, n - t0)
            P = min(t0, c - 1)
            # Query t sees keys t - c + 1 .. t: the step cache's ring of c slots. dist is exact in float32.
            dist = (torch.arange(t0, t0 + T)[:, None] - torch.arange(t0 - P, t0 + T)[None, :]).to(torch.float32)
            bias = torch.where((dist >= 0) & (dist < c), -(slopes * dist), -math.inf)  # [1, H, T, P + T]
            x = self._embed(tokens[:, t0 : t0 + T].reshape(-1))  # [B * T, d]
            for i, w in enumerate(self.blocks):
                qkv = self._normed_linear(x, w["qkv"]).view(B, T, 3, H, dh)
                qq, qs = intops.quantize_rows(qkv[:, :, 0])  # [B, T, H, dh], [B, T, H, 1]
                kq, ks = intops.quantize_rows(qkv[:, :, 1])
                vfix = torch.round(qkv[:, :, 2] * float(1 << V_BITS)).clamp_(-(1 << 20), 1 << 20)
                k_all = torch.cat([prev[i][0], kq.to(torch.float32).transpose(1, 2)], dim=2)  # [B, H, P+T, dh]
                ks_all = torch.cat([prev[i][1], ks[..., 0].to(torch.float32).transpose(1, 2)], dim=2)
                v_all = torch.cat([prev[i][2], vfix.transpose(1, 2)], dim=2)
                prev[i] = (k_all[:, :, -(c - 1) :], ks_all[:, :, -(c - 1) :], v_all[:, :, -(c - 1) :])
                s_int = torch.matmul(qq.to(torch.float32).transpose(1, 2), k_all.transpose(-1, -2))  # exact
                qscale = qs.to(torch.float32).transpose(1, 2) * self.inv_sqrt_dh  # [B, H, T, 1]
                att = self._attend(s_int, qscale, ks_all[:, :, None, :], bias, v_all)  # [B, H, T, dh]
                x = self._proj_and_mlp(x, att.transpose(1, 2).reshape(B * T, d), w)
            yield self._normed_linear(x, self.head_w).view(B, T, 256)

    def step(self, state: dict, inputs: torch.Tensor) -> torch.Tensor:
        """The logits [B, 256] (float64) of the next byte of every stream, given each stream's last
        input; the same numbers as :meth:`logits_blocks`, bit for bit (a test holds them equal)."""
        ctx = self.begin_step(state, inputs)
        runs = state["runs"]
        if len(runs) == 1:
            self.step_run(state, ctx, 0)
        else:
            # Each run's torch ops on one thread (the caller's intra-op threads would only wait on each
            # other in products this small); the runs themselves go in parallel.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                pending = [intops.workers(len(runs) - 1).submit(self.step_run, state, ctx, r)
                           for r in range(1, len(runs))]
                self.step_run(state, ctx, 0)
                for f in pending:
                    f.result()
            finally:
                torch.set_num_threads(threads)
        return self.end_step(state, ctx)

    def begin_step(self, state: dict, inputs: torch.Tensor) -> tuple:
        """What every run of one step shares: the ring slot, the ALiBi bias, the inputs and the
        logits to fill. Then :meth:`step_run` for each run (on any threads, in any order: they write
        disjoint rows), then :meth:`end_step`."""
        c, B = self.ctx, inputs.shape[0]
        t = state["t"]
        slot = t % c
        state["pos"][slot] = t
        # ALiBi bias per head and slot, shared by all streams and layers; -inf marks unwritten slots,
        # whose gap then clamps to the table's end, where the >> 14 attention weight is exactly 0.
        # Slopes are powers of two and distances < 2**24, so the product is exact in float32.
        dist = (t - state["pos"]).to(torch.float32)
        bias = torch.where(state["pos"] >= 0, -(self.slopes32 * dist), -math.inf)[0].contiguous().numpy()  # [H, c]
        if state["runs"][-1][0].stop != B:
            raise ValueError(f"step() got {B} inputs for a state started with {state['runs'][-1][0].stop} streams")
        return slot, bias, inputs.to(torch.int64).contiguous().numpy(), torch.empty(B, 256, dtype=torch.float64)

    def step_run(self, state: dict, ctx: tuple, r: int) -> torch.Tensor:
        """Run ``r`` of the step begun as ``ctx`` (see :meth:`begin_step`): its rows of the logits."""
        slot, bias, tokens, logits = ctx
        run = state["runs"][r]
        self._step_run(state, run, tokens, slot, bias, logits.numpy())
        return logits[run[0]]

    def end_step(self, state: dict, ctx: tuple) -> torch.Tensor:
        """The step's logits, once every run is done."""
        state["t"] += 1
        return ctx[3]

    @torch.inference_mode()  # thread-local: a worker thread must enter it too, for buffers made in it
    def _step_run(self, state: dict, run, tokens, slot: int, bias, logits) -> None:
        """One run of streams through every block: compiled passes around the int8 matmuls (see the
        kernels above for which torch operations each one reproduces)."""
        rows, b = run
        x, q, qm, qkv, accd, accm, acc2 = b["x"], b["q"], b["qm"], b["qkv"], b["accd"], b["accm"], b["acc2"]
        step, step2 = b["step"], b["step2"]
        fused = self._int16_weights()
        if fused is not None:
            _run_int16(tokens[rows], self.emb_np, self.emb_scale_np, _RMS_EPS, x, q.numpy(), qm.numpy(), step, step2,
                       qkv.numpy(), accd.numpy(), accm.numpy(), acc2.numpy(), b["head"].numpy(), logits[rows],
                       *fused, self.head_scale_np, self.inv_sqrt_dh32, slot, b["qq"], b["qscale"], state["k"],
                       state["ks"], state["v16"], state["vwide"], state["v32"], rows.start, rows.stop, bias,
                       self.att_w_np)
            return
        _embed_rms(tokens[rows], self.emb_np, self.emb_scale_np, _RMS_EPS, x, q.numpy(), step)
        for i, w in enumerate(self.blocks):
            sc = self.scales_np[i]
            kt, ks, v16, vwide, v32 = (state[k][i, rows] for k in ("k", "ks", "v16", "vwide", "v32"))
            intops.matmul_into(q, w["qkv"][0], qkv)
            _qkv_to_cache(qkv.numpy(), step, sc["qkv"], self.inv_sqrt_dh32, slot, b["qq"], b["qscale"],
                          kt, ks, v16, vwide, v32)
            _attend_quantize(kt, ks, v16, vwide, v32, b["qq"], b["qscale"], bias, self.att_w_np,
                             q.numpy(), step2)
            intops.matmul_into(q, w["proj"][0], accd)
            _add_scaled_rms(x, accd.numpy(), step2, sc["proj"], _RMS_EPS, q.numpy(), step)
            intops.matmul_into(q, w["fc1"][0], accm)
            _relu_sq_quantize(accm.numpy(), step, sc["fc1"], qm.numpy(), step2)
            intops.matmul_into(qm, w["fc2"][0], acc2)
            _add_scaled_rms(x, acc2.numpy(), step2, sc["fc2"], _RMS_EPS, q.numpy(), step)
        intops.matmul_into(q, self.head_w[0], b["head"])
        _scale_rows(b["head"].numpy(), step, self.head_scale_np, False, logits[rows])


class WindowBatches:
    """Random windows of ``seq`` bytes; one row in eight starts with BOS (a coded stream's start).
    Stateless between steps: each batch is drawn fresh from ``gen``."""

    def __init__(self, data: torch.Tensor, batch: int, seq: int, gen: torch.Generator):
        self.data, self.B, self.T, self.gen = data, batch, seq, gen

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        data, batch, ctx, gen = self.data, self.B, self.T, self.gen
        start = torch.randint(0, len(data) - ctx - 1, (batch,), generator=gen)
        chunk = data[start[:, None] + torch.arange(ctx + 1)[None, :]]
        x, y = chunk[:, :-1].clone(), chunk[:, 1:].clone()
        bos = torch.rand(batch, generator=gen) < 0.125
        x[bos, 1:] = chunk[bos, :-2]
        x[bos, 0] = BOS
        y[bos] = chunk[bos, :-1]
        return x, y, torch.ones(batch, dtype=torch.bool)

    def state(self) -> dict:
        return {}

    def load(self, s: dict) -> None:
        pass


# The architecture API (see compbench.models.archs.ArchInfo).
Config, LM, Engine, batches = TransformerConfig, TransformerLM, IntTransformer, WindowBatches
