"""``python -m tests.netguard ARGS``: the ``promptlens`` command line with every network attempt
outside loopback (a connection, or a name lookup of a non-local host) refused and written to stderr
as ``NETWORK ATTEMPT ...``."""

from __future__ import annotations

import socket
import sys

LOCAL = ("127.0.0.1", "::1", "localhost", "", None)


def _local(host: object) -> bool:
    return host in LOCAL or str(host).startswith(("/", "127."))  # unix sockets, loopback


def _refuse(what: str, address: object) -> None:
    sys.stderr.write(f"NETWORK ATTEMPT {what} {address!r}\n")
    raise OSError(f"network blocked by the test: {what} {address!r}")


def install() -> None:
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def guarded_connect(self, address):
        if self.family != socket.AF_UNIX and not _local(address[0] if isinstance(address, tuple) else address):
            _refuse("connect", address)
        return connect(self, address)

    def guarded_connect_ex(self, address):
        if self.family != socket.AF_UNIX and not _local(address[0] if isinstance(address, tuple) else address):
            _refuse("connect_ex", address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not _local(host.decode() if isinstance(host, bytes) else host):
            _refuse("getaddrinfo", host)
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = guarded_connect, guarded_connect_ex
    socket.getaddrinfo = guarded_getaddrinfo


if __name__ == "__main__":
    install()
    from promptlens.cli import main

    sys.exit(main(sys.argv[1:]))
