"""Inspect a submission zip from a stranger without trusting anything it claims.

:func:`inspect_zip` reads the central directory and every entry's bytes (streamed, with a cap) and
returns a :class:`ZipReport`, or raises :class:`SubmissionError` with one line that says what is
wrong. It never extracts, imports or unpickles anything. Refused:

* names that are absolute (``/x``, ``C:x``, ``\\\\server``), climb out (``..``), hold NUL or
  backslashes, or repeat another entry's name (two entries for one path: which one is real?);
* symlinks, devices, FIFOs and sockets (the Unix mode in the entry's external attributes);
* encrypted entries, and compression methods other than stored and deflate (and bzip2/lzma,
  which the standard library reads);
* too many files, too many bytes in all, and entries whose size over their compressed size is
  bomb-like. Sizes are checked twice: as the directory claims them, before reading anything, and
  as actually read, stopping at the claim (a lying header cannot make us hold more than it said);
* archives inside the archive, except ``.npz`` weight files, which are opened (one level) and must
  hold only ``.npy`` arrays of plain numeric dtypes;
* pickles anywhere: by name (``.pkl``, ``.pt``, ``.pth``, ``.ckpt``, ``.joblib`` ...), by content
  (a pickle's protocol header, or a zip holding ``data.pkl`` as ``torch.save`` writes), and inside
  ``.npy`` as an object dtype (which ``np.load`` would unpickle).

:func:`extract` writes the checked entries into a fresh folder, each to a path built from its
checked name parts, with the same caps.
"""

from __future__ import annotations

import io
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MB = 1024 * 1024  # the challenge counts megabytes as MiB: bytes / (1024 * 1024) <= 1.0


class SubmissionError(ValueError):
    """A submission that is refused; the message is one line saying why."""


@dataclass(frozen=True)
class ZipLimits:
    """Golden Plate's limits, and the inspector's own guards against bombs."""

    max_zip_bytes: int = 1 * MB  # the validator: size / (1024 * 1024) <= 1.0
    max_total_bytes: int = 50 * MB  # uncompressed, all entries
    max_files: int = 1000
    max_ratio: float = 200.0  # an entry over 1 MiB may expand at most this much
    max_nested: int = 16  # .npz files (the only archives allowed inside)
    max_name: int = 255


ARCHIVE_SUFFIXES = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".lzma", ".whl", ".egg", ".jar"}
PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".sav", ".dill"}
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_NPY_DTYPE = re.compile(rb"'descr'\s*:\s*'([^']*)'")
_PLAIN_DTYPES = re.compile(r"^[<>|=]?(b1|[iu][1248]|f[248]|c(8|16))$")


@dataclass
class Entry:
    name: str
    size: int
    compressed: int


@dataclass
class ZipReport:
    path: str
    zip_bytes: int
    entries: list[Entry] = field(default_factory=list)
    arrays: dict[str, list[str]] = field(default_factory=dict)  # npz name -> its arrays

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]


def _check_name(name: str, limits: ZipLimits) -> PurePosixPath:
    shown = name.encode("unicode_escape").decode()[:80]
    if not name or len(name) > limits.max_name or "\x00" in name:
        raise SubmissionError(f"entry {shown!r}: empty, over-long or NUL-containing name")
    if "\\" in name:
        raise SubmissionError(f"entry {shown!r}: backslash in a name (a Windows path separator)")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise SubmissionError(f"entry {shown!r}: absolute path")
    path = PurePosixPath(name)
    if any(part == ".." for part in path.parts):
        raise SubmissionError(f"entry {shown!r}: path climbs out of the folder ('..')")
    return path


def _check_mode(info: zipfile.ZipInfo) -> None:
    if "\x00" in info.orig_filename:  # zipfile cuts the name at the NUL; another reader may not
        raise SubmissionError(f"entry {info.filename!r}: NUL byte in its stored name")
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if info.create_system == 3 and kind not in (0, stat.S_IFREG, stat.S_IFDIR):  # Unix attributes
        what = {stat.S_IFLNK: "a symlink", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
                stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}.get(kind, f"a special file (mode {oct(mode)})")
        raise SubmissionError(f"entry {info.filename!r} is {what}: only regular files are allowed")
    if info.flag_bits & 0x1:
        raise SubmissionError(f"entry {info.filename!r} is encrypted")
    if info.compress_type not in _METHODS:
        raise SubmissionError(f"entry {info.filename!r}: compression method {info.compress_type} is not supported")


def _read_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The entry's bytes, never more than its directory size claims (a lying header is refused)."""
    out = io.BytesIO()
    try:
        with zf.open(info) as fh:
            while True:
                piece = fh.read(1 << 20)
                if not piece:
                    break
                out.write(piece)
                if out.tell() > info.file_size:
                    raise SubmissionError(f"entry {info.filename!r} holds more bytes than its header says")
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError, RuntimeError) as err:
        raise SubmissionError(f"entry {info.filename!r} is corrupted ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    return out.getvalue()


def _is_pickle(data: bytes) -> bool:
    # Protocol 2+ pickles start with PROTO (0x80) and a protocol number; torch.save writes a zip
    # whose records include data.pkl; protocol 0/1 pickles are caught by name or by np.load's dtype.
    return (len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5) or (
        data[:2] == b"PK" and b"data.pkl" in data[:1 << 16])


def _check_npy(name: str, data: bytes) -> str:
    if not data.startswith(b"\x93NUMPY"):
        raise SubmissionError(f"{name}: not a .npy array")
    m = _NPY_DTYPE.search(data[:4096])
    descr = m.group(1).decode() if m else "?"
    if not _PLAIN_DTYPES.match(descr):
        raise SubmissionError(f"{name}: dtype {descr!r} is not a plain numeric dtype (object arrays are pickles)")
    return descr


def _check_npz(name: str, data: bytes, limits: ZipLimits) -> list[str]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise SubmissionError(f"{name}: not a valid .npz (zip) file") from None
    arrays, total = [], 0
    with zf:
        for info in zf.infolist():
            inner = f"{name}/{info.filename}"
            _check_name(info.filename, limits)
            _check_mode(info)
            total += info.file_size
            if total > limits.max_total_bytes:
                raise SubmissionError(f"{name}: its arrays claim more than {limits.max_total_bytes:,} bytes")
            if not info.filename.endswith(".npy"):
                raise SubmissionError(f"{inner}: an .npz may hold only .npy arrays")
            _check_npy(inner, _read_capped(zf, info))
            arrays.append(info.filename[:-4])
    return arrays


def inspect_zip(path: str | Path, limits: ZipLimits = ZipLimits()) -> ZipReport:
    """Check a submission zip's structure and limits (see the module docstring); nothing runs."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise SubmissionError(f"cannot read {path}: {err.strerror}") from None
    if size > 64 * MB:  # far beyond any limit: do not even open it
        raise SubmissionError(f"{path}: {size:,} bytes is not a plausible submission")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise SubmissionError(f"{path}: not a zip file ({err})") from None
    report = ZipReport(str(path), size)
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_files:
            raise SubmissionError(f"{len(infos):,} entries: at most {limits.max_files:,} are allowed")
        seen: set[str] = set()
        claimed = 0
        for info in infos:  # everything the directory claims, before any byte is read
            p = _check_name(info.filename, limits)
            _check_mode(info)
            key = str(p).lower()
            if key in seen:
                raise SubmissionError(f"entry {info.filename!r} appears twice")
            seen.add(key)
            claimed += info.file_size
            if claimed > limits.max_total_bytes:
                raise SubmissionError(f"entries claim more than {limits.max_total_bytes:,} bytes uncompressed "
                                      f"(the limit is {limits.max_total_bytes // MB} MB)")
            if info.file_size > MB and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                raise SubmissionError(f"entry {info.filename!r} expands {info.file_size / max(info.compress_size, 1):,.0f}x "
                                      f"(a zip bomb?): at most {limits.max_ratio:g}x for entries over 1 MiB")
        nested = 0
        for info in infos:
            if info.is_dir():
                continue
            suffix = PurePosixPath(info.filename).suffix.lower()
            if suffix in PICKLE_SUFFIXES:
                raise SubmissionError(f"entry {info.filename!r}: {suffix} files are pickles (or may be): store "
                                      "weights as .npz (allow_pickle=False) or .safetensors")
            if suffix in ARCHIVE_SUFFIXES:
                raise SubmissionError(f"entry {info.filename!r}: archives inside the submission are not allowed "
                                      "(only .npz weight files)")
            data = _read_capped(zf, info)
            if suffix == ".npz":
                nested += 1
                if nested > limits.max_nested:
                    raise SubmissionError(f"more than {limits.max_nested} .npz files")
                report.arrays[info.filename] = _check_npz(info.filename, data, limits)
            elif suffix == ".npy":
                _check_npy(info.filename, data)
            elif _is_pickle(data):
                raise SubmissionError(f"entry {info.filename!r} is a pickle (by its content): pickles are never loaded")
            report.entries.append(Entry(info.filename, len(data), info.compress_size))
    if "model.py" not in report.names:
        where = [n for n in report.names if n.endswith("/model.py")]
        hint = f" (found {where[0]!r}: model.py must be at the top of the zip)" if where else ""
        raise SubmissionError(f"no model.py at the top of the zip{hint}")
    return report


def extract(path: str | Path, dest: str | Path, limits: ZipLimits = ZipLimits()) -> ZipReport:
    """Check ``path`` and write its regular files under ``dest`` (which must be empty or absent)."""
    report = inspect_zip(path, limits)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise SubmissionError(f"{dest} is not empty")
    root = dest.resolve()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            target = root.joinpath(*PurePosixPath(info.filename).parts)
            if root not in target.resolve().parents:  # belt and braces: the name checks already ensure it
                raise SubmissionError(f"entry {info.filename!r} would be written outside {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as fh:  # "x": never overwrite, never follow a planted link
                fh.write(_read_capped(zf, info))
    return report
