"""An HTTPS server on loopback that serves whatever a test puts at a path: the "web" that
client ID metadata documents and JWKS are fetched from in tests.

Its certificate is self-signed for `localhost`, `127.0.0.1` and a few test names; `ssl_context()`
trusts it. One server serves a whole test module (it starts in a few milliseconds, but there is
no reason to start several).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NAMES = ("localhost", "documents.test", "rebind.test")


@dataclass
class Served:
    """One path's answer."""

    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0
    # False: no Content-Length, the body ends when the connection closes (HTTP/1.0).
    length: bool = True


@dataclass
class DocumentHost:
    port: int
    cafile: Path
    routes: dict[str, Served] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"

    def serve(self, path: str, served: Served) -> None:
        with self.lock:
            self.routes[path] = served
            self.hits[path] = 0

    def serve_json(self, path: str, document: Any, **headers: str) -> None:
        self.serve(
            path,
            Served(
                json.dumps(document).encode(),
                headers={"Content-Type": "application/json", **headers},
            ),
        )

    def count(self, path: str) -> int:
        with self.lock:
            return self.hits.get(path, 0)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "baton test documents")])
    now = datetime.datetime.now(datetime.UTC)
    alt = [x509.DNSName(n) for n in NAMES] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextmanager
def document_host() -> Iterator[DocumentHost]:
    with tempfile.TemporaryDirectory() as temporary:
        cert_path, key_path = _certificate(Path(temporary))
        host_ref: list[DocumentHost] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host = host_ref[0]
                path = self.path.split("?", 1)[0]
                with host.lock:
                    served = host.routes.get(path)
                    host.hits[path] = host.hits.get(path, 0) + 1
                if served is None:
                    served = Served(b"{}", status=404)
                if served.delay:
                    time.sleep(served.delay)
                try:
                    self.send_response(served.status)
                    for name, value in served.headers.items():
                        self.send_header(name, value)
                    if served.length and "Content-Length" not in served.headers:
                        self.send_header("Content-Length", str(len(served.body)))
                    self.end_headers()
                    self.wfile.write(served.body)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        host = DocumentHost(port=httpd.server_address[1], cafile=cert_path)
        host_ref.append(host)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield host
        finally:
            httpd.shutdown()
            httpd.server_close()
