"""The BookingService port of ``serve --processes N``: taken once, for all the processes.

Each process binds the port with SO_REUSEPORT and the kernel spreads new connections
over them. SO_REUSEPORT alone would also let an unrelated ``serve`` join a port that
is in use, so before any process starts, :func:`reserve_port` binds the port the way
gRPC does but *without* SO_REUSEPORT: a port that another process listens on, or holds,
is refused there (OSError, "cannot listen"). Only then does it set SO_REUSEPORT on
the bound sockets, and clear SO_REUSEADDR, and keep them, never listening (the kernel
hands connections only to listening sockets): the processes of this ``serve`` bind
next to them, while a plain bind, another reservation or a gRPC server without
SO_REUSEPORT is still refused. With port 0 the reservation picks the port they share.

What SO_REUSEPORT cannot stop: a program of the same user that binds the port with
SO_REUSEPORT itself (gRPC's default) joins it, reserved or not. ``serve`` never does
that on a port of its own.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass, field

# The addresses gRPC treats as "every interface": a dual-stack IPv6 socket (also IPv4),
# or IPv4 alone where the host has no IPv6.
WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})
# Where gRPC binds "localhost".
LOCALHOST = ((socket.AF_INET6, ("::1", 0, 0, 0)), (socket.AF_INET, ("127.0.0.1", 0)))
# Errors of an address the host cannot bind (no IPv6, an address of another host).
_SKIPPED = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT})


@dataclass
class PortReservation:
    """The bound, never listening, SO_REUSEPORT sockets that hold ``host:port``."""

    host: str
    port: int
    sockets: list[socket.socket] = field(default_factory=list)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


def reserve_port(host: str, port: int) -> PortReservation:
    """Hold ``host:port`` (port 0: a free one) for processes that bind it with
    SO_REUSEPORT. OSError when it is taken or cannot be bound."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available on this system")
    reservation = PortReservation(host, port)
    try:
        if host in WILDCARDS:
            reservation.sockets.append(_bind_everywhere(port))
        else:
            _bind_each_address(reservation)
    except BaseException:
        reservation.close()
        raise
    reservation.port = reservation.sockets[0].getsockname()[1]
    return reservation


def _bind_everywhere(port: int) -> socket.socket:
    """As gRPC binds a wildcard host: dual-stack ``::`` (IPv6 and IPv4), or ``0.0.0.0``
    on a host without IPv6."""
    try:
        return _bind(socket.AF_INET6, ("::", port))
    except OSError as exc:
        if exc.errno not in _SKIPPED:
            raise
    return _bind(socket.AF_INET, ("0.0.0.0", port))


def _bind_each_address(reservation: PortReservation) -> None:
    """Every address the host resolves to, on one port (the first one's, for port 0);
    an address the host cannot bind is passed over, as gRPC does, while another binds."""
    host = reservation.host.strip("[]")
    if host.lower() == "localhost":  # gRPC's resolver gives both, whatever /etc/hosts says
        found = [(family, 0, 0, "", address) for family, address in LOCALHOST]
    else:
        found = socket.getaddrinfo(
            host, reservation.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    skipped: OSError | None = None
    seen: set[tuple[int, tuple]] = set()
    for family, _type, _proto, _name, found_address in found:
        address = (found_address[0], reservation.port, *found_address[2:])
        if (family, address) in seen:
            continue
        seen.add((family, address))
        if reservation.sockets:  # port 0: the others on the port the first one got
            address = (address[0], reservation.sockets[0].getsockname()[1], *address[2:])
        try:
            reservation.sockets.append(_bind(family, address))
        except OSError as exc:
            if exc.errno not in _SKIPPED:
                raise
            skipped = skipped or exc
    if not reservation.sockets:
        raise skipped or OSError(errno.EADDRNOTAVAIL, f"{reservation.host!r} has no address")


def _bind(family: int, address: tuple) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6 and address[0] == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # As gRPC binds: SO_REUSEADDR, so connections of an earlier run in TIME_WAIT do
        # not block the start; no SO_REUSEPORT, so a port in use is refused.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Then the other way round: the processes of this serve may join, nobody else
        # (a newcomer without SO_REUSEPORT, or with SO_REUSEADDR alone, is refused).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except BaseException:
        sock.close()
        raise
    return sock
