"""Corpora: named benchmark corpora from a data folder, any file or folder path, and a built-in one.

Where data lives: ``--data-dir``, else ``$COMPBENCH_DATA``, else ``~/.local/share/compbench/data``
(where ``compbench data fetch`` writes). Files are found with or without a compression suffix
(``enwik8/enwik8.head4154064`` or ``...head4154064.xz``); ``.xz``, ``.gz``, ``.bz2`` and tar archives
(``.tar``, ``.tar.gz``/``.tgz``, ``.tar.xz``, ``.tar.bz2``) are read transparently, in memory.

Splits (deterministic, no overlap, documented in the README):
  * corpora with an official split (ptb, ptb-char, wikitext-2) use their own files;
  * every other stream is split by its tail: ``test`` is the last ``min(1,000,000, n // 4)`` bytes,
    ``val`` the ``min(100,000, n // 20)`` bytes before it, and ``train`` everything before that.
    Multi-file corpora apply the rule to each file. ``all`` (the default) is every byte.

``pystdlib`` is built in: four files that every CPython installation carries (the pydoc topic texts,
English prose, and three pure-Python modules). It needs no data folder and no network, so the main
command runs anywhere; its bytes depend on the Python version, which is why every result records
the corpus sha256.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import os
import sysconfig
import tarfile
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .errors import CorpusError

SPLITS = ("all", "train", "val", "test")
TEST_BYTES, VAL_BYTES = 1_000_000, 100_000
STREAM_SUFFIXES = (".xz", ".gz", ".bz2")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar")
BUILTIN = "pystdlib"
BUILTIN_FILES = ("pydoc_data/topics.py", "_pydecimal.py", "typing.py", "argparse.py")


def default_data_dir() -> Path:
    env = os.environ.get("COMPBENCH_DATA")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "compbench" / "data"


@dataclass(frozen=True)
class Member:
    """One file of a corpus (after decompression and splitting)."""

    name: str
    data: bytes = field(repr=False)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Corpus:
    name: str
    split: str
    members: tuple[Member, ...]
    source: str = ""

    @property
    def n_bytes(self) -> int:
        return sum(len(m.data) for m in self.members)

    @cached_property
    def sha256(self) -> str:
        """Hash of the member list (name + content hash), stable for a given selection and split."""
        h = hashlib.sha256()
        for m in self.members:
            h.update(f"{m.name}\0{m.sha256}\n".encode())
        return h.hexdigest()

    def joined(self) -> bytes:
        return b"".join(m.data for m in self.members)

    def head(self, max_bytes: int) -> "Corpus":
        """The first ``max_bytes`` of the corpus, files in order (the last one cut short, later ones
        left out): a smaller evaluation set for slow coders. Its sha256 differs from the whole's."""
        if max_bytes <= 0 or max_bytes >= self.n_bytes:
            return self
        members, left = [], max_bytes
        for m in self.members:
            if left <= 0:
                break
            members.append(m if len(m.data) <= left else Member(m.name, m.data[:left]))
            left -= len(m.data)
        return Corpus(self.name, self.split, tuple(members), self.source)


@dataclass(frozen=True)
class CorpusSpec:
    """A named corpus: member name -> path stem under the data folder (suffixes optional)."""

    name: str
    description: str
    files: dict[str, str] = field(default_factory=dict)  # member -> stem (plain files)
    archive: str = ""  # stem of a tar archive holding the members (or an extracted folder)
    official: dict[str, tuple[str, ...]] = field(default_factory=dict)  # split -> member names
    kind: str = "text"


CORPORA: dict[str, CorpusSpec] = {
    s.name: s
    for s in [
        CorpusSpec("enwik8", "first 4,154,064 bytes of enwik8 (Wikipedia XML, Hutter Prize)",
                   files={"enwik8.head4154064": "enwik8/enwik8.head4154064"}),
        CorpusSpec("canterbury", "Canterbury corpus, 11 files (text, code, binary)",
                   archive="canterbury/cantrbry.tar", kind="mixed"),
        CorpusSpec("calgary", "Calgary corpus, 18 files (text, code, binary)",
                   archive="calgary/calgary.tar", kind="mixed"),
        CorpusSpec("canterbury-large", "Canterbury large corpus: bible.txt, world192.txt (no E.coli)",
                   files={"bible.txt": "canterbury/large/bible.txt", "world192.txt": "canterbury/large/world192.txt"}),
        CorpusSpec("silesia", "Silesia corpus, 7 of 12 files (dickens, mr, nci, ooffice, osdb, reymont, xml)",
                   files={n: f"silesia/{n}" for n in ("dickens", "mr", "nci", "ooffice", "osdb", "reymont", "xml")},
                   kind="mixed"),
        CorpusSpec("ptb", "Penn Treebank, Mikolov word-level files (official train/valid/test)",
                   files={n: f"ptb/{n}" for n in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")},
                   official={"train": ("ptb.train.txt",), "val": ("ptb.valid.txt",), "test": ("ptb.test.txt",)}),
        CorpusSpec("ptb-char", "Penn Treebank, character-level files (official train/valid/test)",
                   files={n: f"ptb/{n}" for n in ("ptb.char.train.txt", "ptb.char.valid.txt", "ptb.char.test.txt")},
                   official={"train": ("ptb.char.train.txt",), "val": ("ptb.char.valid.txt",),
                             "test": ("ptb.char.test.txt",)}),
        CorpusSpec("tinyshakespeare", "Tiny Shakespeare (karpathy/char-rnn), 1.1 MB",
                   files={"input.txt": "tinyshakespeare/input.txt"}),
        CorpusSpec("wikitext-2", "WikiText-2 v1 tokenized, valid and test only (no train split here)",
                   files={n: f"wikitext-2/{n}" for n in ("wiki.valid.tokens", "wiki.test.tokens")},
                   official={"train": (), "val": ("wiki.valid.tokens",), "test": ("wiki.test.tokens",)}),
        CorpusSpec("tinystories", "TinyStories validation split, first ~1k stories (794 KB)",
                   files={"tinystories_validation_head.txt": "tinystories/tinystories_validation_head.txt"}),
        CorpusSpec("icelandic", "Icelandic family sagas (Íslendinga sögur, SagaDB), 5.4 MB UTF-8 text",
                   files={"islendingasogur_sagadb.txt": "icelandic/islendingasogur_sagadb.txt"}),
        CorpusSpec(BUILTIN, "built in: Python stdlib texts (pydoc topics + 3 modules); no data folder needed",
                   files={Path(f).name: f for f in BUILTIN_FILES}),
    ]
}
ALIASES = {"sagas": "icelandic", "enwik8-head": "enwik8", "large": "canterbury-large", "shakespeare": "tinyshakespeare"}


# -- reading ------------------------------------------------------------------------------------
def _limit() -> int:
    """Corpus files are read into memory: a compressed file may expand to at most half of the
    memory available (a decompression bomb is an error, not an out-of-memory kill)."""
    from .environment import available_memory

    avail = available_memory()
    return max(1 << 30, avail // 2) if avail else 1 << 34


def _decompress(path: Path, raw: bytes) -> bytes:
    name = path.name.lower()
    if name.endswith(".xz"):
        d = lzma.LZMADecompressor()
    elif name.endswith(".gz"):
        d = zlib.decompressobj(wbits=47)  # gzip or zlib header
    elif name.endswith(".bz2"):
        d = bz2.BZ2Decompressor()
    else:
        return raw
    limit = _limit()
    try:
        out = d.decompress(raw, limit + 1)
    except (lzma.LZMAError, OSError, EOFError, ValueError, zlib.error) as err:
        raise CorpusError(f"cannot decompress {path}: {err}") from None
    if len(out) > limit:
        raise CorpusError(f"{path} decompresses to more than {limit:,} bytes, over half the memory available")
    if not d.eof:
        raise CorpusError(f"cannot decompress {path}: the compressed stream is truncated")
    return out


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _read_archive(path: Path) -> list[Member]:
    """Regular-file members of a tar archive, sorted by name; nothing is written to disk."""
    try:
        with tarfile.open(path, "r:*") as tar:
            members = []
            for info in tar.getmembers():
                if info.isfile():
                    fh = tar.extractfile(info)
                    members.append(Member(info.name.lstrip("./"), fh.read() if fh else b""))
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as err:
        raise CorpusError(f"cannot read archive {path}: {err}") from None
    return sorted(members, key=lambda m: m.name)


def read_file(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CorpusError(f"cannot read {path}: {err.strerror}") from None
    return _decompress(path, raw)


def read_path(path: Path) -> list[Member]:
    """A file (decompressed), an archive (its members) or a folder (every visible file, recursively)."""
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise CorpusError(f"folder {path} holds no files")
        out = []
        for p in files:
            rel = p.relative_to(path).as_posix()
            if _is_archive(p):
                out += [Member(f"{rel}/{m.name}", m.data) for m in _read_archive(p)]
            else:
                out.append(Member(_strip_suffix(rel), read_file(p)))
        return out
    if not path.exists():
        raise CorpusError(f"no such file or folder: {path}")
    if _is_archive(path):
        return _read_archive(path)
    return [Member(_strip_suffix(path.name), read_file(path))]


def _strip_suffix(name: str) -> str:
    for suf in STREAM_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def _find(data_dir: Path, stem: str) -> Path | None:
    for suffix in ("", *STREAM_SUFFIXES):
        p = data_dir / (stem + suffix)
        if p.is_file():
            return p
    return None


def _find_archive(data_dir: Path, stem: str) -> Path | None:
    base = stem[: -len(".tar")] if stem.endswith(".tar") else stem
    for cand in (base + ".tar.gz", base + ".tgz", base + ".tar.xz", base + ".tar.bz2", base + ".tar", base):
        p = data_dir / cand
        if p.exists():
            return p
    return None


def _builtin_members() -> list[Member]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out = [Member(Path(f).name, (stdlib / f).read_bytes()) for f in BUILTIN_FILES if (stdlib / f).is_file()]
    if not out:
        raise CorpusError(f"built-in corpus {BUILTIN}: none of {', '.join(BUILTIN_FILES)} found in {stdlib}")
    return out


def available(spec: CorpusSpec, data_dir: Path) -> bool:
    if spec.name == BUILTIN:
        return True
    if spec.archive:
        return _find_archive(data_dir, spec.archive) is not None
    return all(_find(data_dir, stem) for stem in spec.files.values())


def _named_members(spec: CorpusSpec, data_dir: Path) -> list[Member]:
    if spec.name == BUILTIN:
        return _builtin_members()
    if spec.archive:
        path = _find_archive(data_dir, spec.archive)
        if path is None:
            raise _missing(spec, data_dir, spec.archive + ".gz")
        return read_path(path)
    members = []
    for member, stem in spec.files.items():
        path = _find(data_dir, stem)
        if path is None:
            raise _missing(spec, data_dir, stem)
        members.append(Member(member, read_file(path)))
    return members


def _missing(spec: CorpusSpec, data_dir: Path, stem: str) -> CorpusError:
    from .fetch import SOURCES

    how = (f"run `compbench data fetch {spec.name}`" if spec.name in SOURCES
           else "copy it there (it has no public download compbench can verify)")
    return CorpusError(
        f"corpus {spec.name!r} not found: no {stem}[.xz|.gz|.bz2] under {data_dir}. "
        f"Point --data-dir or COMPBENCH_DATA at your data folder, or {how}."
    )


# -- splitting ----------------------------------------------------------------------------------
def tail_split(data: bytes, split: str) -> bytes:
    """The documented tail rule: test = last min(1e6, n//4) bytes, val = min(1e5, n//20) before it."""
    n = len(data)
    n_test = min(TEST_BYTES, n // 4)
    n_val = min(VAL_BYTES, n // 20)
    test_start = n - n_test
    val_start = test_start - n_val
    return {"all": data, "train": data[:val_start], "val": data[val_start:test_start], "test": data[test_start:]}[split]


def _apply_split(spec: CorpusSpec | None, members: list[Member], split: str) -> list[Member]:
    if split == "all":
        return members
    if spec is not None and spec.official:
        names = spec.official.get(split, ())
        if not names:
            raise CorpusError(f"corpus {spec.name!r} has no {split} split in this data folder")
        return [m for m in members if m.name in names]
    return [Member(m.name, tail_split(m.data, split)) for m in members]


# -- entry point --------------------------------------------------------------------------------
def resolve_name(name: str) -> str:
    return ALIASES.get(name.lower(), name.lower())


def load_corpus(name: str, split: str = "all", data_dir: str | Path | None = None) -> Corpus:
    """Load a named corpus (``enwik8``), one of its files (``silesia/dickens``) or any path."""
    if split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
    key = resolve_name(name)
    head, _, member = key.partition("/")
    spec = CORPORA.get(head)
    # Named corpora win over same-named folders in the working directory; write ./name for a path.
    if spec is None or name.startswith(("/", ".", "~")):
        path = Path(name).expanduser()
        if not path.exists():
            known = ", ".join(CORPORA)
            raise CorpusError(f"unknown corpus {name!r}: not a named corpus ({known}) and no such file or folder")
        members = read_path(path)
        return Corpus(str(path), split, tuple(_apply_split(None, members, split)), source=str(path.resolve()))
    members = _named_members(spec, data_dir)
    if member:
        chosen = [m for m in members if m.name == member or Path(m.name).name == member]
        if not chosen:
            raise CorpusError(f"corpus {spec.name!r} has no file {member!r}; it has {', '.join(m.name for m in members)}")
        if spec.official and split != "all":
            raise CorpusError(f"{key} is one file of {spec.name}, which has official splits: "
                              f"use --corpus {spec.name} --split {split}")
        return Corpus(f"{spec.name}/{member}", split, tuple(_apply_split(None, chosen, split)), source=str(data_dir))
    selected = _apply_split(spec, members, split)
    source = "python stdlib" if spec.name == BUILTIN else str(data_dir)
    return Corpus(spec.name, split, tuple(selected), source=source)
