"""One aiohttp client for both registries: the same requests, differing only in credentials.

Against our service it obtains a Bearer token once (per round) through the `/v2/` challenge and
`/token`, and sends it on every request, as docker does within a push or pull; the reference
runs without auth and gets no header.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from benchmarks.servers import Registry
from tests.fixtures.distribution import OCI_INDEX, OCI_MANIFEST, Image
from tests.fixtures.processes import authorization_for

MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
READ_SIZE = 1024 * 1024


class RequestFailed(Exception):
    """A request answered with an unexpected status."""


def digest_of(data: bytes | memoryview) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class RegistryClient:
    """Registry operations over one connection pool; raises RequestFailed on a bad status."""

    def __init__(self, registry: Registry, session: aiohttp.ClientSession) -> None:
        self.registry = registry
        self.session = session
        self.headers: dict[str, str] = {}

    async def authenticate(self, repositories: list[str]) -> None:
        """Get a token for pull and push on `repositories` (nothing to do without auth)."""
        scopes = [f"repository:{name}:pull,push" for name in repositories]
        self.headers = await authorization_for(
            self.session, self.registry.url, self.registry.credentials, scopes
        )

    def _url(self, path: str) -> str:
        if path.startswith("http://"):
            return path
        return f"{self.registry.url}{path}"

    async def _start_upload(self, name: str) -> str:
        async with self.session.post(
            self._url(f"/v2/{name}/blobs/uploads/"), headers=self.headers
        ) as response:
            await _expect(response, 202)
            return response.headers["Location"]

    async def push_monolithic(self, name: str, data: bytes | memoryview, digest: str) -> None:
        """POST an upload, then PUT the whole blob with its digest."""
        location = await self._start_upload(name)
        async with self.session.put(
            self._url(location),
            params={"digest": digest},
            data=data,
            headers={**self.headers, "Content-Type": "application/octet-stream"},
        ) as response:
            await _expect(response, 201)

    async def push_chunked(
        self, name: str, data: bytes | memoryview, digest: str, chunk_size: int
    ) -> None:
        """POST an upload, PATCH `chunk_size` chunks with Content-Range, PUT the digest."""
        location = await self._start_upload(name)
        view = memoryview(data)
        for start in range(0, len(view), chunk_size):
            chunk = view[start : start + chunk_size]
            async with self.session.patch(
                self._url(location),
                data=chunk,
                headers={
                    **self.headers,
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{start + len(chunk) - 1}",
                },
            ) as response:
                await _expect(response, 202)
                location = response.headers["Location"]
        async with self.session.put(
            self._url(location), params={"digest": digest}, headers=self.headers
        ) as response:
            await _expect(response, 201)

    async def blob_exists(self, name: str, digest: str) -> bool:
        async with self.session.head(
            self._url(f"/v2/{name}/blobs/{digest}"), headers=self.headers
        ) as response:
            if response.status == 404:
                return False
            await _expect(response, 200)
            return True

    async def pull_blob(self, name: str, digest: str) -> int:
        """GET a blob, reading and discarding the body; the number of bytes read."""
        received = 0
        async with self.session.get(
            self._url(f"/v2/{name}/blobs/{digest}"), headers=self.headers
        ) as response:
            await _expect(response, 200)
            async for chunk in response.content.iter_chunked(READ_SIZE):
                received += len(chunk)
        return received

    async def put_manifest(
        self, name: str, reference: str, manifest: bytes, media_type: str = OCI_MANIFEST
    ) -> None:
        async with self.session.put(
            self._url(f"/v2/{name}/manifests/{reference}"),
            data=manifest,
            headers={**self.headers, "Content-Type": media_type},
        ) as response:
            await _expect(response, 201)

    async def push_image(self, name: str, tag: str, image: Image) -> None:
        """What docker does per image: for each blob HEAD, and upload if missing; then the
        manifest by tag."""
        for digest, blob in image.blobs.items():
            if not await self.blob_exists(name, digest):
                await self.push_monolithic(name, blob, digest)
        await self.put_manifest(name, tag, image.manifest, image.media_type)

    async def head_manifest(self, name: str, reference: str) -> None:
        async with self.session.head(
            self._url(f"/v2/{name}/manifests/{reference}"),
            headers={**self.headers, "Accept": MANIFEST_ACCEPT},
        ) as response:
            await _expect(response, 200)

    async def get_manifest(self, name: str, reference: str) -> bytes:
        async with self.session.get(
            self._url(f"/v2/{name}/manifests/{reference}"),
            headers={**self.headers, "Accept": MANIFEST_ACCEPT},
        ) as response:
            await _expect(response, 200)
            return await response.read()


async def _expect(response: aiohttp.ClientResponse, status: int) -> None:
    if response.status != status:
        body = (await response.read())[:300]
        raise RequestFailed(f"{response.method} {response.url.path}: {response.status} {body!r}")


@asynccontextmanager
async def client_for(registry: Registry, connections: int) -> AsyncIterator[RegistryClient]:
    """A client with its own pool of at most `connections` connections."""
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield RegistryClient(registry, session)
