from vethlab.cli.words import natural_key, plural


def test_plural() -> None:
    assert [plural(1, "link"), plural(2, "link"), plural(0, "change")] == ["1 link", "2 links", "0 changes"]
    assert [plural(3, "address"), plural(1, "hosts"), plural(2, "hosts")] == \
        ["3 addresses", "1 hosts file", "2 hosts files"]


def test_natural_order() -> None:
    names = ["h10", "h2", "h100", "h1", "spine2", "leaf10", "leaf9", "a"]
    assert sorted(names, key=natural_key) == ["a", "h1", "h2", "h10", "h100", "leaf9", "leaf10", "spine2"]
