"""Config: merge over the board profile, and one clear error per bad key."""

import json

import fwtest
from dialgate import config, config_edit


def _write(d, obj):
    p = d + "/c.json"
    with open(p, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def _err(obj, board="host"):
    d = fwtest.tempdir("cfg")
    try:
        config.load(_write(d, obj), board)
    except config.ConfigError as e:
        return str(e)
    finally:
        fwtest.rmtree(d)
    raise AssertionError("no ConfigError for %r" % (obj,))


def test_host_profile_loads_with_defaults():
    d = fwtest.tempdir("cfg")
    try:
        cfg = config.load(_write(d, {"profile": "host"}))
    finally:
        fwtest.rmtree(d)
    assert cfg["hostname"] == "gw.office.test"
    assert cfg["domains"] == ["office.test"]
    assert cfg.addrs("smtp.listen") == [("127.0.0.1", 2525)]
    assert cfg.addrs("pop3.listen") == [("127.0.0.1", 1110)]
    assert cfg.addrs("console.listen") == [("127.0.0.1", 2323)]
    assert cfg["link.type"] == "emulated"
    assert cfg.is_lan("127.0.0.1") and not cfg.is_lan("127.0.0.2")
    assert cfg.is_local_domain("OFFICE.test.") and not cfg.is_local_domain("isp.test")


def test_user_values_override_profile():
    d = fwtest.tempdir("cfg")
    try:
        cfg = config.load(_write(d, {"profile": "host", "smtp": {"listen": ["127.0.0.1:2600"]}, "lan": ["10.0.0.0/8"]}))
    finally:
        fwtest.rmtree(d)
    assert cfg["smtp.listen"] == ["127.0.0.1:2600"]
    assert cfg["pop3.listen"] == ["127.0.0.1:1110"]
    assert cfg.is_lan("10.1.2.3") and not cfg.is_lan("11.0.0.1")


def test_every_board_profile_is_valid():
    for b in ("host", "rpi", "pico_w", "pico2_w", "esp32", "esp32s3"):
        d = fwtest.tempdir("cfg")
        try:
            cfg = config.load(_write(d, {}), b)
        finally:
            fwtest.rmtree(d)
        assert cfg["board.name"] == b
        # the hardware watchdog on the microcontrollers only (a Pi's systemd restarts it)
        assert (cfg["board.watchdog_ms"] > 0) == (b in ("pico_w", "pico2_w", "esp32", "esp32s3"))


def test_unknown_key_is_named():
    assert _err({"smpt": {"listen": []}}) == "smpt.listen: unknown key"


def test_wrong_type_is_named():
    assert _err({"net": {"max_connections": "8"}}) == "net.max_connections: expected an integer, got a string"
    assert _err({"console": {"stdin": 1}}) == "console.stdin: expected true or false, got an integer"
    assert _err({"domains": "office.test"}) == "domains: expected a list, got a string"


def test_bad_addresses_and_ports():
    assert _err({"smtp": {"listen": ["127.0.0.1:99999"]}}).startswith("smtp.listen: bad port")
    assert _err({"smtp": {"listen": ["127.0.0.1"]}}).startswith("smtp.listen: expected HOST:PORT")
    assert _err({"pop3": {"listen": ["300.1.1.1:110"]}}).startswith("pop3.listen: bad address")
    assert _err({"lan": ["192.168.1.0/33"]}).startswith("lan: bad network")


def test_missing_required_value():
    d = fwtest.tempdir("cfg")
    try:
        prof = d + "/board.json"
        with open(prof, "w") as f:
            f.write(json.dumps({"board": {"name": "x"}, "domains": ["a.test"]}))
        try:
            config.load(_write(d, {}), prof)
        except config.ConfigError as e:
            assert str(e) == "hostname: missing required value", str(e)
        else:
            raise AssertionError("missing hostname accepted")
    finally:
        fwtest.rmtree(d)


def test_enum_and_minimum():
    assert _err({"link": {"type": "carrier-pigeon"}}).startswith("link.type: expected one of emulated, pppd")
    assert _err({"net": {"max_connections": 0}}) == "net.max_connections: must be at least 1, got 0"


def test_etrn_needs_a_smarthost_and_sane_arguments():
    try:
        fwtest.host_config({"session.etrn": ["office.test"]})  # no relay.smarthost in it
        raise AssertionError("session.etrn accepted without a smarthost")
    except config.ConfigError as e:
        assert str(e) == "session.etrn: needs relay.smarthost (ETRN is sent to the ISP's server)", str(e)
    assert _err({"session": {"etrn": ["office test"]}}) == 'session.etrn: bad ETRN argument "office test"'
    assert _err({"session": {"etrn": "office.test"}}).startswith("session.etrn: expected a list")


def test_pop3_multidrop_keys_are_checked():
    pop = {"host": "pop.isp.test", "user": "office"}
    assert _err({"isp": {"pop3": {"host": "pop.isp.test"}}}).startswith("isp.pop3.user: POP3 multidrop needs")
    assert _err({"isp": {"pop3": dict(pop, envelope="Envelope-To")}}).startswith("isp.pop3.envelope: expected one of")
    assert _err({"isp": {"pop3": dict(pop, default_user="Office Boss")}}).startswith("isp.pop3.default_user:")
    assert _err({"isp": {"pop3": dict(pop, keep_days=7)}}).startswith("isp.pop3.keep_days: only with")
    assert _err({"isp": {"pop3": dict(pop, port=99999)}}).startswith("isp.pop3.port: expected 1-65535")
    cfg = fwtest.host_config({"isp.pop3.host": "pop.isp.test", "isp.pop3.user": "office", "isp.pop3.password": "pw"})
    assert cfg["isp.pop3.envelope"] == "X-Original-To" and cfg["isp.pop3.tls"] == "stls"
    assert cfg["isp.pop3.default_user"] == "postmaster" and cfg.show("isp.pop3.password") != '"pw"'


def test_old_relay_etrn_key_still_works_with_a_deprecation_line():
    cfg = fwtest.host_config({"relay.etrn": ["office.test"], "relay.smarthost": "isp.test:25", "relay.tls": "none"})
    assert cfg["session.etrn"] == ["office.test"]
    assert cfg.deprecated == ["relay.etrn is deprecated: it is now session.etrn (used as that)"]
    assert _err({"relay": {"etrn": ["a.test"], "smarthost": "isp.test:25"},
                 "session": {"etrn": ["b.test"]}}) == "relay.etrn: renamed session.etrn; set only session.etrn"


def test_schedule_entries_are_checked_at_start_up():
    assert _err({"schedule": {"windows": ["mon-fry 08:00-18:00 every 60"]}}).startswith("schedule.windows: ")
    assert _err({"schedule": {"times": ["25:00"]}}).startswith("schedule.times: ")
    assert _err({"schedule": {"utc_offset": 900}}).startswith("schedule.utc_offset: 900 is out of range")


def test_an_empty_hostname_and_an_odmr_port_out_of_range_are_refused():
    assert _err({"hostname": ""}) == "hostname: missing required value"
    odmr = {"host": "odmr.isp.test", "user": "office", "password": "pw", "domains": ["office.test"]}
    assert _err({"isp": {"odmr": dict(odmr, port=99999)}}) == "isp.odmr.port: expected 1-65535"


def _board_err(over):
    """config_board's refusal (the board-only start-up check) for the host profile's
    flat keys with `over`, on either runtime; "" where it has none."""
    from dialgate import config_board

    v = dict(fwtest.host_config()._v)
    v.update(over)
    try:
        config_board.check(v)
    except config.ConfigError as e:
        return str(e)
    return ""


def test_a_board_is_told_at_start_what_it_lacks_for_mx_routing_and_verified_tls():
    # no system resolver: MX routing needs relay.resolver
    assert _board_err({"relay.route": "mx"}) == "relay.resolver: a board has no system resolver: name a DNS server for relay.route mx"
    assert _board_err({"relay.route": "mx", "relay.resolver": "192.0.2.53", "relay.tls": "opportunistic"}) == ""
    # no CA store: TLS that must be verified needs relay.ca_file, for whoever requires TLS
    smart = {"relay.smarthost": "smtp.isp.test:587", "relay.tls": "starttls"}
    assert _board_err(smart) == ("relay.ca_file: a board has no CA store: name the CA's file (make flash TLS=DIR) "
                                 "for relay.tls starttls with relay.tls_verify")
    assert _board_err(dict(smart, **{"relay.ca_file": "/tls/isp.pem"})) == ""
    assert _board_err(dict(smart, **{"relay.tls_verify": False})) == ""
    assert _board_err(dict(smart, **{"relay.tls": "opportunistic"})) == ""  # no context unless offered
    assert _board_err({"relay.smarthost": "", "relay.tls": "implicit"}) == ""  # nothing relays
    pop = {"relay.smarthost": "", "isp.pop3.host": "pop.isp.test", "isp.pop3.tls": "implicit"}
    assert _board_err(pop).endswith("for isp.pop3.tls implicit with relay.tls_verify")
    assert _board_err(dict(pop, **{"isp.pop3.tls": "none"})) == ""
    odmr = {"relay.smarthost": "", "isp.odmr.host": "odmr.isp.test", "relay.tls": "starttls"}
    assert _board_err(odmr).endswith("for relay.tls starttls with relay.tls_verify")
    # at start, only where the runtime lacks them: CPython has both
    from dialgate import compat

    if compat.MICROPYTHON:
        assert _err({"relay": {"route": "mx"}}).startswith("relay.resolver: a board has no system resolver")
    else:
        assert fwtest.host_config({"relay.route": "mx"})["relay.resolver"] == ""


def test_bad_json_and_missing_file_and_profile():
    assert "not valid JSON" in _err("{nope")
    d = fwtest.tempdir("cfg")
    try:  # what Windows Notepad saves as "Unicode": UTF-16 with a byte order mark
        with open(d + "/c.json", "wb") as f:
            f.write(b"\xff\xfe" + "".join(c + "\x00" for c in '{"profile": "host"}').encode())
        config.load(d + "/c.json")
        raise AssertionError("UTF-16 accepted")
    except config.ConfigError as e:
        assert str(e) == "config: %s/c.json is not UTF-8 text (save it as UTF-8)" % d, str(e)
    finally:
        fwtest.rmtree(d)
    d = fwtest.tempdir("cfg")
    try:  # UTF-8 with a byte order mark (older Notepads): read as the UTF-8 it is
        with open(d + "/c.json", "wb") as f:
            f.write(b"\xef\xbb\xbf" + b'{"profile": "host"}')
        assert config.load(d + "/c.json")["spool.path"]
    finally:
        fwtest.rmtree(d)
    assert _err({"profile": "no-such-board"}, None).startswith('profile: no board profile named "no-such-board"')
    try:
        config.load("/nonexistent/dialgate.json")
    except config.ConfigError as e:
        assert str(e).startswith("config: cannot read /nonexistent/dialgate.json")
    else:
        raise AssertionError("missing file accepted")


def test_schema_file_holds_one_key_a_line():
    # config_edit.schema_row() (config set) reads it line by line
    for key in config.schema():
        assert config_edit.schema_row(key) == config.schema()[key], key
    try:
        config_edit.schema_row("no.such.key")
    except config.ConfigError as e:
        assert str(e) == "no.such.key: unknown key"
    else:
        raise AssertionError("unknown key accepted")


def test_config_set_reads_the_schema_where_frozen_firmware_keeps_it():
    """With the code frozen in (.frozen/dialgate) schema.json is in /lib/dialgate
    (make flash puts it there): `config set` looks where the start-up does."""
    from dialgate import compat

    for m in ("dialgate.config_edit", "dialgate.config_load"):  # (another test may have unloaded one)
        compat.unload(m)
    from dialgate import config_edit, config_load

    real = config_load.__file__
    try:
        config_load.__file__ = ".frozen/dialgate/config_load.py"
        assert config_load.schema_path() == "/lib/dialgate/schema.json"
        try:
            config_edit.schema_row("hostname")
        except OSError:
            pass  # no /lib/dialgate here: it looked there, not beside config_edit
        else:
            raise AssertionError("schema_row did not read /lib/dialgate/schema.json")
    finally:
        config_load.__file__ = real
    assert config_edit.schema_row("hostname")[0] == "str"
