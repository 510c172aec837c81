"""HTTPS for callers: boto3 verifying a CA made here, and a renewed certificate taken
up without a restart (the files swapped as the kubelet swaps a mounted TLS Secret)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import SSLError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import arn, directory, png, project_arn, rekognition, version

DAY = datetime.timedelta(days=1)


class Authority:
    """A certificate authority of its own, and server certificates it signs."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY)
            .not_valid_after(now + DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def write(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, directory: Path) -> tuple[Path, Path]:
        """tls.crt and tls.key for 127.0.0.1, written as a swap (no half-written file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kiu-gateway")]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY)
            .not_valid_after(now + DAY)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        files = {
            "tls.crt": cert.public_bytes(serialization.Encoding.PEM),
            "tls.key": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        }
        for name, data in files.items():
            staging = directory / f".{name}.new"
            staging.write_bytes(data)
            staging.replace(directory / name)
        return directory / "tls.crt", directory / "tls.key"


def client(port: int, verify: Path | bool) -> Any:
    return rekognition(port, verify=str(verify) if isinstance(verify, Path) else verify)


def handshake(port: int, ca: Path) -> bool:
    """Whether a TLS connection verifying ``ca`` (and the address) succeeds."""
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            return True
    except ssl.SSLError:
        return False


async def test_boto3_calls_the_gateway_over_tls_verifying_the_ca(
    local: Any, tmp_path: Path
) -> None:
    ca = Authority("kiu test CA")
    cert, key = ca.issue(tmp_path)
    options = ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-reload-seconds", "0.1"]
    gw = await local(directory([version("shoes-v3")]), *options)
    trusted = ca.write(tmp_path / "ca.pem")
    answer = await gw.call(
        client(gw.port, trusted).detect_custom_labels,
        ProjectVersionArn=arn("shoes-v3"),
        Image={"Bytes": png()},
    )
    assert answer["CustomLabels"][0]["Name"] == "circle"

    # a client that trusts another CA (here: the system's) refuses the gateway
    with pytest.raises(SSLError):
        await gw.call(
            client(gw.port, True).detect_custom_labels,
            ProjectVersionArn=arn("shoes-v3"),
            Image={"Bytes": png()},
        )
    # plain HTTP gets no answer from the TLS port
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert b"200" not in await reader.read(1024)
    writer.close()

    # renewed by another CA: new connections get the new certificate, no restart
    renewed = Authority("kiu renewed CA")
    renewed.issue(tmp_path)
    renewed_ca = renewed.write(tmp_path / "renewed.pem")
    for _ in range(100):
        if await asyncio.to_thread(handshake, gw.port, renewed_ca):
            break
        await asyncio.sleep(0.1)
    assert not await asyncio.to_thread(handshake, gw.port, trusted)
    answer = await gw.call(
        client(gw.port, renewed_ca).describe_project_versions,
        ProjectArn=project_arn(),
    )
    assert answer["ProjectVersionDescriptions"][0]["Status"] == "RUNNING"


def test_a_certificate_needs_its_key() -> None:
    from kiu.gateway import command

    with pytest.raises(SystemExit):
        command.main(["--directory", "/nonexistent", "--tls-cert", "/tmp/tls.crt"])
