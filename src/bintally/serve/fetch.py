"""Fetching the photo a JSON body names: `image_base64`, `s3_uri` or `url`, within the URI policy and the byte limit.

Every hop of a `url` (redirects included) meets `UriPolicy`, and the connection
itself dials only public addresses (`security.PublicOnlyBackend`).
"""

from __future__ import annotations

import base64
import binascii

import anyio
import httpcore
import httpx

from bintally import storage
from bintally.serve.errors import ApiError, bad_image, too_large
from bintally.serve.inputs import ImageRef
from bintally.serve.security import PublicOnlyBackend, UriPolicy

MAX_REDIRECTS = 5
FETCH_TIMEOUT_S = 10.0


class Fetcher:
    """Fetches the bytes an `ImageRef` names, within the URI policy and the byte limit."""

    def __init__(self, policy: UriPolicy, endpoint_url: str | None, max_bytes: int):
        self.policy, self.endpoint_url, self.max_bytes = policy, endpoint_url, max_bytes
        self._pool = httpcore.AsyncConnectionPool(network_backend=PublicOnlyBackend(policy.allow_private_hosts))

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def load(self, ref: ImageRef) -> bytes:
        if ref.image_base64 is not None:
            return decode_base64(ref.image_base64)
        if ref.s3_uri is not None:
            return await anyio.to_thread.run_sync(self._read_s3, self.policy.check_s3(ref.s3_uri))
        assert ref.url is not None  # ImageRef holds exactly one source
        return await self._read_url(ref.url)

    def _read_s3(self, uri: str) -> bytes:
        fs, path = storage.resolve(uri, self.endpoint_url)
        try:
            if fs.size(path) > self.max_bytes:
                raise too_large(f"{uri} is larger than {self.max_bytes:,} bytes")
            return fs.cat_file(path)
        except FileNotFoundError as exc:
            raise ApiError(404, "not_found", f"{uri} does not exist") from exc
        except PermissionError as exc:
            raise ApiError(403, "forbidden_uri", f"the server may not read {uri}") from exc
        except OSError as exc:
            raise ApiError(502, "upstream_error", f"cannot read {uri}: {exc}") from exc

    async def _read_url(self, url: str) -> bytes:
        target = self.policy.check_url(url)
        for _ in range(MAX_REDIRECTS + 1):
            status, location, data = await self._get(target)
            if location is None:
                if status == 404:
                    raise ApiError(404, "not_found", f"{target} answered 404")
                if status >= 400:
                    raise ApiError(502, "upstream_error", f"{target} answered {status}")
                return data
            target = self.policy.check_url(str(target.join(location)))  # every hop meets the same rules
        raise ApiError(502, "upstream_error", f"more than {MAX_REDIRECTS} redirects")

    async def _get(self, url: httpx.URL) -> tuple[int, str | None, bytes]:
        extensions = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), FETCH_TIMEOUT_S)}
        try:
            async with self._pool.stream("GET", str(url), extensions=extensions) as response:
                if 300 <= response.status < 400:
                    location = {k.lower(): v for k, v in response.headers}.get(b"location")
                    if location:
                        return response.status, location.decode("latin-1"), b""
                return response.status, None, await self._read_limited(response)
        except httpcore.TimeoutException as exc:
            raise ApiError(504, "upstream_timeout", f"{url} did not answer in {FETCH_TIMEOUT_S:.0f} s") from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise ApiError(502, "upstream_error", f"cannot fetch {url}: {exc}") from exc

    async def _read_limited(self, response: httpcore.Response) -> bytes:
        chunks, size = [], 0
        async for chunk in response.aiter_stream():
            size += len(chunk)
            if size > self.max_bytes:
                raise too_large(f"the image at the URL is larger than {self.max_bytes:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_image(f"image_base64 is not valid base64: {exc}") from exc
