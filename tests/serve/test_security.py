"""API keys, the URI allow-list and the public-address rule, including redirects, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from bintally.serve.app import ServeConfig
from bintally.serve.errors import ApiError
from bintally.serve.fetch import Fetcher
from bintally.serve.inputs import ImageRef
from bintally.serve.security import ApiKeys, UriPolicy, is_public


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # the cloud metadata service
        ("0.0.0.0", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("224.0.0.1", False),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        # IPv6 forms that embed an IPv4 address: the embedded address decides.
        ("64:ff9b::a00:1", False),  # NAT64 to 10.0.0.1
        ("64:ff9b::7f00:1", False),  # NAT64 to 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 to the metadata service
        ("64:ff9b:1::808:808", False),  # local-use NAT64 (RFC 8215)
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:c0a8:101::1", False),  # 6to4 of 192.168.1.1
        ("::7f00:1", False),  # IPv4-compatible 127.0.0.1
        ("::a00:1", False),  # IPv4-compatible 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo, client 10.0.0.1
        ("2001:0:a00:1:8000:63bf:f7f7:f7f7", False),  # Teredo, server 10.0.0.1
        ("::ffff:0:7f00:1", False),  # IPv4-translated (SIIT) 127.0.0.1
        ("fec0::1", False),  # site-local
        ("64:ff9b::808:808", True),  # NAT64 to 8.8.8.8
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
    ],
)
def test_only_global_addresses_are_public(address, public):
    """Loopback, private, link-local, unspecified, multicast and IPv4-mapped loopback are not public; global ones are;
    an IPv6 address that embeds an IPv4 one (mapped, compatible, NAT64, 6to4, Teredo) is public only if that is."""
    assert is_public(address) is public


def test_api_keys_from_file(tmp_path):
    """A key file with comments and blanks: either header form of a listed key passes; a wrong or missing key is 401."""
    key_file = tmp_path / "keys"
    key_file.write_text("# ops team\nalpha-key\n\n  beta-key  \n")
    keys = ApiKeys.from_file(str(key_file))
    keys.check(None, "alpha-key")
    keys.check("Bearer beta-key", None)
    for authorization, x_api_key in [(None, None), ("Bearer nope", None), (None, "alpha"), ("Basic alpha-key", None)]:
        with pytest.raises(ApiError) as err:
            keys.check(authorization, x_api_key)
        assert err.value.status == 401


def test_empty_key_file_is_refused(tmp_path):
    """A key file with no key would lock everyone out silently; it is an error at start instead."""
    (tmp_path / "keys").write_text("# nothing yet\n")
    with pytest.raises(ValueError, match="no key"):
        ApiKeys.from_file(str(tmp_path / "keys"))


@pytest.mark.parametrize(
    "uri",
    ["s3://other/x.jpg", "s3://bins/allowed/../secret/x.jpg", "s3://bins/allowedx/y.jpg", "file:///etc/passwd", "/etc/passwd"],
)
def test_s3_uri_outside_allow_list_is_403(uri):
    """Only s3:// URIs under an allowed prefix pass; other buckets, look-alike prefixes, dot segments and files do not."""
    policy = UriPolicy(["s3://bins/allowed/"])
    assert policy.check_s3("s3://bins/allowed/a/b.jpg") == "s3://bins/allowed/a/b.jpg"
    with pytest.raises(ApiError) as err:
        policy.check_s3(uri)
    assert err.value.status == 403


@pytest.mark.parametrize(
    ("prefix", "url"),
    [
        ("https://images.example.com", "https://images.example.com@evil.net/x.jpg"),  # user info: the host is evil.net
        ("https://images.example.com", "https://images.example.com.evil.net/x.jpg"),  # a longer host name
        ("https://images.example.com", "https://images.example.com:8443/x.jpg"),  # another port
        ("https://images.example.com", "http://images.example.com/x.jpg"),  # another scheme
        ("https://images.example.com/photos", "https://images.example.com/photos2/x.jpg"),  # a longer segment
        ("https://images.example.com/photos", "https://images.example.com/photos/%2e%2e/secret/x.jpg"),  # encoded dots
        ("https://images.example.com/photos", "https://images.example.com/photos/%2E%2e%2fsecret%2fx.jpg"),
        ("https://images.example.com/photos", "https://images.example.com/photos/..%5csecret/x.jpg"),  # backslash
        ("https://images.example.com/photos/", "https://images.example.com/x.jpg?/photos/"),  # a query is no path
        ("https://images.example.com/photos", "https://images.example.com/photos/..;/admin"),  # Tomcat reads ..; as ..
        ("https://images.example.com/photos", "https://images.example.com/photos/%252e%252e/admin"),  # decoded twice
        ("https://images.example.com/photos", "https://images.example.com/photos/%ef%bc%8e%ef%bc%8e/admin"),  # full-width
    ],
)
def test_allow_list_compares_parsed_urls_not_strings(prefix, url):
    """Every URL here starts with the prefix as a string, or reaches outside it by decoding: all are 403."""
    with pytest.raises(ApiError) as err:
        UriPolicy([prefix]).check_url(url)
    assert err.value.status == 403


@pytest.mark.parametrize(
    "url",
    [
        "https://images.example.com/photos/x.jpg",
        "https://IMAGES.Example.com./photos/a/x.jpg",  # host names compare case-blind, without the root dot
        "https://images.example.com:443/photos/x.jpg?signature=abc",  # the default port, and a signed URL's query
    ],
)
def test_allow_list_admits_urls_inside_the_prefix(url):
    assert UriPolicy(["https://images.example.com/photos"]).check_url(url).host


def test_user_info_is_refused_even_where_private_hosts_are_allowed():
    """With --allow-private-hosts, `http://internal@169.254.169.254/` must not pass as `http://internal...`."""
    with pytest.raises(ApiError) as err:
        UriPolicy(["http://internal"], allow_private_hosts=True).check_url("http://internal@169.254.169.254/latest/")
    assert err.value.status == 403


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bins/allowed@evil/x.jpg",
        "s3://bins/allowed/../secret/x.jpg",
        "s3://bins/allowed2/x.jpg",
        "s3://bins/%61llowed/x.jpg",  # an S3 key is literal: this one is not under allowed/
        "s3://BINS/allowed/x.jpg",
        "s3://bins:1/allowed/x.jpg",
    ],
)
def test_s3_allow_list_compares_bucket_and_whole_segments(uri):
    policy = UriPolicy(["s3://bins/allowed"])
    assert policy.check_s3("s3://bins/allowed/a/x.jpg") == "s3://bins/allowed/a/x.jpg"
    with pytest.raises(ApiError) as err:
        policy.check_s3(uri)
    assert err.value.status == 403


@pytest.mark.parametrize(
    "prefix", ["images.example.com/", "ftp://images.example.com/", "https://user@images.example.com/", "https://h/a/../b", "s3://"]
)
def test_a_prefix_that_cannot_be_compared_is_refused_at_startup(prefix):
    """No scheme, another scheme, user info, dot segments, no bucket: the server refuses to start, naming the prefix."""
    with pytest.raises(ValueError, match="prefix|segments"):
        UriPolicy([prefix])
    with pytest.raises(ValidationError):
        ServeConfig(model="m", allow_uri_prefixes=[prefix])


class _PhotoServer(BaseHTTPRequestHandler):
    """/allowed/photo.jpg is a photo; /allowed/hop redirects inside the allow-list, /allowed/escape outside it."""

    routes = {"/allowed/hop": "/allowed/photo.jpg", "/allowed/escape": "/private/photo.jpg"}
    photo = b""

    def do_GET(self):
        if self.path in self.routes:
            self.send_response(302)
            self.send_header("Location", self.routes[self.path])
            self.end_headers()
        elif self.path.endswith("/photo.jpg"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.photo)))
            self.end_headers()
            self.wfile.write(self.photo)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def photo_server(photos):
    _PhotoServer.photo = next(iter(photos.values()))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PhotoServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _fetch(policy: UriPolicy, url: str, max_bytes: int = 2**20) -> bytes:
    async def go():
        fetcher = Fetcher(policy, None, max_bytes)
        try:
            return await fetcher.load(ImageRef(url=url))
        finally:
            await fetcher.aclose()

    return asyncio.run(go())


def _status(policy: UriPolicy, url: str, max_bytes: int = 2**20) -> int:
    with pytest.raises(ApiError) as err:
        _fetch(policy, url, max_bytes)
    return err.value.status


def test_url_fetch_follows_redirects_and_rechecks_each_hop(photo_server):
    """With private hosts allowed (an on-premises image store): a photo and a redirect inside the allow-list are
    fetched; a redirect leaving it is 403, a missing photo 404, a photo over the byte limit 413."""
    policy = UriPolicy([f"{photo_server}/allowed/"], allow_private_hosts=True)
    assert _fetch(policy, f"{photo_server}/allowed/photo.jpg") == _PhotoServer.photo
    assert _fetch(policy, f"{photo_server}/allowed/hop") == _PhotoServer.photo
    assert _status(policy, f"{photo_server}/allowed/escape") == 403
    assert _status(policy, f"{photo_server}/allowed/missing.jpg") == 404
    assert _status(policy, f"{photo_server}/allowed/photo.jpg", max_bytes=1000) == 413


def test_url_to_loopback_is_refused_at_connect_time(photo_server):
    """By default, even an allow-listed URL is refused (403) when its host is loopback, by IP or by name."""
    port = photo_server.rsplit(":", 1)[1]
    policy = UriPolicy([f"{photo_server}/", f"http://localhost:{port}/"])
    assert _status(policy, f"{photo_server}/allowed/photo.jpg") == 403
    assert _status(policy, f"http://localhost:{port}/allowed/photo.jpg") == 403


FAKE_PUBLIC = "93.184.216.34"  # a global address no test ever dials: connections to it are redirected to loopback


class _Hops(BaseHTTPRequestHandler):
    """/start/<name> redirects to `targets[name]`; every request is recorded in `seen`."""

    targets: dict[str, str] = {}
    seen: list[str] = []

    def do_GET(self):
        self.seen.append(self.path)
        name = self.path.removeprefix("/start/")
        if name in self.targets:
            self.send_response(302)
            self.send_header("Location", self.targets[name])
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_internet(monkeypatch):
    """A local server reached under public-looking names: `public.example` resolves to FAKE_PUBLIC, `mixed.example`
    to FAKE_PUBLIC and 10.0.0.7. Dialling FAKE_PUBLIC reaches the local server; dialling anything but loopback
    fails the test, so nothing here leaves 127.0.0.1. Yields the server's port."""
    import httpcore

    from bintally.serve import security

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hops)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    names = {"public.example": [FAKE_PUBLIC], "mixed.example": [FAKE_PUBLIC, "10.0.0.7"]}
    real_getaddrinfo, real_connect = security.anyio.getaddrinfo, httpcore.AnyIOBackend.connect_tcp

    async def getaddrinfo(host, port, **kwargs):
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in names[host]]
        return await real_getaddrinfo(host, port, **kwargs)

    async def connect_tcp(self, host, port, *args, **kwargs):
        host = "127.0.0.1" if host == FAKE_PUBLIC else host
        assert host == "127.0.0.1", f"a test tried to dial {host}"
        return await real_connect(self, host, port, *args, **kwargs)

    monkeypatch.setattr(security.anyio, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", connect_tcp)
    _Hops.seen = []
    yield port
    server.shutdown()


def test_a_public_url_is_fetched_through_the_fake_resolver(fake_internet):
    """The harness itself: a public-looking host is fetched (so the refusals below are the address rule at work)."""
    policy = UriPolicy([f"http://public.example:{fake_internet}/"])
    assert _fetch(policy, f"http://public.example:{fake_internet}/photo") == b"ok"


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/secret",
        "http://localhost:{port}/secret",
        "http://169.254.169.254/latest/meta-data/",  # the cloud metadata service
        "http://10.0.0.5/internal",
        "http://192.168.1.1/router",
        "http://[::1]:{port}/secret",
        "http://[::ffff:127.0.0.1]:{port}/secret",
    ],
)
def test_a_redirect_from_a_public_host_to_a_private_address_is_refused_at_the_hop(fake_internet, target):
    """public.example answers 302 to a loopback, link-local, private or IPv6-loopback address that is itself on
    the allow-list. Must hold: 403 at the hop, and the only request that reached anything is the first one."""
    port = fake_internet
    hop = target.format(port=port)
    _Hops.targets = {"hop": hop}
    prefixes = [f"http://public.example:{port}/", hop.rsplit("/", 1)[0] + "/"]
    with pytest.raises(ApiError) as err:
        _fetch(UriPolicy(prefixes), f"http://public.example:{port}/start/hop")
    assert err.value.status == 403 and "non-public address" in err.value.message
    assert _Hops.seen == ["/start/hop"]


def test_a_host_with_one_private_address_among_public_ones_is_refused(fake_internet):
    """mixed.example resolves to a public address and to 10.0.0.7: refused (403) before any connection."""
    with pytest.raises(ApiError) as err:
        _fetch(UriPolicy([f"http://mixed.example:{fake_internet}/"]), f"http://mixed.example:{fake_internet}/photo")
    assert err.value.status == 403 and "10.0.0.7" in err.value.message
    assert _Hops.seen == []


@pytest.mark.parametrize("host", ["[::1]", "[::ffff:127.0.0.1]", "[0:0:0:0:0:ffff:7f00:1]", "127.1", "0x7f.0.0.1"])
def test_loopback_in_any_spelling_is_refused(fake_internet, host):
    """IPv6 loopback, IPv4-mapped loopback (two spellings) and short or hex IPv4 forms: 403, nothing reached."""
    url = f"http://{host}:{fake_internet}/photo"
    with pytest.raises(ApiError) as err:
        _fetch(UriPolicy([f"http://{host}:{fake_internet}/"]), url)
    assert err.value.status == 403
    assert _Hops.seen == []
