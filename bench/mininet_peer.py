"""Mininet 2.3 (Debian's `mininet`) building the benchmark's star: N hosts on one Linux
bridge, no controller.  Run by Debian's /usr/bin/python3 (where Mininet lives).

    python3 mininet_peer.py N
Prints one JSON line: wall-clock times (time.time()) when the network was up and a
ping across it succeeded, and when it was stopped.
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
net.stop()
print(json.dumps({"up": up, "down": time.time()}))
