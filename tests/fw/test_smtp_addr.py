"""smtp_addr: path parsing (RFC 5321 §4.1.2) and the relay test, case by case."""

import fwtest
from dialgate.smtp_addr import BadPath, needs_relay, parse_path, valid_domain


def bad(arg, keyword="TO:"):
    try:
        parse_path(arg, keyword)
    except BadPath as e:
        return e.reply
    raise AssertionError("accepted %r" % arg)


def test_parse_paths_and_parameters():
    a, params = parse_path(b"FROM:<Alice@Office.Test> SIZE=100 BODY=8BITMIME", "FROM:")
    assert (a.local, a.domain, a.clean) == ("Alice", "Office.Test", True)
    assert params == [("SIZE", "100"), ("BODY", "8BITMIME")]
    a, params = parse_path(b"from: <>", "FROM:")
    assert a is None and params == []
    a, _ = parse_path(b"TO:<@a.example,@b.example:joe@c.example>", "TO:")
    assert (a.route, a.text(), a.clean) == ("@a.example,@b.example", "joe@c.example", True)
    a, _ = parse_path(b'TO:<"john \\"q\\" smith"@office.test>', "TO:")
    assert a.plain == 'john "q" smith' and a.clean and a.domain == "office.test"
    a, _ = parse_path(b'TO:<"a>b"@office.test>', "TO:")  # ">" inside quotes does not end the path
    assert a.plain == "a>b"
    a, _ = parse_path(b"TO:<Postmaster>", "TO:")
    assert a.domain is None and a.local == "Postmaster"
    a, _ = parse_path(b"TO:<x@[192.0.2.1]>", "TO:")
    assert a.literal and a.clean


def test_bad_paths():
    assert bad(b"TO:x@y.example") == b"501 5.5.4 Syntax: TO:<address>\r\n"
    assert bad(b"TO:<x@y.example") == b"501 5.5.4 Syntax: TO:<address>\r\n"
    assert bad(b"TO:<x@y.example>junk") == b"501 5.5.4 Syntax: TO:<address>\r\n"
    assert bad(b"FROM:<x@y.example>", "TO:") == b"501 5.5.4 Syntax: TO:<address>\r\n"
    assert bad(b"TO:<@a.example>") == b"501 5.1.3 Bad address syntax\r\n"
    assert bad(b"TO:<" + b"l" * 65 + b"@y.example>") == b"501 5.1.3 Bad address syntax\r\n"  # §4.5.3.1.1
    assert bad(b"TO:<x@" + b"d" * 252 + b".example>") == b"501 5.1.3 Path too long\r\n"  # §4.5.3.1.3
    assert bad(b"TO:<j\xc3\xb6rg@y.example>") == b"553 5.6.7 Only ASCII addresses are accepted here\r\n"
    assert bad(b"TO:<x@y.example>\x00") == b"553 5.6.7 Only ASCII addresses are accepted here\r\n"


def test_valid_domain():
    for d in ("office.test", "a-b.example", "x1.y2.z3"):
        assert valid_domain(d), d
    for d in ("", "office.test.", ".office.test", "a..b", "-a.example", "a-.example", "a_b.example", "a" * 64 + ".x"):
        assert not valid_domain(d), d


def test_needs_relay():
    cfg = fwtest.host_config()
    local = ["alice@office.test", "Alice@OFFICE.TEST", '"john smith"@office.test', "a.b+c@office.test", "postmaster"]
    for text in local:
        a, _ = parse_path(b"TO:<" + text.encode() + b">", "TO:")
        assert not needs_relay(cfg, a), text
    relay = [
        "x@example.net",
        "x%example.net@office.test",
        "example.net!x@office.test",
        '"x@example.net"@office.test',
        "x@[127.0.0.1]",
        "x@office.test.",
        "x..y@office.test",
        "x@sub.office.test",
        "nobody",
        "x:y@office.test",
    ]
    for text in relay:
        a, _ = parse_path(b"TO:<" + text.encode() + b">", "TO:")
        assert needs_relay(cfg, a), text
