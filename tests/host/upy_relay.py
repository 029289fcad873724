"""MicroPython side of test_relay_postfix.py: queue N messages in a spool and relay
them with the firmware's own queue runner (compiled .mpy tree in argv[6]).

    micropython -X heapsize=192K upy_relay.py SPOOL PORT CA_FILE N TLS TREE
"""

import sys

sys.path.insert(0, sys.argv[6])
import asyncio

from gwparts import wire

from dialgate import compat, config
from dialgate.delivery import Route

# as a board's gateway does at start (app.main, board.unload_after): every name
# interned while the heap is empty, so no pool of names is asked for mid-run
# (a 640-entry pool found no hole with 110 KB free under pytest's longer paths)
compat.intern_module_names(sys.argv[6] + "/dialgate")

root, port, ca, n, tls = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]

class Gw:
    pass

gw = wire(Gw(), config.build({"board.name": "host", "hostname": "gw.office.test", "domains": ["office.test"],
    "spool.path": root, "spool.reserve": 0, "relay.smarthost": "127.0.0.1:" + str(port), "relay.tls": tls,
    "relay.ca_file": ca, "relay.tls_name": "isp.test", "relay.user": "gw", "relay.password": "secret"}), root)
compat.unload("dialgate.config_load")  # as the gateway does once its config is checked (app.main)
for i in range(n):
    w = gw.spool.writer()
    w.write(b"From: alice@office.test\r\nTo: bob@example.com\r\nSubject: upy %d\r\nMessage-ID: <upy%d@office.test>\r\n\r\n" % (i, i))
    for k in range(40):
        w.write(b".line %d of a message sent from MicroPython over TLS\r\n" % k)
    w.commit("alice@office.test", [Route("remote", "bob@example.com", [])])
import gc  # noqa: E402

gc.collect()
print("free before", gc.mem_free())
asyncio.run(gw.relay.run_once())
gc.collect()
print("free after", gc.mem_free())
print("RESULT", gw.relay.last_run)
print("QUEUED", len(gw.outq.ids()))
