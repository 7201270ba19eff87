"""God's own certificate, made on first start, and the connection file other hosts copy.

A god that listens beyond this machine with no certificate given makes a key and a
self-signed certificate in its state directory (once; later starts use them, so clients
that keep a copy keep working) and serves TLS to every peer that is not on this machine.
Clients do not check god's name: they trust exactly this certificate, from the connection
file, as ssh trusts a host key it was given (nobody else holds its key, so an impostor cannot
finish the handshake, and nobody on the path can read or write a frame).

The connection file is what a host needs to reach god, in one file to copy, as a Jupyter
kernel's or a kubeconfig: god's address, its authkey and its certificate, as JSON, readable by
its owner only. Clients take it from GOD_CONNECTION or --connection (shared/config.py).
"""

from __future__ import annotations

import base64
import datetime
import json
import socket
from pathlib import Path

from shared.config import Tls, read_private, state_dir, write_private

CERT_NAME, KEY_NAME = "tls-cert.pem", "tls-key.pem"
VALID_DAYS = 20 * 365  # clients trust this certificate itself, not a CA: it must not lapse under them


def identity(directory: Path | None = None) -> Tls:
    """God's certificate and key in its state directory, made if they are not there yet.

    Raises:
        ConfigError: they cannot be made or read.
    """
    d = directory or state_dir()
    cert, key = d / CERT_NAME, d / KEY_NAME
    if not cert.exists() or not key.exists():
        _make(cert, key)
    read_private(key, "god's TLS key")  # (refused when others may read it, as the authkey file is)
    return Tls(cert=cert, key=key)


def _make(cert: Path, key: Path) -> None:
    from cryptography import x509  # only the first start of a god beyond this machine needs it
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"god on {socket.gethostname()}"[:64])])
    now = datetime.datetime.now(datetime.timezone.utc)
    public = private.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))  # a client's clock a little behind
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        # Its own CA, so that it can be the one certificate a client trusts (OpenSSL's strict
        # checks ask for these on a trust anchor).
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(private, hashes.SHA256())
    )
    key_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    # The key first, then the certificate: a certificate without its key is never left behind
    # (a crash between the two makes both anew at the next start).
    write_private(key, key_pem, what="god's TLS key")
    write_private(cert, certificate.public_bytes(serialization.Encoding.PEM), what="god's TLS certificate")


def connection_path(port: int, directory: Path | None = None) -> Path:
    """Where god writes the connection file for its port."""
    return (directory or state_dir()) / f"connection-{port}.json"


def write_connection(path: Path, address: str, authkey: bytes, cert: Path) -> None:
    """Write (or replace) the connection file: address, key and certificate, mode 0600, as one
    line of JSON (so that it can also travel as a value: GOD_CONNECTION, a line on a pipe)."""
    content = {
        "address": address,
        "authkey_base64": base64.b64encode(authkey).decode(),
        "certificate": cert.read_text(),
    }
    write_private(path, (json.dumps(content) + "\n").encode(), what="the connection file", replace=True)

