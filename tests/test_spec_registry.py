"""Coder specs and the registry: parsing, canonical forms, groups, plug-ins and clear errors."""

from dataclasses import dataclass

import pytest

from compbench import registry
from compbench.coder import Coder
from compbench.errors import RegistryError, SpecError
from compbench.spec import parse_spec, split_specs


def test_spec_parsing_with_quotes_and_options():
    assert split_specs("zstd:level=22:long=27, lzma:preset=9e,,") == ["zstd:level=22:long=27", "lzma:preset=9e"]
    assert parse_spec("zstd:level=22:long=27") == ("zstd", {"level": "22", "long": "27"})
    name, opts = parse_spec("external:compress='xz -9 -c {in}':decompress=\"xz -dc\"")
    assert opts == {"compress": "xz -9 -c {in}", "decompress": "xz -dc"}
    assert split_specs("external:compress='a,b:c',zlib") == ["external:compress='a,b:c'", "zlib"]


def test_canonical_spec_round_trips_through_the_parser():
    for spec in ("zstd:level=3:long=27", "lzma:preset=6", "brotli:mode=text", "ppmd:order=4"):
        coder = registry.make_coder(spec)
        again = registry.make_coder(coder.spec)
        assert again.options == coder.options
        assert registry.make_coder(coder.header_spec).options == coder.options
    assert registry.make_coder("lzma").header_spec == "lzma"


@pytest.mark.parametrize("spec,message", [
    ("nosuch", "unknown coder 'nosuch'"),
    ("zstd:level=99", "level=99 is out of range"),
    ("zstd:lvl=3", "unknown option"),
    ("zstd:level=abc", "not a valid int"),
    ("zstd:level", "not key=value"),
    ("lzma:preset=10", "preset"),
    ("brotli:mode=fast", "mode"),
    ("external:compress='xz", "unbalanced"),
    ("external:compress=xz", "decompress"),
    ("zstd:level=1:level=2", "given twice"),
])
def test_bad_specs_give_clear_errors(spec, message):
    with pytest.raises(SpecError, match=message):
        registry.make_coder(spec)


def test_groups_expand_in_order_without_duplicates():
    assert registry.expand("classical") == ["zlib", "bz2", "lzma", "zstd", "brotli", "ppmd"]
    assert registry.expand("identity,classical,zlib") == ["identity", "zlib", "bz2", "lzma", "zstd", "brotli", "ppmd"]
    assert "external" not in registry.expand("all")
    with pytest.raises(SpecError, match="takes no options"):
        registry.expand("classical:level=3")
    with pytest.raises(SpecError, match="no coders"):
        registry.expand(" , ")


@pytest.fixture
def fake_coder():
    @registry.register_coder("fake-rot", groups=("fakes",))
    class RotCoder(Coder):
        description = "adds 1 to every byte (test fake)"

        @dataclass(frozen=True)
        class Options:
            shift: int = 1

        def encode_body(self, data, context=b""):
            return bytes((b + self.options.shift) % 256 for b in data)

        def decode_body(self, body, size, context=b""):
            return bytes((b - self.options.shift) % 256 for b in body)

    try:
        yield RotCoder
    finally:
        registry.unregister_coder("fake-rot")


def test_registered_coder_is_usable_everywhere(fake_coder):
    assert "fake-rot" in registry.coders()
    assert registry.expand("fakes") == ["fake-rot"]
    coder = registry.make_coder("fake-rot:shift=3")
    assert coder.decode(coder.encode(b"hello")) == b"hello"


def test_duplicate_name_names_both_sources(fake_coder):
    class Other(Coder):
        def encode_body(self, data, context=b""):
            return data

        def decode_body(self, body, size, context=b""):
            return body

    with pytest.raises(RegistryError, match="registered twice"):
        registry.register_coder("fake-rot")(Other)


def test_entry_point_plugins_load_unless_disabled(monkeypatch, fake_coder):
    class EP:
        name, value = "ep-coder", "pkg.mod:EPCoder"

        def load(self):
            class EPCoder(fake_coder):
                pass
            return EPCoder

    class BrokenEP:
        name, value = "broken", "pkg.broken:X"

        def load(self):
            raise ImportError("no module named pkg.broken")

    monkeypatch.setattr(registry, "entry_points", lambda group: [EP(), BrokenEP()])
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setenv("COMPBENCH_NO_PLUGINS", "1")
    registry.load()
    assert "ep-coder" not in registry.coders()
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.delenv("COMPBENCH_NO_PLUGINS")
    try:
        registry.load()  # the broken plug-in only warns
        assert registry.source("ep-coder") == "entry point pkg.mod:EPCoder"
    finally:
        registry.unregister_coder("ep-coder")


def test_an_option_can_hold_another_coder_spec_in_parentheses_at_any_depth():
    from compbench.spec import CoderSpec, locator

    @registry.register_coder("fake-wrap")
    class WrapCoder(Coder):
        @dataclass(frozen=True)
        class Options:
            inner: CoderSpec = CoderSpec("identity")
            store: CoderSpec = CoderSpec("identity")
            where: str = locator("")

        def encode_body(self, data, context=b""):
            return data

        def decode_body(self, body, size, context=b""):
            return body

    try:
        c = registry.make_coder("fake-wrap:inner=(zstd:level=19:long=27):store=(fake-wrap:inner=(lzma:preset=6)):where=/x")
        assert c.options.inner == "zstd:level=19:long=27"  # checked and canonical (compact)
        assert c.options.store == "fake-wrap:inner=(lzma:preset=6)"  # nested twice
        assert c.header_spec == "fake-wrap:inner=(zstd:level=19:long=27):store=(fake-wrap:inner=(lzma:preset=6))"
        again = registry.make_coder(c.header_spec)  # the header form parses back to the same format options
        assert (again.options.inner, again.options.store, again.options.where) == (c.options.inner, c.options.store, "")
        assert split_specs("fake-wrap:inner=(zstd:level=3),lzma") == ["fake-wrap:inner=(zstd:level=3)", "lzma"]
        with pytest.raises(SpecError, match="inner.*level=99 is out of range"):
            registry.make_coder("fake-wrap:inner=(zstd:level=99)")
        with pytest.raises(SpecError, match="unbalanced"):
            registry.make_coder("fake-wrap:inner=(zstd:level=3")
    finally:
        registry.unregister_coder("fake-wrap")
