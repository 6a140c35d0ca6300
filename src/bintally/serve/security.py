"""API keys and the rules for fetching a URI named in a request.

A URI is fetched only if it lies inside a configured allow-list prefix (none by
default), compared as parsed parts: scheme, host and port equal, then the path by
whole, percent-decoded segments; user info (`user@host`) and dot segments, encoded
or not, are refused. `s3_uri` then goes to the configured S3 endpoint. `url` must be
http(s), and every address its host resolves to must be public: the check runs
inside the connection itself (`PublicOnlyBackend`), at connect time and for
the address actually dialled, so neither a redirect nor a DNS answer that
changes between check and use can reach loopback, link-local or private hosts.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

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


DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class UriPrefix:
    """An allow-list entry, parsed: a URI is inside it when scheme, host and port are equal and its
    path starts with the prefix's path segments, whole segments only (`/photos` does not admit `/photos2`)."""

    scheme: str
    host: str
    port: int | None
    segments: tuple[str, ...]

    @classmethod
    def parse(cls, prefix: str) -> UriPrefix:
        """The prefix as written at startup; ValueError for one that could never be compared safely."""
        parts = urlsplit(prefix)
        scheme = parts.scheme.lower()
        if scheme not in ("s3", *DEFAULT_PORTS) or not parts.hostname:
            raise ValueError(f"allow-list prefix {prefix!r} must be s3://BUCKET/..., http://HOST/... or https://HOST/...")
        if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
            raise ValueError(f"allow-list prefix {prefix!r} may not hold user info, a query or a fragment")
        return cls(scheme, _host(parts.hostname), _port(scheme, parts.port), path_segments(parts.path, prefix, decode=scheme != "s3"))

    def admits(self, other: UriPrefix) -> bool:
        head = (self.scheme, self.host, self.port)
        return head == (other.scheme, other.host, other.port) and other.segments[: len(self.segments)] == self.segments


def path_segments(path: str, uri: str, decode: bool = True) -> tuple[str, ...]:
    """The path's non-empty segments, percent-decoded once (`decode`; an S3 key is literal); ValueError for a segment
    a server could read as '.' or '..': encoded, after a backslash, before a ';' parameter (`..;/`, as Tomcat reads
    it), in full-width dots, or still percent-encoded after one decoding (a server that decodes twice)."""
    decoded = unquote(path) if decode else path
    for segment in re.split(r"[/\\]", decoded):
        if unicodedata.normalize("NFKC", segment.split(";")[0]) in (".", ".."):
            raise ValueError(f"{uri}: URIs with '.' or '..' segments are refused")
        if decode and re.search(r"%[0-9a-fA-F]{2}", segment):
            raise ValueError(f"{uri}: URIs encoded twice are refused")
    return tuple(segment for segment in decoded.split("/") if segment)


def _host(host: str) -> str:
    return host.lower().rstrip(".")


def _port(scheme: str, port: int | None) -> int | None:
    return port if port is not None else DEFAULT_PORTS.get(scheme)


class UriPolicy:
    """Which URIs in a request may be fetched: inside an allow-listed prefix, compared part by part."""

    def __init__(self, allow_prefixes: Sequence[str], allow_private_hosts: bool = False):
        self.allow_prefixes = tuple(UriPrefix.parse(p) for p in allow_prefixes)
        self.allow_private_hosts = allow_private_hosts

    def check_s3(self, uri: str) -> str:
        if not uri.startswith("s3://"):
            raise forbidden_uri("s3_uri must start with s3://")
        parts = urlsplit(uri)
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", parts.netloc) or parts.query or parts.fragment:
            raise forbidden_uri(f"{uri}: an s3_uri is s3://BUCKET/KEY (a bucket name, no user info, port, query or fragment)")
        self._check_allowed(uri, lambda: UriPrefix("s3", parts.netloc, None, path_segments(parts.path, uri, decode=False)))
        return uri

    def check_url(self, url: str) -> httpx.URL:
        """The URL, normalised (dot segments resolved) before it is compared with the allow-list."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ApiError(422, "invalid_request", f"not a URL: {exc}") from exc
        if parsed.scheme not in DEFAULT_PORTS or not parsed.host:
            raise forbidden_uri("only http:// and https:// URLs with a host can be fetched")
        if parsed.userinfo:
            raise forbidden_uri("URLs with user info (user@host) are refused")
        path = parsed.raw_path.decode("ascii").split("?", 1)[0]
        host, port = _host(parsed.host), _port(parsed.scheme, parsed.port)
        self._check_allowed(str(parsed), lambda: UriPrefix(parsed.scheme, host, port, path_segments(path, url)))
        return parsed

    def _check_allowed(self, uri: str, parse: Callable[[], UriPrefix]) -> None:
        try:
            parsed = parse()
        except ValueError as exc:
            raise forbidden_uri(str(exc)) from exc
        if not any(prefix.admits(parsed) for prefix in self.allow_prefixes):
            raise forbidden_uri(f"{uri} is outside the allowed prefixes (--allow-uri-prefix)")


# IPv6 forms that carry an IPv4 address, which is what the packet finally reaches (RFC 6052, 4291, 6145, 3056, 4380).
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT (RFC 6145)
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# Never public, whatever they carry.
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # local-use translation (RFC 8215)
SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")  # deprecated, still routed inside some networks


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address embeds: mapped, compatible, translated, NAT64, 6to4, Teredo (server and client)."""
    found = [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour) if v4 is not None]
    if ip in NAT64 or ip in IPV4_COMPATIBLE or ip in IPV4_TRANSLATED:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL or ip in SITE_LOCAL:
            return False
        embedded = embedded_ipv4(ip)
        if embedded:  # the wrapper says nothing; the IPv4 address it reaches decides
            return all(_is_global(v4) for v4 in embedded)
    return _is_global(ip)


def _is_global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
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
