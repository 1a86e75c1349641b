"""Mininet 2.3 (Debian's `mininet`) building the benchmark's star: N hosts on one Linux
bridge, no controller.  Run by Debian's /usr/bin/python3 (where Mininet lives).

    python3 mininet_peer.py N [SETTLE]
Prints one JSON line: wall-clock times (time.time()) when the network was up and a
ping across it succeeded, when it began to stop (after a pause of SETTLE seconds,
as the benchmark leaves before every phase), and when it was stopped.
"""

import json
import sys
import time

from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge
from mininet.topo import SingleSwitchTopo

setLogLevel("error")
n = int(sys.argv[1])
net = Mininet(topo=SingleSwitchTopo(k=n), switch=LinuxBridge, controller=None, autoSetMacs=False,
              autoStaticArp=False, waitConnected=False)
net.start()
first, last = net.hosts[0], net.hosts[-1]
for _ in range(100):
    if "1 received" in first.cmd(f"ping -c1 -W1 {last.IP()}"):
        break
up = time.time()
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
stop = time.time()
net.stop()
print(json.dumps({"up": up, "stop": stop, "down": time.time()}))
