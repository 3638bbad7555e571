"""GRU byte-LM: the torch module that trains, its int8 export, and the integer engine that codes.

Input vocabulary is 257 (the 256 byte values plus BOS = 256, which starts every coded stream); the
output is 256 logits. The float module trains with ``torch.nn.GRU`` (bf16 autocast on AMX); the
artifact holds int8 weights with per-row fp16 scales; :class:`IntGRU` rebuilds the model from
exactly those tensors and runs it with the reproducible ops of :mod:`compbench.models.intops`.

Byte accounting: layer 0's embedding and input projection are folded into one [257, 3H] table
(``emb @ W_ih.T + b_ih``), so E never appears in the artifact and costs nothing to store.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit
from torch import nn

from . import intops
from .intops import BOS

VOCAB_IN = BOS + 1


@dataclasses.dataclass(frozen=True)
class GRUConfig:
    hidden: int = 448
    layers: int = 1
    embed: int = 256

    def __post_init__(self):
        if not (8 <= self.hidden <= 4096 and 1 <= self.layers <= 8 and 1 <= self.embed <= 4096):
            raise ValueError(f"GRU config out of range: {self}")

    def artifact_params(self) -> tuple[int, int]:
        """(int8 weights, fp16 scalars) stored in the artifact for this config."""
        h, g = self.hidden, 3 * self.hidden
        int8 = VOCAB_IN * g + g * h + (self.layers - 1) * 2 * g * h + 256 * h
        fp16 = g + g + g + (self.layers - 1) * (4 * g) + 256 + 256  # scales and biases
        return int8, fp16


class GRULM(nn.Module):
    """Float training module. ``dropout`` (on the embeddings and on the GRU output) is a training
    setting, not part of the config: the exported engine has no dropout."""

    def __init__(self, cfg: GRUConfig, dropout: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.dropout = dropout
        self.emb = nn.Embedding(VOCAB_IN, cfg.embed)
        self.rnn = nn.GRU(cfg.embed, cfg.hidden, cfg.layers, batch_first=True)
        self.out = nn.Linear(cfg.hidden, 256)

    eval_segment = 4096  # bytes per BOS-started segment when the float model is evaluated

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        y, h = self.rnn(F.dropout(self.emb(x), self.dropout, self.training), h)
        return self.out(F.dropout(y, self.dropout, self.training)), h

    @staticmethod
    def carry(h: torch.Tensor | None, reset: torch.Tensor) -> torch.Tensor | None:
        """The state carried into the next training chunk: detached, zeroed for restarted streams."""
        if h is None:
            return None
        h = h.detach()
        h[:, reset.to(h.device)] = 0
        return h


def _q_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric int8: returns (int8 [R, C], fp16 scale [R]). The scale is rounded to fp16
    *before* quantizing, so the stored scale is exactly the one the weights were rounded against."""
    s = (w.abs().amax(dim=1) / 127).clamp_min(1e-8).to(torch.float16)
    q = torch.round(w / s.float()[:, None]).clamp(-127, 127).to(torch.int8)
    return q, s


@torch.no_grad()
def export(model: GRULM) -> dict[str, torch.Tensor]:
    """Float module -> the tensors of the artifact (int8 weights, fp16 scales and biases)."""
    cfg, rnn = model.cfg, model.rnn
    t: dict[str, torch.Tensor] = {}
    table = model.emb.weight.float() @ rnn.weight_ih_l0.float().T + rnn.bias_ih_l0.float()
    q, s = _q_rows(table.T.contiguous())  # per output unit (column of the table)
    t["table"], t["table_scale"] = q.T.contiguous(), s
    for layer in range(cfg.layers):
        if layer > 0:
            t[f"w_ih{layer}"], t[f"w_ih{layer}_scale"] = _q_rows(getattr(rnn, f"weight_ih_l{layer}").float())
            t[f"b_ih{layer}"] = getattr(rnn, f"bias_ih_l{layer}").to(torch.float16)
        t[f"w_hh{layer}"], t[f"w_hh{layer}_scale"] = _q_rows(getattr(rnn, f"weight_hh_l{layer}").float())
        t[f"b_hh{layer}"] = getattr(rnn, f"bias_hh_l{layer}").to(torch.float16)
    t["w_out"], t["w_out_scale"] = _q_rows(model.out.weight.float())
    t["b_out"] = model.out.bias.to(torch.float16)
    return t


_F = np.float32


@njit(cache=True, nogil=True, inline="always")
def _lut_index(x):
    """The table index of :func:`~compbench.models.intops.lut` for one float32: the same float32
    ops in the same order (a multiply, two adds, a clamp, a truncation)."""
    v = x * _F(intops.RES) + _F(intops.LIM * intops.RES) + _F(0.5)
    v = v if v > _F(0.0) else _F(0.0)
    v = v if v < _F(2 * intops.LIM * intops.RES) else _F(2 * intops.LIM * intops.RES)
    return np.int32(v)


@njit(cache=True, nogil=True)
def _cell(gx, rows, acc, s_hh, b_hh, h, sig, tnh, hq, off):
    """One GRU layer's gates and state update, in place on ``h`` [B, H]; writes ``h`` rounded to
    integers, plus ``off``, into ``hq``: int8 or int16 (off 0), the same integers as float32 for the
    float GEMM path (off 0), or uint8 with off 128 for the int8 path's matmul route. Row
    ``rows[b]`` of ``gx`` is stream b's input gate contribution (layer 0 reads the [257, 3H] input
    table directly, so no [B, 3H] copy is made); ``acc`` [B, 3H] is the exact integer sums of
    ``q(h) @ w_hh``, int32 or float32 as the GEMM wrote them (below 2**24, so float32 holds them
    exactly: the conversion is the torch reference's own).

    Exactly the torch ops of :meth:`IntGRU._step_torch`, element by element: every operation is one
    correctly rounded float32 operation, in the same order, and numba compiles without fast-math,
    so LLVM never contracts a multiply and an add into an FMA (a test reads the machine code).
    One pass per row instead of about twenty tensor-wide ops, each a trip through memory; the
    arithmetic and the table lookups are split into separate loops so LLVM vectorises the former.
    """
    B, H = h.shape
    ir = np.empty(H, np.int32)
    iz = np.empty(H, np.int32)
    i_n = np.empty(H, np.int32)
    gn = np.empty(H, np.float32)
    r = np.empty(H, np.float32)
    nn = np.empty(H, np.float32)
    z = np.empty(H, np.float32)
    for b in range(B):
        x = gx[rows[b]]
        for j in range(H):
            ir[j] = _lut_index(x[j] + (_F(acc[b, j]) * s_hh[j] + b_hh[j]))
            iz[j] = _lut_index(x[H + j] + (_F(acc[b, H + j]) * s_hh[H + j] + b_hh[H + j]))
            gn[j] = _F(acc[b, 2 * H + j]) * s_hh[2 * H + j] + b_hh[2 * H + j]
        for j in range(H):
            r[j] = sig[ir[j]]
        for j in range(H):
            i_n[j] = _lut_index(x[2 * H + j] + r[j] * gn[j])
        for j in range(H):  # the lookups alone: with them in the loop below, it was not vectorised
            nn[j] = tnh[i_n[j]]
            z[j] = sig[iz[j]]
        for j in range(H):
            n = nn[j]
            v = n + z[j] * (h[b, j] - n)  # = (1 - z) * n + z * h
            h[b, j] = v
            hq[b, j] = np.rint(v * _F(127.0)) + off  # round half to even, as torch.round; exact in every dtype above


class IntGRU:
    """Integer-arithmetic GRU that computes bit-identical logits on any CPU and thread count.

    Matmuls are exact int8 x int8 products (:func:`~compbench.models.intops.int_matmul`); everything
    else is float32 elementwise ops (each correctly rounded, none fused) and table lookups. The carried
    state ``h`` is float32; each matmul sees it rounded to int8 (step 1/127, exact as |h| <= 1).
    float32 rather than float64 halves the memory traffic of the elementwise ops, which dominate.
    """

    # In a mixed run the engine's work shares the two cores with the mixer (lockstep._run_mixed).
    # Where the int8 GEMM runs, a group's whole step takes about as long as the mixer's turn or
    # less, so the helper thread runs it and it is hidden ("step"). On the float32 path the step took
    # about 2.4 times the mixer's turn (engine v1's mixer), 70% of it the w_hh GEMM, so the helper
    # runs only that GEMM ("recurrent_sums": it needs the state, not the byte being coded, so it
    # overlaps that byte's coding) and this thread the gates, the output GEMM and the softmax
    # weights; measured on one thread, 1.75 ms against 1.62 ms a group of 128 streams (see
    # reports/history.md). With the int16 kernel (gemm16, on AVX2) the GEMMs take about 0.6 of
    # that. Under engine v1's mixer the helper ran both of them and the softmax weights
    # ("sums_and_weights"), and this thread only the gates and the mixing; engine v2's mixer is 1.5
    # times as fast, and this thread then waited 0.70 s of a 1.60 s decode (emulated AVX2 on a Zen
    # 5 EPYC, 262,144 bytes), so it takes the output GEMM and the softmax weights back: decoding,
    # alternating in one process, 214.8 KB/s against 166.0 ("step": 152.5).
    mixer_overlap = True

    def __init__(self, cfg: GRUConfig, t: dict[str, torch.Tensor]):
        self.cfg = cfg
        f32 = lambda name: t[name].to(torch.float32)  # noqa: E731  (fp16 -> f32 is exact)
        # Dequantize the input table once: the same elementwise product on every machine.
        self.table = t["table"].to(torch.float32) * f32("table_scale")
        self.layers = []
        for layer in range(cfg.layers):
            d = {"w_hh": intops.Int8Matrix(t[f"w_hh{layer}"].T, u8_input=True), "s_hh": f32(f"w_hh{layer}_scale") / 127.0,
                 "b_hh": f32(f"b_hh{layer}")}
            if layer > 0:
                d.update(w_ih=intops.Int8Matrix(t[f"w_ih{layer}"].T, u8_input=True), s_ih=f32(f"w_ih{layer}_scale") / 127.0, b_ih=f32(f"b_ih{layer}"))
            self.layers.append(d)
        self.w_out = intops.Int8Matrix(t["w_out"].T, u8_input=True)  # _cell writes its input q + 128 where it is uint8
        self.s_out = f32("w_out_scale") / 127.0
        self.b_out = f32("b_out")
        self.fused = True  # the compiled gate pass (:func:`_cell`); False runs the torch ops it replaces
        # Which thread of a mixed run does what (speed only: the same ops either way, see above).
        self.helper_runs = "step" if intops.matrix_path() == "int8" else "recurrent_sums"
        self.w_out.path()  # the int8 route's start-up timing, if any, runs now, not beside a coding thread
        self._bufs: dict[tuple, torch.Tensor] = {}  # output sums by batch size and dtype (see _out)

    def start(self, batch: int) -> list[torch.Tensor]:
        """Each layer's state h [batch, H]. The compiled path appends, at its first step, each layer's
        h rounded for the next matmul and its recurrent sums (see :meth:`_ready`); callers may set h
        before that step."""
        return [torch.zeros(batch, self.cfg.hidden, dtype=torch.float32) for _ in range(self.cfg.layers)]

    def _out(self, batch: int) -> torch.Tensor:
        # The output matmul's sums, reused from step to step per batch size (a mixed run steps two
        # groups, perhaps one row apart in size). They stay in the dtype they come out in (int32 from
        # the int8 GEMM): the compiled pass converts them as it reads, not a pass of its own.
        key = (batch, intops.acc_dtype(self.w_out))
        if key not in self._bufs:
            self._bufs[key] = torch.empty(batch, 256, dtype=key[1])
        return self._bufs[key]

    @staticmethod
    def _q(h: torch.Tensor) -> torch.Tensor:
        return torch.round(h * 127.0).to(torch.int8)  # |h| <= 1, so no clamp is needed

    def _ready(self, state: list[torch.Tensor]) -> None:
        """At a state's first step, append what the compiled path carries after the h's: each layer's
        h rounded to integers (``q(h)``, the next matmul's input, in the dtype the matmul takes on this
        machine; :func:`_cell` rewrites it in place, so no step rounds or converts h again), then each
        layer's recurrent sums [B, 3H]. The sums live in the state, not in the engine, because a mixed
        run computes one group's while this thread reads the other's (:meth:`recurrent_sums`)."""
        L = self.cfg.layers
        if len(state) == L:  # round the (perhaps caller-set) states once
            dt = intops.gemm_input_dtype(self.layers[0]["w_hh"])
            B, H = state[0].shape[0], self.cfg.hidden
            state.extend([intops.gemm_input(self._q(h), dt) for h in state[:L]])
            state.extend([torch.empty(B, 3 * H, dtype=intops.acc_dtype(p["w_hh"])) for p in self.layers])

    def recurrent_sums(self, state: list[torch.Tensor]) -> None:
        """The part of the next step that depends on the state alone: every layer's exact integer sums
        ``q(h) @ w_hh``, into the state. The next input enters only through :meth:`cells` (the input
        table, and a deeper layer's ``w_ih`` matmul of the layer below's new h), so a mixed run can
        compute these on the helper thread while this thread is still coding the current byte."""
        self._ready(state)
        L = self.cfg.layers
        for layer, p in enumerate(self.layers):  # matmul_into returns the buffer it wrote (see its doc)
            state[2 * L + layer] = intops.matmul_into(state[L + layer], p["w_hh"], state[2 * L + layer])

    def cells(self, state: list[torch.Tensor], inputs: torch.Tensor) -> None:
        """The rest of the recurrence, after :meth:`recurrent_sums`: each layer's gates and new h for
        one input symbol per stream (int64 [B]), by :func:`_cell`, in place on ``state``."""
        L, f32 = self.cfg.layers, torch.float32
        B = inputs.shape[0]
        sig, tnh = intops.sigmoid_table().numpy(), intops.tanh_table().numpy()
        for layer, p in enumerate(self.layers):
            h, hq, acc = state[layer], state[L + layer], state[2 * L + layer]
            if layer == 0:
                gx, rows = self.table, inputs
            else:
                gx = intops.int_matmul(state[L + layer - 1], p["w_ih"], f32) * p["s_ih"] + p["b_ih"]
                rows = torch.arange(B)
            _cell(gx.numpy(), rows.numpy(), acc.numpy(), p["s_hh"].numpy(), p["b_hh"].numpy(), h.numpy(), sig, tnh,
                  hq.numpy(), _F(128.0 if hq.dtype == torch.uint8 else 0.0))

    def out_sums(self, state: list[torch.Tensor]) -> torch.Tensor:
        """The output matmul's exact integer sums [B, 256] of the current state (a reused buffer)."""
        L = self.cfg.layers
        hq = state[2 * L - 1]
        return intops.matmul_into(hq, self.w_out, self._out(hq.shape[0]))

    def out_weights(self, state: list[torch.Tensor]) -> torch.Tensor:
        """The integer softmax weights (int64 [B, 256]) of the current state: :meth:`out_sums`, then
        :func:`~compbench.models.intops.exp_weights_of` (the output scale, bias and softmax in one pass)."""
        return intops.exp_weights_of(self.out_sums(state), self.s_out, self.b_out)

    def _advance(self, state: list[torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """The compiled step up to the output matmul: returns its exact integer sums [B, 256]."""
        self.recurrent_sums(state)
        self.cells(state, inputs)
        return self.out_sums(state)

    def step(self, state: list[torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """Consume one input symbol per stream (int64 [B]); update ``state``; return float32 logits."""
        if not self.fused:
            return self._step_torch(state, inputs)
        return self._advance(state, inputs) * self.s_out + self.b_out

    def step_weights(self, state: list[torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """:meth:`step` followed by :func:`~compbench.models.intops.exp_weights`, the output layer's
        scale, bias and softmax weights fused into one compiled pass (int64 [B, 256])."""
        if not self.fused:
            return intops.exp_weights(self._step_torch(state, inputs))
        return intops.exp_weights_of(self._advance(state, inputs), self.s_out, self.b_out)

    def _step_torch(self, state: list[torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """:meth:`step` as tensor-wide torch ops: the reference the compiled pass must equal bit for bit."""
        H, f32 = self.cfg.hidden, torch.float32
        xq = None
        for layer, p in enumerate(self.layers):
            h = state[layer]
            if layer == 0:
                gx = self.table.index_select(0, inputs)
            else:
                gx = intops.int_matmul(xq, p["w_ih"], f32) * p["s_ih"] + p["b_ih"]
            gh = intops.int_matmul(self._q(h), p["w_hh"], f32) * p["s_hh"] + p["b_hh"]
            rz = intops.sigmoid(gx[:, : 2 * H] + gh[:, : 2 * H])
            n = intops.tanh(gx[:, 2 * H :] + rz[:, :H] * gh[:, 2 * H :])
            h = n + rz[:, H:] * (h - n)  # = (1 - z) * n + z * h
            state[layer] = h
            xq = self._q(h)
        return intops.int_matmul(xq, self.w_out, f32) * self.s_out + self.b_out


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


# The architecture API (see compbench.models.archs.ArchInfo).
Config, LM, Engine, batches = GRUConfig, GRULM, IntGRU, GRUBatches
