"""`vethlab perf`: TCP throughput from one node to another, counted at the receiver.

iperf3 when installed (server bound to DST's address, one test, JSON out); else a
built-in sender/receiver pair of small Python programs, which measures the same
thing: bytes received by DST per second of transfer.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from typing import Any

from ..errors import CommandFailed, ConflictError
from ..kernel.api import Processes

PORT = 5201

RECEIVER = """
import socket, sys, time
srv = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(1)
print('ready', flush=True)
conn, _ = srv.accept(); total = 0; start = time.monotonic()
while True:
    chunk = conn.recv(1 << 20)
    if not chunk: break
    total += len(chunk)
print(total, time.monotonic() - start, flush=True)
"""

SENDER = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)
data = b'\\0' * (1 << 17); end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end: s.sendall(data)
s.close()
"""


def measure(kernel: Processes, src_ns: str | None, dst_ns: str | None, address: str,
            seconds: float) -> dict[str, Any]:
    if shutil.which("iperf3"):
        return _iperf3(kernel, src_ns, dst_ns, address, seconds)
    return _builtin(kernel, src_ns, dst_ns, address, seconds)


def _iperf3(kernel: Processes, src_ns: str | None, dst_ns: str | None, address: str, seconds: float) -> dict[str, Any]:
    server = subprocess.Popen(kernel.node_argv(dst_ns, ["iperf3", "-s", "-1", "-B", address, "-p", str(PORT)]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.2)
        # iperf3 reads -t as a whole number (atoi): `-t 0.5` is 0, which it takes as
        # "no time limit", and perf hung until its 30 s timeout; so whole seconds, at least 1
        whole = max(1, math.ceil(seconds))
        argv = ["iperf3", "-c", address, "-p", str(PORT), "-t", str(whole), "-J"]
        client = subprocess.run(kernel.node_argv(src_ns, argv), capture_output=True, text=True, timeout=whole + 30)
    finally:
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
    try:
        report = json.loads(client.stdout)
    except ValueError:
        raise CommandFailed(f"iperf3 failed: {client.stderr.strip() or client.stdout.strip()}") from None
    if "error" in report:
        raise CommandFailed(f"iperf3 failed: {report['error']}")
    received = report["end"]["sum_received"]
    return {"seconds": received["seconds"], "bits_per_second": received["bits_per_second"], "tool": "iperf3"}


def _builtin(kernel: Processes, src_ns: str | None, dst_ns: str | None, address: str, seconds: float) -> dict[str, Any]:
    receiver = subprocess.Popen(kernel.node_argv(dst_ns, [sys.executable, "-c", RECEIVER, address, str(PORT)]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        if receiver.stdout.readline().strip() != "ready":
            raise ConflictError(f"cannot listen on {address}:{PORT} in the destination node")
        sender = subprocess.run(kernel.node_argv(src_ns, [sys.executable, "-c", SENDER, address, str(PORT), str(seconds)]),
                                capture_output=True, text=True, timeout=seconds + 30)
        if sender.returncode != 0:
            raise CommandFailed(f"sender failed: {sender.stderr.strip()}")
        out, _ = receiver.communicate(timeout=30)
    finally:
        if receiver.poll() is None:
            receiver.kill()
    total, elapsed = out.split()
    return {"seconds": float(elapsed), "bits_per_second": int(total) * 8 / float(elapsed), "tool": "builtin"}
