"""A throwaway certificate authority for the test bed's TLS listeners (trustme).

One CA per test session signs one server certificate for ``127.0.0.1`` only. ``localhost``
is left out on purpose: it reaches the same listeners, so connecting to it is the test of a
certificate that does not name the host. A second CA (``stranger``) stands for "a CA this
machine does not trust": pointing ``ca_file`` at it must make verification fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

from .dovecot import TlsFiles
from .ports import HOST


@dataclass(frozen=True)
class TestCa:
    """PEM files of the session's CA, the server certificate it signed, and a stranger CA."""

    __test__ = False  # not a pytest test class

    ca_file: Path
    server: TlsFiles
    stranger_ca_file: Path
    server_name: str = HOST


def make_ca(directory: Path) -> TestCa:
    """Write a fresh CA, a server cert for 127.0.0.1 and an unrelated CA under directory."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="mailflow test bed")
    leaf = ca.issue_cert(HOST, common_name=HOST)
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    chain = directory / "server-chain.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key = directory / "server-key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    # Dovecot's login processes (dovenull when root) read the files after dropping privileges.
    for path in (ca_file, chain, key):
        path.chmod(0o644)
    stranger = directory / "stranger-ca.pem"
    trustme.CA(organization_name="nobody you trust").cert_pem.write_to_path(str(stranger))
    return TestCa(ca_file, TlsFiles(chain, key), stranger)
