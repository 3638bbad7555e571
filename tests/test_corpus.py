"""Corpora: named, path and built-in; transparent decompression; deterministic, disjoint splits."""

import bz2
import gzip
import io
import lzma
import tarfile

import pytest

from compbench.corpus import CORPORA, load_corpus, tail_split
from compbench.errors import CorpusError


def test_tail_split_is_disjoint_and_complete():
    for n in (0, 1, 10, 1000, 3_999_999, 4_154_064, 10_000_000):
        data = bytes(i % 251 for i in range(n))
        parts = [tail_split(data, s) for s in ("train", "val", "test")]
        assert b"".join(parts) == data
        assert len(parts[2]) == min(1_000_000, n // 4)
        assert len(parts[1]) == min(100_000, n // 20)


def test_builtin_corpus_needs_no_data_folder(tmp_path):
    corpus = load_corpus("pystdlib", data_dir=tmp_path / "empty")
    assert corpus.n_bytes > 500_000
    assert [m.name for m in corpus.members][0] == "topics.py"
    test = load_corpus("pystdlib", "test", data_dir=tmp_path)
    assert all(len(t.data) == min(1_000_000, len(m.data) // 4) for t, m in zip(test.members, corpus.members))


def test_any_file_or_folder_and_compressed_files_are_read_transparently(tmp_path):
    text = b"compbench corpus text\n" * 500
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "plain.txt").write_bytes(text)
    (tmp_path / "d" / "a.xz").write_bytes(lzma.compress(text))
    (tmp_path / "d" / "b.gz").write_bytes(gzip.compress(text))
    (tmp_path / "d" / "c.bz2").write_bytes(bz2.compress(text))
    (tmp_path / "d" / ".hidden").write_bytes(b"skip me")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("inner/member.txt")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    (tmp_path / "d" / "e.tar.gz").write_bytes(buf.getvalue())
    corpus = load_corpus(str(tmp_path / "d"))
    assert [m.name for m in corpus.members] == ["a", "b", "c", "e.tar.gz/inner/member.txt", "plain.txt"]
    assert all(m.data == text for m in corpus.members)
    single = load_corpus(str(tmp_path / "d" / "a.xz"))
    assert single.members[0].data == text and single.members[0].name == "a"
    assert len(corpus.sha256) == 64 and corpus.sha256 != single.sha256


def test_bad_paths_and_names_give_clear_errors(tmp_path):
    with pytest.raises(CorpusError, match="unknown corpus 'nosuch'"):
        load_corpus("nosuch")
    (tmp_path / "bad.xz").write_bytes(b"not xz at all")
    with pytest.raises(CorpusError, match="cannot decompress"):
        load_corpus(str(tmp_path / "bad.xz"))
    with pytest.raises(CorpusError, match="not found.*COMPBENCH_DATA.*compbench data fetch enwik8"):
        load_corpus("enwik8", data_dir=tmp_path)
    with pytest.raises(CorpusError, match="no public download"):
        load_corpus("icelandic", data_dir=tmp_path)
    with pytest.raises(CorpusError, match="unknown split"):
        load_corpus("pystdlib", "holdout")


def test_named_corpora_match_published_checksums(data_path):
    """The raw files compbench reads equal the provenance README's sha256 values."""
    expected = {}
    for line in (data_path / "SHA256SUMS.raw").read_text().splitlines():
        digest, rel = line.split()
        expected[rel] = digest
    enwik8 = load_corpus("enwik8", data_dir=data_path)
    assert enwik8.members[0].sha256 == expected["enwik8/enwik8.head4154064"]
    for m in load_corpus("canterbury", data_dir=data_path).members:
        assert m.sha256 == expected[f"canterbury/cantrbry/{m.name}"]
    for m in load_corpus("calgary", data_dir=data_path).members:
        assert m.sha256 == expected[f"calgary/calgary/{m.name}"]


def test_every_named_corpus_loads_with_its_splits(data_path):
    for name, spec in CORPORA.items():
        corpus = load_corpus(name, data_dir=data_path)
        assert corpus.n_bytes > 0, name
        if spec.official:
            test = load_corpus(name, "test", data_dir=data_path)
            assert [m.name for m in test.members] == list(spec.official["test"])


def test_official_and_tail_splits_on_real_corpora(data_path):
    ptb = load_corpus("ptb", "test", data_dir=data_path)
    assert ptb.n_bytes == 449_945
    enwik8 = load_corpus("enwik8", "test", data_dir=data_path)
    assert enwik8.n_bytes == 1_000_000
    dickens = load_corpus("silesia/dickens", "test", data_dir=data_path)
    assert dickens.name == "silesia/dickens" and dickens.n_bytes == 1_000_000
    with pytest.raises(CorpusError, match="use --corpus ptb --split test"):
        load_corpus("ptb/ptb.test.txt", "test", data_dir=data_path)
    with pytest.raises(CorpusError, match="no train split"):
        load_corpus("wikitext-2", "train", data_dir=data_path)


def test_a_truncated_or_bomb_corpus_file_is_a_clear_error(tmp_path, monkeypatch):
    from compbench import corpus as corpus_mod

    (tmp_path / "cut.txt.xz").write_bytes(lzma.compress(b"some text " * 100)[:-8])
    with pytest.raises(CorpusError, match="truncated"):
        load_corpus(str(tmp_path / "cut.txt.xz"))
    (tmp_path / "bomb.bin.gz").write_bytes(gzip.compress(bytes(5_000_000)))
    monkeypatch.setattr(corpus_mod, "_limit", lambda: 1_000_000)  # as if memory were short
    with pytest.raises(CorpusError, match="decompresses to more than 1,000,000 bytes"):
        load_corpus(str(tmp_path / "bomb.bin.gz"))
