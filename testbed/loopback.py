"""Joins the modern engine's loopback to the host's, over a unix socket in the shared run directory.

The engine's container has a network namespace of its own (given the host's, its dockerd would
rework the host's networking), so the host's 127.0.0.1 is not its 127.0.0.1. Two relays make a
registry at 127.0.0.1:PORT on the host reachable as 127.0.0.1:PORT inside too, for any PORT, so
an image reference means the same on both engines:

    python3 loopback.py inside PORT SOCKET
        in the engine's namespace, where an iptables REDIRECT sends every TCP connection to
        127.0.0.1 (but PORT's own) to PORT; it reads each one's original port (SO_ORIGINAL_DST),
        sends it to SOCKET as a line, then relays the bytes.
    python3 loopback.py outside SOCKET [API_PORT API_SOCKET]
        in the host's namespace: connects each SOCKET connection to 127.0.0.1:<the port line>.
        With API_PORT, it also relays tcp://127.0.0.1:API_PORT to the engine's API socket.

Standard library only: it runs with the engine image's python3-minimal. A connection the host
side cannot make is closed at once, which the client inside sees as an empty answer rather than
a refusal (the inside relay has accepted it already); the relay container's log names the refusal.
"""
from __future__ import annotations

import os
import socket
import struct
import sys
import threading
from typing import Callable

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h: where a REDIRECTed connection was going
CHUNK = 1 << 16


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until `source` ends, then end `sink`'s sending side (HTTP clients half-close)."""
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def relay(client: socket.socket, connect: Callable[[socket.socket], socket.socket]) -> None:
    try:
        peer = connect(client)
    except OSError as error:
        print(f"loopback: {error}", file=sys.stderr, flush=True)
        client.close()
        return
    back = threading.Thread(target=pump, args=(peer, client), daemon=True)
    back.start()
    pump(client, peer)
    back.join()
    client.close()
    peer.close()


def serve(listener: socket.socket, connect: Callable[[socket.socket], socket.socket]) -> None:
    listener.listen(128)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=relay, args=(client, connect), daemon=True).start()


def unix_listener(path: str) -> socket.socket:
    if os.path.exists(path):
        os.unlink(path)  # left by a relay of an earlier start
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    return listener


def tcp_listener(port: int) -> socket.socket:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    return listener


def unix_connection(path: str) -> socket.socket:
    peer = socket.socket(socket.AF_UNIX)
    peer.connect(path)
    return peer


def original_port(client: socket.socket) -> int:
    address = client.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)  # a struct sockaddr_in
    return struct.unpack_from("!H", address, 2)[0]


def to_host(path: str) -> Callable[[socket.socket], socket.socket]:
    def connect(client: socket.socket) -> socket.socket:
        peer = unix_connection(path)
        peer.sendall(b"%d\n" % original_port(client))
        return peer
    return connect


def read_port(client: socket.socket) -> int:
    line = b""
    while not line.endswith(b"\n"):  # byte by byte: what follows the line is the client's
        byte = client.recv(1)
        if not byte or len(line) > 6:
            raise OSError(f"no port line from the engine's side (got {line!r})")
        line += byte
    if not line.strip().isdigit():
        raise OSError(f"no port line from the engine's side (got {line!r})")
    return int(line)


def to_loopback(client: socket.socket) -> socket.socket:
    return socket.create_connection(("127.0.0.1", read_port(client)))


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "inside":
        serve(tcp_listener(int(argv[1])), to_host(argv[2]))
    elif len(argv) in (2, 4) and argv[0] == "outside":
        if len(argv) == 4:
            api = tcp_listener(int(argv[2]))
            threading.Thread(target=serve, args=(api, lambda _: unix_connection(argv[3])),
                             daemon=True).start()
        serve(unix_listener(argv[1]), to_loopback)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
