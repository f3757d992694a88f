"""A throwaway CA, a server certificate for 127.0.0.1 / localhost, and client certificates."""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class ServerPKI:
    ca_cert: Path  # PEM; what clients trust (the registry's ca_bundle, certs.d/<host>/ca.crt)
    cert: Path  # server certificate PEM
    key: Path  # server key PEM (unencrypted)
    ca_key: Path | None = None  # the CA's key PEM, to sign client certificates (make_client_cert)


@dataclass(frozen=True)
class ClientCert:
    cert: Path  # client certificate PEM (extended key usage: client auth)
    key: Path  # its key PEM (unencrypted)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.timezone.utc)
    # Backdated a little: a container or engine whose clock lags must not see "not yet valid".
    return now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7)


def make_server_pki(directory: Path, common_name: str = "python-image-builder test registry") -> ServerPKI:
    directory.mkdir(parents=True, exist_ok=True)
    not_before, not_after = _validity()

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{common_name} CA")
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(not_before).not_valid_after(not_after)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))

    pki = ServerPKI(directory / "ca.crt", directory / "server.crt", directory / "server.key",
                    directory / "ca.key")
    pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pki.key)
    _write_key(ca_key, pki.ca_key)
    return pki


def make_client_cert(pki: ServerPKI, directory: Path, common_name: str = "client") -> ClientCert:
    """A client certificate signed by `pki`'s CA: what a TLS server with --tlsverify asks for."""
    if pki.ca_key is None:
        raise ValueError("this PKI keeps no CA key; make it with make_server_pki")
    directory.mkdir(parents=True, exist_ok=True)
    not_before, not_after = _validity()
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    client = ClientCert(directory / f"{common_name}.crt", directory / f"{common_name}.key")
    client.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, client.key)
    return client
