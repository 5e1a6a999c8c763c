"""TLS for the client and peer listeners and the peer client, as etcd configures it.

``TLSInfo`` is etcd's transport.TLSInfo: a certificate and key, the CA that client (or peer)
certificates must chain to, whether a client certificate is required, and whether the
certificates were generated here (``--auto-tls`` / ``--peer-auto-tls``: a self-signed
certificate in ``<data-dir>/fixtures/{client,peer}``, which a client then does not verify, as
etcd's selfCert). Certificates are made with ``cryptography`` (``make_ca``, ``issue``), never
by shelling out to openssl; ``cluster up --tls`` and the tests use the same functions.

Server contexts offer ALPN ``h2`` and ``http/1.1`` (gRPC clients require ``h2``); the client
listener still tells the two apart by the first bytes, so a client without ALPN works too.
``TLSListener`` accepts TLS connections itself, so that every refused handshake is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from raftkv.config import Settings

__all__ = [
    "PLAIN_HTTP_ANSWER",
    "MemberTLS",
    "TLSInfo",
    "TLSListener",
    "client_context",
    "for_url",
    "issue",
    "make_ca",
    "member_tls",
    "self_signed",
    "server_context",
    "uses_tls",
]

log = structlog.get_logger("raftkv.tls")

VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class TLSInfo:
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    self_signed: bool = False

    @property
    def empty(self) -> bool:
        return not (self.cert_file and self.key_file)


def uses_tls(urls: list[str]) -> bool:
    return any(urlsplit(u).scheme in ("https", "unixs") for u in urls)


def server_context(info: TLSInfo) -> ssl.SSLContext:
    """The listener's context: its certificate; with ``client_cert_auth``, a client must show
    a certificate from ``trusted_ca_file``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(info.cert_file, info.key_file)
    if info.trusted_ca_file:
        ctx.load_verify_locations(info.trusted_ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED if info.client_cert_auth else ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


def client_context(info: TLSInfo) -> ssl.SSLContext:
    """A dialling member's context: it shows its own certificate (for peers that want one)
    and checks the other side's against ``trusted_ca_file`` (or the system's), unless the
    certificates are self-signed ones made here."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if info.trusted_ca_file:
        ctx.load_verify_locations(info.trusted_ca_file)
    if not info.empty:
        ctx.load_cert_chain(info.cert_file, info.key_file)
    if info.self_signed:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- making certificates --------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _sans(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def _builder(subject: str, issuer: x509.Name, public_key: object) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def make_ca(dirpath: str, name: str = "raftkv-ca") -> tuple[str, str]:
    """A new certificate authority in ``dirpath``: (ca.crt, ca.key) paths."""
    os.makedirs(dirpath, exist_ok=True)
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    crt, kpath = os.path.join(dirpath, "ca.crt"), os.path.join(dirpath, "ca.key")
    _write(crt, cert.public_bytes(serialization.Encoding.PEM))
    _write(kpath, _key_pem(key))
    return crt, kpath


def issue(ca_cert: str, ca_key: str, dirpath: str, name: str, hosts: list[str]) -> tuple[str, str]:
    """A certificate signed by the CA for ``name`` (its common name: the user, when a client
    certificate authenticates), valid for ``hosts`` (IPs and DNS names), usable by servers and
    clients alike (a member is both to its peers): (name.crt, name.key) paths."""
    with open(ca_cert, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(ca_key, "rb") as f:
        signer = serialization.load_pem_private_key(f.read(), None)
    key = _key()
    builder = _builder(name, ca.subject, key.public_key()).add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
        critical=False,
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(hosts)), critical=False)
    cert = builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    os.makedirs(dirpath, exist_ok=True)
    crt, kpath = os.path.join(dirpath, f"{name}.crt"), os.path.join(dirpath, f"{name}.key")
    _write(crt, cert.public_bytes(serialization.Encoding.PEM))
    _write(kpath, _key_pem(key))
    return crt, kpath


def self_signed(dirpath: str, urls: list[str]) -> TLSInfo:
    """etcd's SelfCert: a self-signed certificate for the hosts of ``urls`` in ``dirpath``
    (kept across restarts), for ``--auto-tls`` / ``--peer-auto-tls``."""
    crt, kpath = os.path.join(dirpath, "cert.pem"), os.path.join(dirpath, "key.pem")
    if not (os.path.exists(crt) and os.path.exists(kpath)):
        os.makedirs(dirpath, exist_ok=True)
        key = _key()
        hosts = [urlsplit(u).hostname or "localhost" for u in urls]
        issuer = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcd")])
        cert = (
            _builder("etcd", issuer, key.public_key())
            .add_extension(x509.SubjectAlternativeName(_sans(hosts)), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write(crt, cert.public_bytes(serialization.Encoding.PEM))
        _write(kpath, _key_pem(key))
    return TLSInfo(crt, kpath, self_signed=True)


@dataclass(frozen=True, slots=True)
class MemberTLS:
    """The contexts one member needs: its https client listeners, its https peer listeners,
    and its dialling of https peers (None where nothing uses TLS)."""

    client: ssl.SSLContext | None = None
    peer_server: ssl.SSLContext | None = None
    peer_client: ssl.SSLContext | None = None


def member_tls(cfg: Settings) -> MemberTLS:
    """The contexts for ``cfg``'s flags; ``--auto-tls`` / ``--peer-auto-tls`` make (once) the
    self-signed certificates they stand for, where no certificate is given."""
    client = TLSInfo(cfg.cert_file, cfg.key_file, cfg.trusted_ca_file, cfg.client_cert_auth)
    if client.empty and cfg.auto_tls and uses_tls(cfg.listen_client_urls):
        made = self_signed(
            os.path.join(cfg.data_dir, "fixtures", "client"), cfg.advertise_client_urls
        )
        client = TLSInfo(
            made.cert_file, made.key_file, cfg.trusted_ca_file, cfg.client_cert_auth, True
        )
    peer = TLSInfo(
        cfg.peer_cert_file, cfg.peer_key_file, cfg.peer_trusted_ca_file, cfg.peer_client_cert_auth
    )
    if peer.empty and cfg.peer_auto_tls:
        made = self_signed(
            os.path.join(cfg.data_dir, "fixtures", "peer"), cfg.initial_advertise_peer_urls
        )
        peer = TLSInfo(made.cert_file, made.key_file, "", cfg.peer_client_cert_auth, True)
    return MemberTLS(
        client=server_context(client) if uses_tls(cfg.listen_client_urls) else None,
        peer_server=server_context(peer) if uses_tls(cfg.listen_peer_urls) else None,
        peer_client=client_context(peer) if not peer.empty or peer.trusted_ca_file else None,
    )


def for_url(url: str, ctx: ssl.SSLContext | None) -> ssl.SSLContext | None:
    """``ctx`` for an https URL, None for a plain one (a member may listen on both)."""
    return ctx if urlsplit(url).scheme in ("https", "unixs") else None


# --- accepting TLS connections ----------------------------------------------------------------

# Go's net/http answer to plaintext HTTP on a TLS port (the first bytes are an HTTP method)
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
_HTTP_STARTS = (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO")
HANDSHAKE_TIMEOUT = 10.0
TLS_HANDSHAKE_RECORD = 0x16


class TLSListener:
    """TLS listening sockets whose handshakes are done here, one connection at a time, so that
    a refused connection (a certificate from another CA, none where one is required, plaintext
    on the TLS port) is logged with its peer address, and plaintext HTTP gets Go's answer.
    Accepted connections go to ``factory``'s protocol, like ``loop.create_server``'s."""

    def __init__(self, factory: Callable[[], asyncio.BaseProtocol], ctx: ssl.SSLContext) -> None:
        self._factory = factory
        self._ctx = ctx
        self._socks: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self, host: str, port: int) -> None:
        sock = socket.create_server((host, port), backlog=1024, reuse_port=False)
        sock.setblocking(False)
        self._socks.append(sock)
        self._spawn(self._accept(sock))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, addr = await loop.sock_accept(sock)
            self._spawn(self._handshake(conn, addr))

    async def _handshake(self, conn: socket.socket, addr: Any) -> None:
        loop = asyncio.get_running_loop()
        remote = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
        try:
            first = await asyncio.wait_for(_peek(conn, 5), HANDSHAKE_TIMEOUT)
            if not first or first[0] != TLS_HANDSHAKE_RECORD:
                if first[:5] in _HTTP_STARTS:
                    # read what came first: closing over unread bytes resets the connection,
                    # and the client would lose the answer
                    with contextlib.suppress(BlockingIOError):
                        conn.recv(1 << 16)
                    conn.setblocking(True)
                    conn.sendall(PLAIN_HTTP_ANSWER)
                    conn.shutdown(socket.SHUT_WR)
                log.warning("tls_refused", remote=remote, reason="not a TLS handshake")
                conn.close()
                return
            await loop.connect_accepted_socket(
                self._factory, conn, ssl=self._ctx, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
            )
        except (OSError, TimeoutError) as e:  # ssl.SSLError is an OSError
            log.warning("tls_refused", remote=remote, reason=str(e) or type(e).__name__)
            conn.close()

    async def close(self) -> None:
        for s in self._socks:
            s.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _peek(conn: socket.socket, n: int) -> bytes:
    """The first ``n`` bytes the other side sent (fewer if it sent fewer), left unread."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    fd = conn.fileno()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        loop.remove_reader(fd)
    return conn.recv(n, socket.MSG_PEEK)
