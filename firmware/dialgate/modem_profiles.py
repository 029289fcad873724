"""Modem profiles: the init strings and dial command for an analog modem, an ISDN
terminal adapter and a GSM/3G modem, filled in from the `modem.*` config keys."""

from .compat import const

# Every profile starts from factory settings and asks for what the driver relies
# on: no echo (E0), verbose results (V1, V.250 §6.2.6), DCD follows the carrier
# (&C1) and a DTR drop hangs up (&D2).
_BASE = ["AT&F", "ATE0V1&C1&D2"]

_PROFILES = const(("analog", "isdn", "gsm"))


class ModemSettings:
    """What one dial-up session needs from the config, with profile defaults applied.

    Times are milliseconds. `init` is the list of commands after the wake-up AT;
    `dial` the complete dial command.
    """

    def __init__(self, cfg):
        self.port = cfg["modem.port"]
        self.baud = cfg["modem.baud"]
        self.profile = cfg["modem.profile"]
        self.number = cfg["modem.number"]
        self.init = init_commands(self.profile, cfg["modem.init"], cfg["modem.apn"], cfg["modem.speaker"])
        self.dial = dial_command(self.profile, cfg["modem.dial"], self.number)
        self.cmd_ms = cfg["modem.command_timeout"] * 1000
        self.connect_ms = cfg["modem.connect_timeout"] * 1000
        self.guard_ms = cfg["modem.guard_ms"]
        self.redial = cfg["modem.redial"]
        self.redial_ms = cfg["modem.redial_delay"] * 1000
        self.redial_max_ms = cfg["modem.redial_delay_max"] * 1000


def init_commands(profile, init, apn, speaker):
    """The init list: `modem.init` if set, else the profile's. GSM adds the PDP
    context (3GPP TS 27.007 §10.1.1 AT+CGDCONT) for the APN."""
    if init:
        cmds = list(init)
    else:
        cmds = list(_BASE)
        if profile == "analog":
            # X4: report BUSY and NO DIALTONE (V.250 §6.2.9); M: speaker.
            cmds.append("ATX4" + ("M1L1" if speaker else "M0"))
    if profile == "gsm" and apn:
        cmds.append('AT+CGDCONT=1,"IP","%s"' % apn)
    return cmds


def dial_command(profile, dial, number):
    """`modem.dial` is the prefix ("ATDT", "ATDP", "ATDT0W" for an outside line),
    `modem.number` the number (commas pause, S8 seconds each)."""
    if profile == "gsm":
        # 3GPP TS 27.007 §10.2.1.1: ATD*99# starts packet data on context 1
        return (dial or "ATD") + (number or "*99#")
    if profile == "isdn":
        return (dial or "ATD") + number
    return (dial or "ATDT") + number
