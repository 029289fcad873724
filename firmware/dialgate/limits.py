"""Protocol limits in one place, each with the RFC section it comes from.

SMTP's come first; POP3 and the other protocol modules add theirs below. Values
a site may want to change are also config keys (docs/config.md); the config
default is the constant here.
"""

from .compat import const

# ---- SMTP server (RFC 5321) ------------------------------------------------

# RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF.
SMTP_COMMAND_LINE = const(512)
# RFC 5321 §4.5.3.1.6: a text line in DATA is at most 1000 octets including
# CRLF, so at most 998 octets of text.
SMTP_TEXT_LINE = const(998)
# RFC 5321 §4.5.3.1.8: a server must buffer at least 100 recipients; more get
# `452 4.5.3 Too many recipients` (§4.5.3.1.10) and the client sends the rest
# in another transaction. Config: smtp.max_recipients.
_SMTP_RECIPIENTS = const(100)
# RFC 1870 §4: the fixed maximum message size we advertise as `SIZE n`, in
# octets. Config: smtp.max_size.
_SMTP_MESSAGE_SIZE = const(10485760)
# A session is bounded by its age and by the octets it has sent, not by a
# count of messages: an ISP flushing 400 held messages after ETRN (RFC 1985)
# uses one connection, over a modem. RFC 5321 §4.5.3.2 bounds each wait
# (the timeouts below); these bound the whole session. Once one is passed, the
# next command outside a transaction gets `421 4.7.0` and the connection
# closes (§3.8); a transaction under way always completes. One hour is ~15 MB
# at 33,600 bps; 100 MiB is ten messages of the largest size.
SMTP_SESSION_MS = const(3600000)
SMTP_SESSION_OCTETS = const(104857600)
# Not in an RFC: unknown, out-of-sequence or malformed commands and relay
# denials before `421 4.7.0` and close (RFC 5321 §3.8). Stops a peer speaking
# another protocol (HTTP, a smuggling probe) or probing for an open relay from
# holding a connection.
SMTP_BOGUS_COMMANDS = const(10)
# RFC 5321 §4.5.3.2.7: a server waits at least 5 minutes for the next command.
SMTP_COMMAND_TIMEOUT_MS = const(300000)
# RFC 5321 §4.5.3.2.5/.6: the client allows 3 minutes per data block and
# 10 minutes for our reply after end of data; we wait 5 minutes per block of
# incoming data, the same as for a command (§4.5.3.2.7).
SMTP_DATA_TIMEOUT_MS = const(300000)
# RFC 5321 §4.5.3.1.1-3: local part 64, domain 255, whole path 256 octets.
SMTP_LOCAL_PART = const(64)
SMTP_DOMAIN = const(255)
SMTP_PATH = const(256)
# RFC 4954 §4: an AUTH response line may be 12288 octets; a board cannot
# spare that, so SASL responses share the command line limit (base64 of 378
# octets: ample for PLAIN with ordinary user names and passwords).
SMTP_AUTH_LINE = const(512)

# ---- POP3 server (RFC 1939) --------------------------------------------------

# RFC 2449 §4: a command line is at most 255 octets including CRLF.
POP3_COMMAND_LINE = const(255)
# RFC 5034 §4: a SASL client response may be longer than a command line;
# PLAIN for ordinary names and passwords is far shorter than this.
POP3_SASL_LINE = const(1024)
# RFC 1939 §3: the autologout timer is at least 10 minutes (config
# pop3.idle_timeout, in seconds, may only raise it).
POP3_IDLE_MIN_S = const(600)
# RFC 1939 §7 USER / maildrop directory names: up to 64 octets.
POP3_USER_NAME = const(64)

# ---- failed logins (SMTP AUTH, POP3 USER/PASS/APOP/AUTH) -----------------------

# After each failure from one address the next attempt waits longer
# (AUTH_DELAY_MS doubling up to AUTH_DELAY_MAX_MS); after AUTH_LOCKOUT_AFTER
# failures in a row the address is refused for AUTH_LOCKOUT_MS. RFC 4954 §4
# and RFC 1939 §13 leave throttling to the server.
AUTH_DELAY_MS = const(1000)
AUTH_DELAY_MAX_MS = const(8000)
AUTH_LOCKOUT_AFTER = const(5)
AUTH_LOCKOUT_MS = const(600000)
# Addresses remembered at once (oldest forgotten first): bounded RAM.
AUTH_TRACKED = const(32)

# ---- connections ---------------------------------------------------------------

# Total sessions across all listeners (config net.max_connections); the
# listener answers over-cap connections with 421 (RFC 5321 §3.8) and closes.
_CONNECTIONS = const(8)

# ---- POP3 client (multidrop collection from the ISP's mailbox) -----------------

# RFC 2449 §4: a response's first line is at most 512 octets including CRLF
# (CAPA, UIDL and LIST lines are far shorter).
POP3_REPLY_LINE = const(512)
# Not in an RFC (RFC 1939 leaves a client's patience open): how long the
# collector waits for the ISP's next octet before the call counts as failed.
POP3_CLIENT_TIMEOUT_MS = const(180000)
# Messages of the ISP mailbox one call looks at: their UIDLs, numbers, sizes and
# flags are held in RAM (~35 octets each with a 16-octet UIDL); the rest wait
# for the next call.
POP3_LISTED = const(1000)
# Lines in the UIDL journal (SPOOL/pop3.uidl, ~30 octets each): when it is full
# (messages left on the server, isp.pop3.leave_on_server) nothing more is
# collected until entries age out (isp.pop3.keep_days).
POP3_JOURNAL_ENTRIES = const(2000)
