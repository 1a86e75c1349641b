"""A tiny client/server program, the thing under test in test_transfer.py.

    python3 transfer.py serve PORT          # answer each request "N\\n" with N bytes
    python3 transfer.py fetch HOST PORT N   # ask for N bytes; print {"bytes", "sha256", "seconds"}

The payload is `payload(N)`, so a test can check what arrived without a copy.
`fetch` retries the connection for a few seconds (the server may still be
starting) and exits 1 with a one-line message when it cannot get its bytes.
"""

from __future__ import annotations

import hashlib
import json
import socket
import socketserver
import sys
import time


def payload(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        n = int(self.rfile.readline())
        self.wfile.write(payload(n))


def serve(port: int) -> None:
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("0.0.0.0", port), _Handler) as server:
        server.serve_forever()


def fetch(host: str, port: int, n: int, patience: float = 5.0) -> dict[str, object]:
    deadline = time.monotonic() + patience
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=30)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    start = time.monotonic()
    digest, got = hashlib.sha256(), 0
    with sock:
        sock.sendall(f"{n}\n".encode())
        while chunk := sock.recv(65536):
            digest.update(chunk)
            got += len(chunk)
    return {"bytes": got, "sha256": digest.hexdigest(), "seconds": time.monotonic() - start}


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"] and len(argv) == 2:
        serve(int(argv[1]))
        return 0
    if argv[:1] == ["fetch"] and len(argv) == 4:
        try:
            print(json.dumps(fetch(argv[1], int(argv[2]), int(argv[3]))))
        except OSError as exc:
            print(f"transfer: cannot fetch from {argv[1]}:{argv[2]}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
