"""TLS files that cannot work are named as such at start, never as "cannot listen"."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support import run_cli

from leasebroker.wire.tls import ServerTls, TlsError


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two self-signed certificates with their keys (a.pem/a.key, b.pem/b.key)."""
    if not shutil.which("openssl"):
        if os.environ.get("CI"):
            pytest.fail("CI must run the TLS tests: openssl is not installed")
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls-files")
    for name in ("a", "b"):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}"],
            cwd=folder, check=True, capture_output=True,
        )  # fmt: skip
    (folder / "garbage.pem").write_text("not a certificate\n")
    return folder


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
