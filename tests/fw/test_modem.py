"""Modem driver core (sans-IO): every result code and CONNECT form, split at every byte."""

import fwtest
from dialgate import modem, modem_profiles

INIT = ["AT&F", "ATE0V1&C1&D2"]
DIAL = "ATDT5551234"


def converse(script, piece=1, init=None, dial=DIAL):
    """Run a Call against `script`: a list of (command we must send, modem output
    or None for silence). Output is fed `piece` octets at a time. Returns the Call."""
    call = modem.Call(INIT if init is None else init, dial, 1000, 30000)
    send = call.start()
    i = 0
    while call.outcome is None:
        if call.want_reset:
            send = call.reset_done()
        want, out = script[i]
        i += 1
        if send is None or send != want.encode() + b"\r":
            raise AssertionError("step %d: sent %r, script wants %r" % (i, send, want))
        send = None
        if out is None:
            send = call.expired()
            continue
        j = 0
        while j < len(out) and call.outcome is None:
            r = call.receive(out[j : j + piece])
            j += piece
            if r is not None:
                send = r
    if i != len(script):
        raise AssertionError("script has %d steps, call used %d" % (len(script), i))
    return call


def v1(*lines):
    return b"".join([b"\r\n" + x + b"\r\n" for x in lines])


def wake_v1(dial_result):
    # echo on at first (the modem's default E1): "AT" comes back before OK
    return [
        ("AT", b"AT\r" + v1(b"OK")),
        ("AT&F", b"AT&F\r" + v1(b"OK")),
        ("ATE0V1&C1&D2", b"ATE0V1&C1&D2\r" + v1(b"OK")),
        (DIAL, dial_result),
    ]


def every_piece(script, check):
    total = sum([len(o or b"") for _, o in script])
    for piece in range(1, total + 2):
        check(converse(script, piece))


CONNECT_FORMS = [
    (b"CONNECT", 0),
    (b"CONNECT 115200", 115200),
    (b"CONNECT 33600/ARQ/V34/LAPM/V42BIS", 33600),
    (b"CONNECT 64000", 64000),
    (b"CONNECT 28800/V42BIS", 28800),
    (b"CONNECT 1200/75", 1200),
    (b"connect 9600", 9600),
]


def test_every_connect_form_at_every_split():
    for line, speed in CONNECT_FORMS:

        def check(c, line=line, speed=speed):
            assert c.outcome == modem.CONNECTED, c.outcome
            assert c.speed == speed, (line, c.speed)
            assert c.connect == line.decode()

        every_piece(wake_v1(v1(line)), check)


def test_every_failure_result_at_every_split():
    for line, outcome in [
        (b"BUSY", modem.BUSY),
        (b"NO CARRIER", modem.NO_CARRIER),
        (b"NO DIALTONE", modem.NO_DIALTONE),
        (b"NO DIAL TONE", modem.NO_DIALTONE),
        (b"NO ANSWER", modem.NO_ANSWER),
        (b"ERROR", modem.ERROR),
    ]:

        def check(c, outcome=outcome):
            assert c.outcome == outcome, (c.outcome, outcome)
            assert c.speed == 0

        every_piece(wake_v1(v1(line)), check)


def test_numeric_result_codes_v0():
    # V0: "<code>\r", no LF (V.250 §5.7.1); every code of the table
    for num in modem.NUMERIC:
        name, speed = modem.NUMERIC[num]
        if name in ("OK", "RING"):
            continue
        out = ("%d\r" % num).encode()
        script = [("AT", b"0\r"), ("AT&F", b"0\r"), ("ATE0V1&C1&D2", b"0\r"), (DIAL, out)]

        def check(c, name=name, speed=speed):
            if name == "CONNECT":
                assert c.outcome == modem.CONNECTED and c.speed == speed, (name, c.speed)
            else:
                assert c.outcome == modem._FINAL_DIAL[name], (name, c.outcome)

        every_piece(script, check)


def test_ring_is_ignored():
    out = v1(b"RING") + b"\r\nRI" + b"NG\r\n" + v1(b"CONNECT 33600/ARQ/V34/LAPM/V42BIS")
    # "2" is RING in numeric form: also ignored
    script = [("AT", v1(b"RING") + v1(b"OK")), ("AT&F", v1(b"OK")), ("ATE0V1&C1&D2", b"2\r" + v1(b"OK")), (DIAL, out)]

    def check(c):
        assert c.outcome == modem.CONNECTED and c.speed == 33600
        assert c.rings >= 3

    every_piece(script, check)


def test_garbage_and_information_text_are_ignored():
    noise = b"\x00\xff\x7e~}#\x81garbage\r" + b"x" * 300 + b"\n" + v1(b"CARRIER 33600", b"PROTOCOL: LAPM")
    script = wake_v1(noise + v1(b"CONNECT 33600/ARQ/V34/LAPM/V42BIS"))
    every_piece(script, lambda c: c.outcome == modem.CONNECTED and c.speed == 33600 or _fail(c))


def _fail(c):
    raise AssertionError("outcome %s %s" % (c.outcome, c.detail))


def test_silence_after_dial_is_its_own_outcome():
    c = converse(wake_v1(None))
    assert c.outcome == modem.SILENT
    assert DIAL in c.detail


def test_error_to_an_init_string_names_the_command():
    c = converse([("AT", v1(b"OK")), ("AT&F", v1(b"OK")), ("ATE0V1&C1&D2", v1(b"ERROR"))])
    assert c.outcome == modem.ERROR
    assert "ATE0V1&C1&D2" in c.detail


def test_ok_to_a_dial_is_an_error():
    c = converse(wake_v1(v1(b"OK")))
    assert c.outcome == modem.ERROR


def test_stray_no_carrier_during_init_is_ignored():
    c = converse([("AT", v1(b"NO CARRIER", b"OK")), ("AT&F", v1(b"OK")), ("ATE0V1&C1&D2", v1(b"OK")),
                  (DIAL, v1(b"CONNECT 64000"))])
    assert c.outcome == modem.CONNECTED and c.speed == 64000


def test_deaf_modem_is_reset_then_answers():
    script = [("AT", None), ("AT", None), ("ATZ", v1(b"OK"))] + wake_v1(v1(b"CONNECT 33600"))[1:]
    c = converse(script)
    assert c.outcome == modem.CONNECTED and c.reset_tried


def test_dead_modem_is_reported():
    c = converse([("AT", None), ("AT", None), ("ATZ", None), ("AT", None), ("AT", None)])
    assert c.outcome == modem.NO_MODEM
    assert c.reset_tried


def test_silent_init_command():
    c = converse([("AT", v1(b"OK")), ("AT&F", None)])
    assert c.outcome == modem.SILENT and "AT&F" in c.detail


def test_classify_edge_cases():
    assert modem.classify(b"CONNECTED")[0] == "OTHER"
    assert modem.classify(b"CONNECT/ARQ") == ("CONNECT", 0, "CONNECT/ARQ")
    assert modem.classify(b"99")[0] == "OTHER"
    assert modem.classify(b"\xff\xfe")[0] == "OTHER"
    assert modem.classify(b"  OK  ")[0] == "OK"
    assert modem.classify(b"ATDT123")[0] == "ECHO"
    assert modem.classify(b"CONNECT 99999999999")[1] == 0


def test_backoff_doubles_up_to_the_cap():
    assert [modem.backoff_ms(i, 1000, 5000) for i in (1, 2, 3, 4, 5)] == [1000, 2000, 4000, 5000, 5000]
    assert modem.backoff_ms(1, 0, 0) == 0


def _settings(over):
    return modem_profiles.ModemSettings(fwtest.host_config(over))


def test_profiles():
    a = _settings({"modem.profile": "analog", "modem.number": "5551234"})
    assert a.dial == "ATDT5551234"
    assert a.init[0] == "AT&F" and "&C1&D2" in a.init[1] and a.init[-1].startswith("ATX4")
    p = _settings({"modem.profile": "analog", "modem.dial": "ATDP0W", "modem.number": "555,1234"})
    assert p.dial == "ATDP0W555,1234"
    i = _settings({"modem.profile": "isdn", "modem.number": "0301234567"})
    assert i.dial == "ATD0301234567"
    g = _settings({"modem.profile": "gsm", "modem.apn": "internet.example"})
    assert g.dial == "ATD*99#"
    assert g.init[-1] == 'AT+CGDCONT=1,"IP","internet.example"'
    own = _settings({"modem.init": ["ATZ", "AT&C1&D2"], "modem.profile": "gsm", "modem.apn": "a"})
    assert own.init == ["ATZ", "AT&C1&D2", 'AT+CGDCONT=1,"IP","a"']
    assert own.redial == 3 and own.guard_ms == 1100 and own.connect_ms == 90000
