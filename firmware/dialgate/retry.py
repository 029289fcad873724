"""Retry schedule for the outbound queue: backoff, lifetime and delay warnings
counted in wall time *and* online sessions (RFC 5321 §4.5.4.1), and the
RFC 5322 dates the queue shows and the DSNs carry. See docs/queue.md.
"""

from .compat import clock_ok, const


class RetryPolicy:
    """`interval`: first retry delay (s, RFC 5321 §4.5.4.1: at least 30 min);
    doubled per failed try up to `max_interval`. A message gives up once it is
    `lifetime` seconds old AND was tried in at least `min_sessions` online
    sessions; a delay warning goes out once after `warn_after` seconds (0 = never)
    if it was tried in at least one session."""

    def __init__(self, interval=1800, max_interval=14400, lifetime=432000, min_sessions=3, warn_after=14400):
        self.interval = interval
        self.max_interval = max(max_interval, interval)
        self.lifetime = lifetime
        self.min_sessions = min_sessions
        self.warn_after = warn_after

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg["queue.retry_interval"], cfg["queue.retry_max"], cfg["queue.lifetime"],
                   cfg["queue.min_sessions"], cfg["queue.warn_after"])

    def next_attempt(self, attempts, now):
        """Wall time of the next try after `attempts` failed tries (attempts >= 1)."""
        d = self.interval
        k = 1
        while k < attempts and d < self.max_interval:
            d *= 2
            k += 1
        return now + min(d, self.max_interval)

    def age(self, created, now):
        """Seconds since `created`, or -1 when either time is from an unset clock."""
        if not clock_ok(created) or not clock_ok(now):
            return -1
        return max(0, now - created)

    def expired(self, created, sessions, now):
        """Give up? Only when old enough in wall time AND tried in enough online
        sessions, so an office that stayed offline for a week still gets its tries."""
        a = self.age(created, now)
        return a >= 0 and a >= self.lifetime and sessions >= self.min_sessions

    def warn_due(self, created, sessions, now):
        a = self.age(created, now)
        return self.warn_after > 0 and sessions >= 1 and a >= self.warn_after

    def retry_until(self, created):
        return created + self.lifetime if clock_ok(created) else 0


_DAYS = const(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))
_MONTHS = const(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))


def civil(t):
    """Unix seconds -> (year, month, day, seconds into the day): H. Hinnant's
    civil-from-days, valid for any Gregorian date, no runtime epoch quirks."""
    days = t // 86400
    secs = t - days * 86400
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return y, m, d, secs


def rfc5322_date(t):
    """Unix seconds -> "Mon, 2 Jan 2006 15:04:05 +0000" (RFC 5322 §3.3), no runtime epoch quirks."""
    t = int(t)
    y, m, d, secs = civil(t)
    days = t // 86400
    wd = (days + 3) % 7  # 1970-01-01 was a Thursday
    return "%s, %d %s %d %02d:%02d:%02d +0000" % (
        _DAYS[wd], d, _MONTHS[m - 1], y, secs // 3600, secs // 60 % 60, secs % 60)


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a Gregorian date (H. Hinnant), the inverse of the above."""
    y -= 1 if m <= 2 else 0
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_date(text):
    """Unix seconds of the first RFC 5322 §3.3 date in `text` ("2 Dec 2026 09:00:00
    +0100", as a sendmail-style greeting or a Received line carries it), or 0."""
    words = text.replace(",", " ").replace(";", " ").split()
    for i in range(len(words) - 3):
        w = words[i + 1]
        mon = w[:1].upper() + w[1:3].lower()  # no str.title() on MicroPython
        if mon not in _MONTHS or not words[i].isdigit() or not words[i + 2].isdigit():
            continue
        hms = words[i + 3].split(":")
        if len(hms) < 2 or not all([x.isdigit() for x in hms]):
            continue
        y = int(words[i + 2])
        if y < 100:
            y += 2000  # RFC 5322 §4.3 obsolete two-digit year
        t = days_from_civil(y, _MONTHS.index(mon) + 1, int(words[i])) * 86400
        t += int(hms[0]) * 3600 + int(hms[1]) * 60 + (int(hms[2]) if len(hms) > 2 else 0)
        z = words[i + 4] if i + 4 < len(words) else "+0000"
        if len(z) == 5 and z[0] in "+-" and z[1:].isdigit():
            off = int(z[1:3]) * 3600 + int(z[3:]) * 60
            t -= off if z[0] == "+" else -off
        return t
    return 0
