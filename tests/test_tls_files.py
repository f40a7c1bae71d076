"""TLS files that cannot work are named as such at start, never as "cannot listen"."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import run_cli

from leasebroker.wire.tls import ServerTls, TlsError


@pytest.fixture
def pairs(certs: Path, tmp_path: Path) -> Path:
    """The test certificates as two pairs (a = server, b = client) and a file that is
    not PEM at all."""
    for name, source in (("a", "server"), ("b", "client")):
        for ext in ("pem", "key"):
            (tmp_path / f"{name}.{ext}").write_bytes((certs / f"{source}.{ext}").read_bytes())
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    return tmp_path


def test_a_matching_pair_gives_credentials(pairs: Path) -> None:
    assert ServerTls(str(pairs / "a.pem"), str(pairs / "a.key")).credentials() is not None


def test_a_key_of_another_certificate_is_named(pairs: Path) -> None:
    with pytest.raises(TlsError, match="does not match the certificate"):
        ServerTls(str(pairs / "a.pem"), str(pairs / "b.key")).credentials()


def test_a_file_that_is_not_pem_is_named(pairs: Path) -> None:
    with pytest.raises(TlsError, match="cannot use the TLS certificate"):
        ServerTls(str(pairs / "garbage.pem"), str(pairs / "a.key")).credentials()


def test_serve_with_a_mismatched_key_exits_2_saying_so(pairs: Path) -> None:
    result = run_cli(
        ["serve", "--port", "0", "--admin-port", "-1",
         "--tls-cert", str(pairs / "a.pem"), "--tls-key", str(pairs / "b.key")]
    )  # fmt: skip
    assert result.returncode == 2
    assert "does not match the certificate" in result.stderr
    assert "cannot listen" not in result.stderr
    assert "Traceback" not in result.stderr
