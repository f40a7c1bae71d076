"""TLS for the BookingService port: server certificates, and mutual TLS when a client CA
is given (the Actions Center v2 guide requires mTLS; v0 partners are expected to serve
TLS too). Also the client side, for ``leasebroker lease create``."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc


class TlsError(ValueError):
    """A TLS file is missing, unreadable, or the options do not fit together."""


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def _check_pair(cert: str, key: str) -> None:
    """Load the certificate chain and key together, as a TLS server would."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # A password callback, so an encrypted key fails here instead of prompting.
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise TlsError(f"the TLS key {key} does not match the certificate {cert}") from exc
        raise TlsError(
            f"cannot use the TLS certificate {cert} with the key {key} "
            f"(both PEM, the key unencrypted): {exc.reason or exc}"
        ) from exc


@dataclass(frozen=True)
class ServerTls:
    """PEM files: the server's certificate chain and key, and optionally the CA that
    client certificates must chain to (then a client without one is refused)."""

    cert: str
    key: str
    client_ca: str | None = None

    @classmethod
    def from_options(
        cls, cert: str | None, key: str | None, client_ca: str | None
    ) -> ServerTls | None:
        """None for plaintext; TlsError when only some of the options are given."""
        if not (cert or key or client_ca):
            return None
        if not (cert and key):
            raise TlsError("TLS needs both --tls-cert and --tls-key")
        return cls(cert, key, client_ca)

    def credentials(self) -> grpc.ServerCredentials:
        """The server credentials; TlsError for a file that is missing or not PEM, and
        for a key that does not belong to the certificate (gRPC itself would only say
        "failed to bind", which sends an operator to look at the port)."""
        pair = (_read(self.key, "TLS key"), _read(self.cert, "TLS certificate"))
        _check_pair(self.cert, self.key)
        if self.client_ca is None:
            return grpc.ssl_server_credentials([pair])
        return grpc.ssl_server_credentials(
            [pair],
            root_certificates=_read(self.client_ca, "client CA"),
            require_client_auth=True,
        )


def channel_credentials(
    ca: str | None, cert: str | None, key: str | None
) -> grpc.ChannelCredentials:
    """Client credentials: ``ca`` to trust (default: the system's), and a client
    certificate and key for a server that requires mutual TLS."""
    if bool(cert) != bool(key):
        raise TlsError("a client certificate needs both --tls-cert and --tls-key")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "CA") if ca else None,
        private_key=_read(key, "TLS key") if key else None,
        certificate_chain=_read(cert, "TLS certificate") if cert else None,
    )
