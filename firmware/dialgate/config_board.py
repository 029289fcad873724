"""The start-up check of what a board lacks that CPython has (config_load.load,
on MicroPython: at start and for `config set`). Its own module, loaded for the
check and unloaded after it.
"""

from .config import ConfigError


def check(v):
    """What a board lacks that CPython has, asked for by a config that needs it on
    every call: a system resolver (MX routing), a CA store (TLS verified, and
    required: opportunistic TLS needs none unless offered, smtp_client). Refused
    here, naming the key, rather than each call failing until the mail expires."""
    if v["relay.route"] == "mx" and not v["relay.resolver"]:
        raise ConfigError("relay.resolver", "a board has no system resolver: name a DNS server for relay.route mx")
    if v["relay.tls_verify"] and not v["relay.ca_file"]:
        for key, on in (("relay.tls", v["relay.smarthost"] or v["relay.route"] == "mx" or v["isp.odmr.host"]),
                        ("isp.pop3.tls", v["isp.pop3.host"])):
            if on and v[key] in ("starttls", "stls", "implicit"):
                raise ConfigError("relay.ca_file", "a board has no CA store: name the CA's file (make flash TLS=DIR) "
                                  "for %s %s with relay.tls_verify" % (key, v[key]))
