"""API keys and the rules for fetching a URI named in a request.

A URI is fetched only if it starts with a configured allow-list prefix (none by
default). `s3_uri` then goes to the configured S3 endpoint. `url` must be
http(s), and every address its host resolves to must be public: the check runs
inside the connection itself (`PublicOnlyBackend`), at connect time and for
the address actually dialled, so neither a redirect nor a DNS answer that
changes between check and use can reach loopback, link-local or private hosts.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path

import anyio
import httpcore
import httpx

from bintally.serve.errors import ApiError, forbidden_uri


class ApiKeys:
    """Keys from a file, one per line (blank lines and `#` comments ignored)."""

    def __init__(self, keys: Iterable[str]):
        self._keys = [k.encode() for k in keys]
        if not self._keys:
            raise ValueError("the API key file holds no key")

    @classmethod
    def from_file(cls, path: str) -> ApiKeys:
        lines = (line.strip() for line in Path(path).read_text().splitlines())
        return cls(line for line in lines if line and not line.startswith("#"))

    def check(self, authorization: str | None, x_api_key: str | None) -> None:
        """Raise 401 unless a configured key was sent (`Authorization: Bearer K` or `x-api-key: K`)."""
        sent = x_api_key
        if sent is None and authorization and authorization.lower().startswith("bearer "):
            sent = authorization[7:].strip()
        if sent is None:
            raise ApiError(401, "unauthorized", "an API key is required", {"WWW-Authenticate": "Bearer"})
        # Compare against every key, always: the time taken says nothing about which key or how much matched.
        matches = [hmac.compare_digest(sent.encode(), key) for key in self._keys]
        if not any(matches):
            raise ApiError(401, "unauthorized", "wrong API key", {"WWW-Authenticate": "Bearer"})


class UriPolicy:
    """Which URIs in a request may be fetched: allow-listed prefixes, no dot segments, no file://."""

    def __init__(self, allow_prefixes: Sequence[str], allow_private_hosts: bool = False):
        self.allow_prefixes = tuple(allow_prefixes)
        self.allow_private_hosts = allow_private_hosts

    def check_s3(self, uri: str) -> str:
        if not uri.startswith("s3://"):
            raise forbidden_uri("s3_uri must start with s3://")
        self._check_allowed(uri)
        return uri

    def check_url(self, url: str) -> httpx.URL:
        """The URL, normalised (dot segments resolved) before it is compared with the allow-list."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ApiError(422, "invalid_request", f"not a URL: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise forbidden_uri("only http:// and https:// URLs with a host can be fetched")
        self._check_allowed(str(parsed))
        return parsed

    def _check_allowed(self, uri: str) -> None:
        if any(segment in (".", "..") for segment in uri.split("://", 1)[-1].split("/")):
            raise forbidden_uri("URIs with '.' or '..' segments are refused")
        if not any(uri.startswith(prefix) for prefix in self.allow_prefixes):
            raise forbidden_uri(f"{uri} is outside the allowed prefixes (--allow-uri-prefix)")


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def public_address(host: str, port: int) -> str:
    """The first address of `host`, if every address it resolves to is public; else 403."""
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ApiError(404, "not_found", f"cannot resolve host {host}: {exc}") from exc
    addresses = [str(info[4][0]) for info in infos]
    refused = [a for a in addresses if not is_public(a)]
    if refused or not addresses:
        raise forbidden_uri(f"{host} resolves to a non-public address ({', '.join(refused) or 'none'})")
    return addresses[0]


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """An httpcore backend that dials only public addresses (unless private hosts are allowed).

    It connects to the checked IP itself; TLS still verifies the original host name,
    which httpcore passes to `start_tls` separately.
    """

    def __init__(self, allow_private_hosts: bool = False):
        self._inner = httpcore.AnyIOBackend()
        self._allow_private_hosts = allow_private_hosts

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        if not self._allow_private_hosts:
            host = await public_address(host, port)
        return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise forbidden_uri("unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
