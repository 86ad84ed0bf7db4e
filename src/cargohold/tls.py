"""Self-signed TLS: a small CA and a server certificate for the configured names, in the data dir."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def ensure_self_signed(directory: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """Return (ca.crt, server.crt, server.key); regenerate the server cert when names change."""
    tls_dir = directory / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key = tls_dir / "ca.crt", tls_dir / "ca.key"
    crt, key = tls_dir / "server.crt", tls_dir / "server.key"
    names_file = tls_dir / "names"
    wanted = "\n".join(sorted(set(names)))
    now = datetime.datetime.now(datetime.UTC)
    if not ca_crt.exists() or not ca_key.exists():
        ca_private = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cargohold local CA")])
        ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
                   .public_key(ca_private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                  critical=True)
                   .sign(ca_private, hashes.SHA256()))
        _write(ca_key, ca_private.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()), 0o600)
        _write(ca_crt, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        names_file.unlink(missing_ok=True)
    if crt.exists() and key.exists() and names_file.exists() and names_file.read_text() == wanted:
        return ca_crt, crt, key
    ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
    ca_private_key = serialization.load_pem_private_key(ca_key.read_bytes(), None)
    assert isinstance(ca_private_key, ec.EllipticCurvePrivateKey)
    private = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(_san(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_private_key, hashes.SHA256()))
    _write(key, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()), 0o600)
    _write(crt, cert.public_bytes(serialization.Encoding.PEM) + ca_crt.read_bytes(), 0o644)
    names_file.write_text(wanted)
    return ca_crt, crt, key
