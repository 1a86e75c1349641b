"""A tiny TCP server for tests: answers each connection with the client address it sees.

    python3 whoami.py PORT
"""

import socket
import sys

server = socket.socket(socket.AF_INET6 if "--6" in sys.argv else socket.AF_INET)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("::" if "--6" in sys.argv else "0.0.0.0", int(sys.argv[1])))
server.listen(16)
while True:
    conn, addr = server.accept()
    try:
        conn.sendall(addr[0].encode())
    finally:
        conn.close()
