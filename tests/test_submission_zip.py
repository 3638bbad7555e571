"""Hostile submission zips: every case is refused with one line, nothing is written outside the
temporary folder, and nothing is unpickled (a pickle that would create a canary file when loaded
never does). A well-formed submission passes and extracts."""

import io
import os
import pickle
import stat
import zipfile

import numpy as np
import pytest

from compbench.submission.zipcheck import MB, SubmissionError, ZipLimits, extract, inspect_zip

MODEL_PY = b"class Model:\n    def __init__(self, d):\n        pass\n"


class Canary:
    """Unpickling this creates a file: proof that something unpickled it."""

    path = ""

    def __reduce__(self):
        return (open, (self.path, "w"))


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _zip(path, entries, model=True):
    """entries: (name or ZipInfo, bytes); a model.py is added unless model=False."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if model:
            zf.writestr("model.py", MODEL_PY)
        for name, data in entries:
            zf.writestr(name, data)
    return path


def _info(name, mode=None):
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    if mode is not None:
        info.create_system = 3
        info.external_attr = mode << 16
    return info


def _hostile_cases(tmp):
    canary = tmp / "canary"
    Canary.path = str(canary)
    pkl = pickle.dumps(Canary(), protocol=4)
    obj = np.empty(1, dtype=object)
    obj[0] = Canary()
    lying = tmp / "lying.zip"
    _zip(lying, [("w.dat", b"x" * 5000)])
    raw = bytearray(lying.read_bytes())  # both headers of w.dat now claim 100 bytes, not 5,000
    for sig, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = raw.find(sig)
        while at >= 0:
            if raw[at + name_at : at + name_at + 5] == b"w.dat":
                raw[at + size_at : at + size_at + 4] = (100).to_bytes(4, "little")
            at = raw.find(sig, at + 4)
    lying.write_bytes(bytes(raw))
    nul = tmp / "nul.zip"  # zipfile's writer cuts names at NUL: patch one into both headers
    _zip(nul, [("evil@.py", b"x")])
    nul.write_bytes(nul.read_bytes().replace(b"evil@.py", b"evil\0.py"))
    zeros = b"\0" * (20 * MB)
    return canary, {
        "path traversal": [("../evil.py", b"x")],
        "deep traversal": [("a/../../evil.py", b"x")],
        "absolute path": [("/etc/evil", b"x")],
        "windows drive": [("C:evil.py", b"x")],
        "backslash": [("..\\evil.py", b"x")],
        "NUL in name": nul,
        "symlink": [(_info("link", stat.S_IFLNK | 0o777), b"/etc/passwd")],
        "character device": [(_info("dev", stat.S_IFCHR | 0o666), b"")],
        "FIFO": [(_info("fifo", stat.S_IFIFO | 0o666), b"")],
        "zip bomb (ratio)": [("zeros.dat", zeros)],
        "zip bomb (total)": [(f"z{i}.dat", b"\0" * (MB - 1)) for i in range(52)],
        "nested zip": [("inner.zip", b"PK\x05\x06" + b"\0" * 18)],
        "nested tar.gz": [("weights.tar.gz", b"\x1f\x8b" + b"\0" * 20)],
        "pickle by name": [("weights.pkl", pkl)],
        "torch .pt": [("weights.pt", b"PK\x03\x04")],
        "pickle by content": [("weights.dat", pkl)],
        "torch zip by content": [("weights.raw", b"PK\x03\x04" + b"\0" * 26 + b"archive/data.pkl")],
        "object .npy": [("w.npy", _npy(obj))],
        "object array in .npz": [("w.npz", _npz(w=obj))],
        "non-array in .npz": [("w.npz", _zip(io.BytesIO(), [("evil.py", b"x")], model=False).getvalue())],
        "duplicate names": [("a.py", b"1"), ("A.py", b"2")],
        "too many files": [(f"f{i}.txt", b"") for i in range(1001)],
        "no model.py": "no-model",
        "model.py not at the top": [("sub/model.py", MODEL_PY)],
        "lying size header": lying,
        "not a zip": b"this is not a zip file at all",
    }


def test_every_hostile_zip_is_refused_in_one_line_without_writing_or_unpickling(tmp_path):
    canary, cases = _hostile_cases(tmp_path)
    assert len(cases) >= 25
    for i, (name, entries) in enumerate(cases.items()):
        path = tmp_path / f"case{i}.zip"
        if isinstance(entries, bytes):
            path.write_bytes(entries)
        elif isinstance(entries, os.PathLike):
            path = entries
        elif entries == "no-model":
            _zip(path, [("weights.npz", _npz(w=np.zeros(3, np.int8)))], model=False)
        else:
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
                if name not in ("model.py not at the top",):
                    zf.writestr("model.py", MODEL_PY)
                for entry, data in entries:
                    zf.writestr(entry, data)
        dest = tmp_path / "out" / name.replace(" ", "_").replace("/", "_")
        with pytest.raises(SubmissionError) as err:
            extract(path, dest)
        message = str(err.value)
        assert message and "\n" not in message and "Traceback" not in message, name
        assert not dest.exists() or not any(dest.rglob("*")), f"{name}: something was written"
    written_outside = [p for p in (tmp_path.parent / "evil.py", tmp_path / "evil.py", tmp_path.parent.parent / "evil.py")
                       if p.exists()]
    assert not written_outside
    assert not canary.exists(), "something unpickled a submission's file"


def test_each_hostile_case_is_refused_for_its_own_reason(tmp_path):
    _, cases = _hostile_cases(tmp_path)
    expect = {"path traversal": "climbs out", "absolute path": "absolute", "symlink": "symlink",
              "character device": "character device", "zip bomb (ratio)": "zip bomb",
              "zip bomb (total)": "more than", "nested zip": "archives inside", "pickle by name": "pickle",
              "pickle by content": "pickle", "object .npy": "object arrays are pickles",
              "duplicate names": "appears twice", "model.py not at the top": "must be at the top",
              "lying size header": "w.dat"}
    for i, (name, want) in enumerate(expect.items()):
        entries = cases[name]
        path = tmp_path / f"r{i}.zip"
        if isinstance(entries, os.PathLike):
            path = entries
        else:
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
                if name != "model.py not at the top":
                    zf.writestr("model.py", MODEL_PY)
                for entry, data in entries:
                    zf.writestr(entry, data)
        with pytest.raises(SubmissionError, match=want):
            inspect_zip(path)


def test_a_well_formed_submission_passes_and_extracts_into_its_folder(tmp_path):
    weights = _npz(w=np.arange(-5, 5, dtype=np.int8), s=np.ones(3, np.float16))
    path = _zip(tmp_path / "ok.zip", [("weights.npz", weights), ("config.json", b"{}"), ("lib/util.py", b"x = 1\n")])
    report = inspect_zip(path)
    assert sorted(report.names) == ["config.json", "lib/util.py", "model.py", "weights.npz"]
    assert sorted(report.arrays["weights.npz"]) == ["s", "w"]
    assert report.zip_bytes == path.stat().st_size and report.total_bytes > 0
    out = tmp_path / "x"
    extract(path, out)
    assert (out / "lib" / "util.py").read_bytes() == b"x = 1\n"
    with np.load(out / "weights.npz", allow_pickle=False) as z:
        assert z["w"].tolist() == list(range(-5, 5))
    with pytest.raises(SubmissionError, match="not empty"):
        extract(path, out)


def test_limits_are_the_challenge_s(tmp_path):
    limits = ZipLimits()
    assert limits.max_zip_bytes == 1_048_576 and limits.max_total_bytes == 50 * 1_048_576


def test_compbench_check_reports_limits_and_refuses_hostile_zips_in_one_line(tmp_path):
    from click.testing import CliRunner

    from compbench.cli import cli

    ok = _zip(tmp_path / "ok.zip", [("weights.npz", _npz(w=np.zeros(4, np.int8)))])
    res = CliRunner().invoke(cli, ["check", str(ok), "--no-run"])
    assert res.exit_code == 0 and "ok   zip size" in res.output and "of 1 MiB" in res.output
    big = _zip(tmp_path / "big.zip", [("w.npy", _npy(np.random.default_rng(0).integers(-128, 127, 1_200_000, dtype=np.int8)))])
    res = CliRunner().invoke(cli, ["check", str(big), "--no-run"])
    assert res.exit_code == 1 and "FAIL zip size" in res.output
    bad = _zip(tmp_path / "bad.zip", [("../x.py", b"x")])
    res = CliRunner().invoke(cli, ["check", str(bad)])
    assert res.exit_code != 0 and "refused" in res.output and "Traceback" not in res.output
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1
