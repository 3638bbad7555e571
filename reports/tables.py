"""Turn stored records into ranked rows and print them as github, plain, csv, json or latex tables.

Aggregation over a corpus's files: ``bpb = 8 * sum(payload) / sum(n)``, throughput = total bytes over
total median seconds, peak memory = the largest per file, and the artifact is counted once per
corpus in ``bpb_total`` (a decoder ships its artifact once, whatever the number of files).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import OrderedDict

FORMATS = ("github", "plain", "csv", "json", "latex")  # the one list of output formats (every --format)
TABLEFMT = {"github": "github", "plain": "simple", "latex": "latex_booktabs"}  # format -> tabulate style

COLUMNS = [  # (row key, table header)
    ("rank", "#"), ("label", "coder"), ("corpus", "corpus"), ("split", "split"), ("files", "files"),
    ("n_bytes", "n_bytes"), ("payload_bytes", "payload_bytes"), ("artifact_bytes", "artifact_bytes"),
    ("bpb", "bpb"), ("bpb_model", "bpb_model"), ("bpb_total", "bpb_total"), ("bpb_lmic", "bpb_lmic"),
    ("decoder_zip_bytes", "decoder_zip"), ("bpb_ltcb", "bpb_ltcb"),
    ("encode_mb_s", "enc MB/s"), ("decode_mb_s", "dec MB/s"), ("peak_mem_mb", "peak MB"),
    ("budget", "budget"), ("fits_budget", "fits"), ("stores_eval_data", "eval data"), ("portable", "portable"),
    ("roundtrip_ok", "roundtrip"), ("host", "measured on"),
]


def group_key(r: dict) -> tuple:
    return (r["corpus"], r["split"], r["chunk_size"])


SORT_KEYS = ("bpb", "bpb_total", "encode_mb_s", "decode_mb_s")


def aggregate(records: list[dict], per_file: bool = False, sort: str = "bpb") -> list[dict]:
    """Records -> rows ranked by ``sort`` within each (corpus, split, chunk size).

    Failed round trips rank last whatever their numbers, then artifacts over the budget; speeds rank
    fastest first."""
    groups: "OrderedDict[tuple, list[dict]]" = OrderedDict()
    for r in records:
        key = (*group_key(r), r["spec"], r["artifact_sha256"]) + ((r["file"],) if per_file else ())
        groups.setdefault(key, []).append(r)
    rows = []
    for recs in groups.values():
        first = recs[0]
        n = sum(r["n_bytes"] for r in recs)
        nz = max(n, 1)
        payload = sum(r["payload_bytes"] for r in recs)
        model = [r.get("model_bits") for r in recs]
        lmic = [r.get("bpb_lmic") for r in recs]
        peaks = [p for r in recs for p in (r.get("encode_peak_mem_bytes"), r.get("decode_peak_mem_bytes")) if p is not None]
        enc_s = sum(r["encode_wall_s"] for r in recs)
        dec_s = sum(r["decode_wall_s"] for r in recs)
        corpus = first["corpus"] + (f"/{first['file']}" if per_file and len(recs) == 1 and first["file"] not in first["corpus"] else "")
        rows.append({
            "label": first.get("label") or first["spec"], "spec": first["spec"], "corpus": corpus,
            "split": first["split"], "chunk_size": first["chunk_size"], "files": len(recs), "n_bytes": n,
            "payload_bytes": payload, "artifact_bytes": first["artifact_bytes"],
            "bpb": 8 * payload / n if n else None,
            "bpb_model": None if not n or any(m is None for m in model) else sum(model) / n,
            "bpb_total": 8 * (payload + first["artifact_bytes"]) / n if n else None,
            "bpb_lmic": None if any(x is None for x in lmic) else
            sum(x * r["n_bytes"] for x, r in zip(lmic, recs)) / nz,
            "encode_mb_s": n / enc_s / 1e6 if enc_s > 0 and n else None,
            "decode_mb_s": n / dec_s / 1e6 if dec_s > 0 and n and not math.isnan(dec_s) else None,
            "peak_mem_mb": max(peaks) / 1e6 if peaks else None,
            "roundtrip_ok": all(r["roundtrip_ok"] for r in recs),
            "run_id": first.get("run_id"),
            "corpus_sha256": first.get("corpus_sha256"),
            "budget": first.get("budget"),
            "fits_budget": first.get("fits_budget"),
            "stores_eval_data": bool(first.get("stores_eval_data")),
            "portable": all(r.get("portable", True) for r in recs),
            # Where the row was timed: one machine, or "N machines" (their timings do not compare).
            "host": _hosts(recs),
            "decoder_zip_bytes": first.get("decoder_zip_bytes"),
            # LTCB: compressed size plus the decompressor's zip, counted once per corpus
            "bpb_ltcb": 8 * (payload + first["decoder_zip_bytes"]) / n if n and first.get("decoder_zip_bytes") else None,
        })
    ranked = []
    for key in OrderedDict((group_key(r), None) for r in rows):
        sign = -1 if sort.endswith("_mb_s") else 1
        members = sorted((r for r in rows if group_key(r) == key),
                         key=lambda r: (not r["roundtrip_ok"], r.get("fits_budget") is False, r[sort] is None,
                                        sign * (r[sort] or 0)))
        for i, r in enumerate(members, 1):
            r["rank"] = i
        ranked += members
    return ranked


def _hosts(recs: list[dict]) -> str | None:
    hosts = sorted({f"{r['host']} ({r.get('cpu') or '?'}, {r.get('threads') or '?'} threads)" for r in recs if r.get("host")})
    if not hosts:
        return None
    return hosts[0] if len(hosts) == 1 else f"{len(hosts)} machines"


def _csv(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """Raw values under machine column names (empty for missing), for spreadsheets and scripts."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([k for k, _ in columns])
    for r in rows:
        writer.writerow(["" if r.get(k) is None else r.get(k) for k, _ in columns])
    return buf.getvalue().rstrip("\n")


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "roundtrip_ok":
        return "ok" if value else "FAIL"
    if key == "fits_budget":
        return "yes" if value else "NO"
    if key == "stores_eval_data":
        return "STORED" if value else "-"  # part of the evaluated data is in the artifact
    if key == "portable":
        return "-" if value else "NO"  # a float model: decodes only where it was made
    if key == "budget":
        from compbench.units import format_size

        return format_size(value)
    if key.startswith("bpb"):
        return f"{value:.4f}"
    if key.endswith("_mb_s") or key == "peak_mem_mb":
        if value != value or value in (float("inf"), float("-inf")):
            return "-"
        if value >= 100:
            return f"{value:.0f}"
        if key == "peak_mem_mb" and value < 0.1:
            return "<0.1"  # below what the resident-set high-water mark resolves
        from decimal import Decimal

        return f"{Decimal(f'{value:.3g}'):f}"  # 3 significant digits, never 7.91e-05
    if key == "split" and value == "all":
        return "all"
    return str(value)


def render(rows: list[dict], fmt: str = "github", records: list[dict] | None = None) -> str:
    """Rows -> text in ``fmt``. ``json`` prints the full per-file ``records`` when given."""
    if fmt == "json":
        return json.dumps(records if records is not None else rows, indent=2, default=str)
    columns = list(COLUMNS)
    if not any(r.get("bpb_lmic") is not None for r in rows):
        columns = [c for c in columns if c[0] != "bpb_lmic"]
    if not any(r.get("bpb_model") is not None for r in rows):
        columns = [c for c in columns if c[0] != "bpb_model"]
    if not any(r.get("budget") for r in rows):
        columns = [c for c in columns if c[0] not in ("budget", "fits_budget")]
    if not any(r.get("stores_eval_data") for r in rows):
        columns = [c for c in columns if c[0] != "stores_eval_data"]
    if not any(r.get("decoder_zip_bytes") for r in rows):
        columns = [c for c in columns if c[0] not in ("decoder_zip_bytes", "bpb_ltcb")]
    if len({r.get("host") for r in rows if r.get("host")}) < 2:  # shown when a table spans several machines
        columns = [c for c in columns if c[0] != "host"]
    if all(r.get("portable", True) for r in rows):
        columns = [c for c in columns if c[0] != "portable"]
    if any(r.get("chunk_size") for r in rows):
        columns.insert(4, ("chunk_size", "chunk"))
    if fmt == "csv":
        return _csv(rows, columns)
    from tabulate import tabulate

    table = [[_cell(k, r.get(k)) for k, _ in columns] for r in rows]
    tablefmt = TABLEFMT[fmt]
    return tabulate(table, headers=[h for _, h in columns], tablefmt=tablefmt, disable_numparse=True,
                    colalign=["right" if k not in ("label", "corpus", "split") else "left" for k, _ in columns])


def compare(rows_a: list[dict], rows_b: list[dict], noise_pct: float = 0.05) -> list[dict]:
    """Match rows of two runs by (coder spec, corpus, split, chunk size) and report the change."""
    key = lambda r: (r["spec"], r["corpus"], r["split"], r["chunk_size"])  # noqa: E731
    a_by, b_by = {key(r): r for r in rows_a}, {key(r): r for r in rows_b}
    out = []
    for k in list(a_by) + [k for k in b_by if k not in a_by]:
        a, b = a_by.get(k), b_by.get(k)
        row = {"label": (a or b)["label"], "corpus": k[1], "split": k[2], "chunk_size": k[3],
               "bpb_a": a and a["bpb"], "bpb_b": b and b["bpb"]}
        if a and b:
            delta = b["bpb"] - a["bpb"]
            pct = 100 * delta / a["bpb"] if a["bpb"] else 0.0
            row.update(delta_bpb=delta, delta_pct=pct,
                       status=("corpus changed" if a.get("corpus_sha256") != b.get("corpus_sha256") else
                               "~" if abs(pct) <= noise_pct else ("worse" if pct > 0 else "better")),
                       enc_speed_ratio=_ratio(b["encode_mb_s"], a["encode_mb_s"]),
                       dec_speed_ratio=_ratio(b["decode_mb_s"], a["decode_mb_s"]),
                       roundtrip_ok=a["roundtrip_ok"] and b["roundtrip_ok"])
        else:
            row.update(delta_bpb=None, delta_pct=None, status="only in A" if a else "only in B",
                       enc_speed_ratio=None, dec_speed_ratio=None, roundtrip_ok=(a or b)["roundtrip_ok"])
        out.append(row)
    return out


def _ratio(x, y):
    return x / y if x and y else None


COMPARE_COLUMNS = [("label", "coder"), ("corpus", "corpus"), ("split", "split"), ("bpb_a", "bpb A"),
                   ("bpb_b", "bpb B"), ("delta_bpb", "Δ bpb"), ("delta_pct", "Δ %"), ("status", "status"),
                   ("enc_speed_ratio", "enc speed B/A"), ("dec_speed_ratio", "dec speed B/A")]


def render_compare(rows: list[dict], fmt: str = "github") -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        return _csv(rows, COMPARE_COLUMNS)
    from tabulate import tabulate

    def cell(k, v):
        if v is None:
            return "-"
        if k in ("bpb_a", "bpb_b"):
            return f"{v:.4f}"
        if k == "delta_bpb":
            return f"{v:+.4f}"
        if k == "delta_pct":
            return f"{v:+.2f}"
        if k.endswith("ratio"):
            return f"{v:.2f}x"
        return str(v)

    tablefmt = TABLEFMT[fmt]
    return tabulate([[cell(k, r.get(k)) for k, _ in COMPARE_COLUMNS] for r in rows],
                    headers=[h for _, h in COMPARE_COLUMNS], tablefmt=tablefmt, disable_numparse=True)
