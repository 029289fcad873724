"""SMTP AUTH (RFC 4954) for smtp_server: PLAIN (RFC 4616) and LOGIN, one line
per SASL step. Functions of the session (`s`), imported on the first AUTH, so
a plain LAN submission never loads them (nor auth's throttle).
"""

from . import auth, limits, log


def command(s, arg):
    if s.user is not None:
        return s._bogus(b"503 5.5.1 Already authenticated\r\n")
    if s.svc.users is None:
        return s._bogus(b"502 5.5.1 AUTH not offered\r\n")
    if not s._auth_allowed():
        return b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    if s.svc.throttle().check(s.peer[0]):
        return b"454 4.7.0 Too many failed logins, try again later\r\n"
    mech, _, initial = arg.partition(b" ")
    mech = mech.upper()
    if mech == b"PLAIN":
        if not initial:
            _expect(s, "plain")
            return b"334 \r\n"
        return _plain(s, b"" if initial == b"=" else initial)  # RFC 4954 §4: "=" is empty
    if mech == b"LOGIN":
        if not initial:
            _expect(s, "user")
            return b"334 " + auth.LOGIN_USER + b"\r\n"
        return _login_user(s, initial)
    return s._bogus(b"504 5.5.4 Unrecognized authentication type\r\n")


def _expect(s, step):
    """The next line is a SASL response (RFC 4954 §4), not a command."""
    s.sasl = step
    s.max_line = limits.SMTP_AUTH_LINE


def sasl_line(s, line):
    step = s.sasl
    s.sasl = None
    s.max_line = limits.SMTP_COMMAND_LINE
    if line == auth.CANCEL:
        return b"501 5.0.0 Authentication cancelled\r\n"
    if step == "plain":
        return _plain(s, line)
    if step == "user":
        return _login_user(s, line)
    pw = auth.decode_text(line)
    if pw is None:
        return s._bogus(b"501 5.5.2 Cannot decode response\r\n")
    return _verify(s, s.sasl_name, pw)


def _plain(s, response):
    creds = auth.decode_plain(response)
    if creds is None:
        return s._bogus(b"501 5.5.2 Cannot decode response\r\n")
    return _verify(s, creds[0], creds[1])


def _login_user(s, response):
    name = auth.decode_text(response)
    if not name:
        return s._bogus(b"501 5.5.2 Cannot decode response\r\n")
    s.sasl_name = name
    _expect(s, "pass")
    return b"334 " + auth.LOGIN_PASS + b"\r\n"


def _verify(s, name, password):
    ip = s.peer[0]
    name = name.lower()  # as `user add` stores every name (a client set up as "Bob")
    try:
        ok = s.svc.users.check_password(name, password)
    except Exception as e:
        log.exception("smtp auth", e)
        return b"454 4.7.0 Temporary authentication failure\r\n"
    if ok:
        s.svc.throttle().succeeded(ip)
        s.user = name
        log.info("smtp %s: authenticated as %s", ip, name)
        return b"235 2.7.0 Authentication successful\r\n"
    s.pause_ms = s.svc.throttle().failed(ip)
    log.warn("smtp %s: failed login for %s", ip, name)
    return b"535 5.7.8 Authentication credentials invalid\r\n"
