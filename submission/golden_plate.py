"""Export a neural coder as a Golden-Plate submission zip: ``model.py``, ``weights.npz``, ``config.json``.

The weights are the artifact's own tensors (int8 matrices, fp16 scales and biases), stored in an
``.npz`` that loads with ``allow_pickle=False``. ``model.py`` needs numpy and CPU torch only. It
rebuilds the float model from those tensors and answers ``predict(contexts)`` with 256 logits per
context. It feeds BOS, then the context's last ``window`` bytes, from a zero state, like a coded
stream starts.

Speed. The validator times 1024 contexts of 0 to 512 bytes. The GRU steps through them all at
once: rows are sorted by length and right-aligned, so step ``s`` runs only the rows that have
started, and the work is the sum of the lengths, not 1024 times the longest. The int8 weights
stay int8-valued float32, so each matmul is exact (sums of int8 products stay below 2**24); only
the activations differ from the integer engine's lookup tables.

This release exports the GRU. The transformer's exporter is not written yet.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from .zipcheck import MB, SubmissionError

FORMAT = 1
# Bytes of each context the exported model reads. The challenge gives 512; a 1-layer GRU forgets
# most of what lies further back than ~100 bytes, so reading the last 128 costs about 0.1% bpb
# and takes a quarter of the time (benchmarks/golden_plate_speed.py; figures in the README).
DEFAULT_WINDOW = 128

GRU_MODEL_PY = r'''"""A GRU byte-LM exported by compbench (format 1): numpy + CPU torch only."""
import json
import os

import numpy as np
import torch

BOS = 256


class Model:
    def __init__(self, submission_dir):
        with open(os.path.join(submission_dir, "config.json")) as fh:
            cfg = json.load(fh)
        self.hidden, self.layers, self.window = cfg["config"]["hidden"], cfg["config"]["layers"], cfg["window"]
        with np.load(os.path.join(submission_dir, "weights.npz"), allow_pickle=False) as z:
            t = {k: torch.from_numpy(z[k].astype(np.float32)) for k in z.files}
        self.table = t["table"] * t["table_scale"]  # [257, 3H]: embedding and input projection, folded
        self.params = []
        for layer in range(self.layers):
            p = {"w_hh": t["w_hh%d" % layer].T.contiguous(), "s_hh": t["w_hh%d_scale" % layer] / 127.0,
                 "b_hh": t["b_hh%d" % layer]}
            if layer > 0:
                p.update(w_ih=t["w_ih%d" % layer].T.contiguous(), s_ih=t["w_ih%d_scale" % layer] / 127.0,
                         b_ih=t["b_ih%d" % layer])
            self.params.append(p)
        self.w_out, self.s_out, self.b_out = t["w_out"].T.contiguous(), t["w_out_scale"] / 127.0, t["b_out"]
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    @torch.inference_mode()
    def predict(self, contexts):
        H = self.hidden
        ctx = [bytes(c[-self.window:]) if self.window else bytes(c) for c in contexts]
        order = sorted(range(len(ctx)), key=lambda i: -len(ctx[i]))  # longest first
        lens = torch.tensor([len(ctx[i]) for i in order], dtype=torch.int64)
        steps = int(lens[0]) + 1 if len(ctx) else 0
        inputs = torch.full((len(ctx), steps), BOS, dtype=torch.int64)  # right-aligned: BOS, then the bytes
        for row, i in enumerate(order):
            if ctx[i]:
                inputs[row, steps - len(ctx[i]):] = torch.frombuffer(bytearray(ctx[i]), dtype=torch.uint8).long()
        h = [torch.zeros(len(ctx), H) for _ in range(self.layers)]
        for s in range(steps):
            k = int((lens >= steps - 1 - s).sum())  # rows that have started by step s (a prefix)
            x = None
            for layer, p in enumerate(self.params):
                hl = h[layer][:k]
                gx = self.table[inputs[:k, s]] if layer == 0 else (torch.round(x * 127.0) @ p["w_ih"]) * p["s_ih"] + p["b_ih"]
                gh = (torch.round(hl * 127.0) @ p["w_hh"]) * p["s_hh"] + p["b_hh"]
                rz = torch.sigmoid(gx[:, :2 * H] + gh[:, :2 * H])
                n = torch.tanh(gx[:, 2 * H:] + rz[:, :H] * gh[:, 2 * H:])
                x = n + rz[:, H:] * (hl - n)
                h[layer][:k] = x
        top = h[-1]
        logits = (torch.round(top * 127.0) @ self.w_out) * self.s_out + self.b_out
        out = torch.empty_like(logits)
        out[torch.tensor(order, dtype=torch.int64)] = logits
        return out.tolist()
'''


def export_golden_plate(spec: str, out: str | Path, window: int = DEFAULT_WINDOW) -> dict:
    """Write the submission zip for the neural coder ``spec``; returns its sizes against both limits.
    Raises SubmissionError when the architecture has no exporter or the zip is over 1 MiB."""
    import numpy as np

    from compbench.models import artifact
    from compbench.registry import make_coder

    coder = make_coder(spec)
    if coder.family != "neural":
        raise SubmissionError(f"{spec}: only neural coders export to Golden Plate (a model.py that predicts logits)")
    header, tensors = artifact.unpack(coder.artifact())
    if header["arch"] != "gru":
        raise SubmissionError(f"{spec}: no Golden-Plate exporter for {header['arch']!r} yet (the GRU has one)")
    buf = io.BytesIO()
    np.savez(buf, **{name: t.numpy() for name, t in tensors.items()})
    config = {"format": FORMAT, "arch": "gru", "config": header["config"], "window": window,
              "exported_from": coder.spec, "meta": header.get("meta", {})}
    out = Path(out)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("model.py", GRU_MODEL_PY)
        zf.writestr("weights.npz", buf.getvalue())
        zf.writestr("config.json", json.dumps(config, indent=1))
    size = out.stat().st_size
    if size > MB:
        out.unlink()
        raise SubmissionError(f"the zip would be {size:,} bytes, over the 1,048,576-byte (1 MiB) limit: export a "
                              "smaller model (compbench train --budget 900KB)")
    return {"zip_bytes": size, "mib": size / MB, "mb": size / 1e6, "fits_1MiB": size <= MB, "fits_1MB": size <= 1_000_000}
