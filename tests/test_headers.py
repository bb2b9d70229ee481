"""Headers as a parser hands them over: decoded only when first looked at, and then like any other."""

from __future__ import annotations

from protocols import Headers

RAW = [(b"host", b"example.com"), (b"x-name", b"caf\xe9"), (b"accept", b"a"), (b"accept", b"b")]
DECODED = [("host", "example.com"), ("x-name", "café"), ("accept", "a"), ("accept", "b")]


def test_parsed_headers_read_as_latin1_text():
    headers = Headers._parsed(list(RAW))
    assert headers.get("X-Name") == "café"
    assert headers.get_all("accept") == ["a", "b"]
    assert list(headers) == DECODED
    assert headers == Headers._trusted(list(DECODED))


def test_every_first_use_decodes():
    assert "HOST" in Headers._parsed(list(RAW))
    assert len(Headers._parsed(list(RAW))) == 4
    assert Headers._parsed(list(RAW)).items() == DECODED
    assert Headers._parsed(list(RAW)).copy().items() == DECODED
    assert Headers._parsed(list(RAW)).keys() == ["host", "x-name", "accept"]
    assert "café" in repr(Headers._parsed(list(RAW)))


def test_parsed_headers_can_be_changed_like_others():
    headers = Headers._parsed(list(RAW))
    headers["accept"] = "c"
    headers.add("x-more", "1")
    del headers["host"]
    assert list(headers) == [("x-name", "café"), ("accept", "c"), ("x-more", "1")]


def test_a_missing_attribute_is_still_an_attribute_error():
    headers = Headers._parsed(list(RAW))
    try:
        headers.no_such_thing  # noqa: B018
    except AttributeError:
        pass
    else:
        raise AssertionError("expected AttributeError")
