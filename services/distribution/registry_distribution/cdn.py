"""The Cloud CDN in front of blob pulls: its signed URLs, and the origin it fills from.

With CDN_DOMAIN set, a blob GET by an external client is answered with a 307 to
`https://<CDN_DOMAIN>/<name>/blobs/<digest>?Expires=...&KeyName=...&Signature=...`, signed
with CDN_SIGNING_KEY and valid for CDN_URL_TTL. The CDN edge verifies that signature, serves
the blob from its cache or fetches it from the origin: the load balancer sends the request to
this service with the CDN's host name, and `/_cdn/<name>/blobs/<digest>` is the same origin
under a path of its own. Cloud CDN lets unsigned requests through, so the origin verifies the
signature (current or previous key, expiry) itself before anything else: a request without a
valid one gets 403 and learns nothing, not even whether the blob exists, and does not move the
blob's grace clock. Billing is counted at the redirect, where the project is known.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import SecretStr

from registry_common.auth.signed_urls import KEY_NAME, SigningKey, UrlSigner, decode_key
from registry_common.http import DB_POOL, SETTINGS
from registry_common.oci.digests import is_digest
from registry_common.oci.errors import ErrorCode
from registry_common.oci.names import RepositoryName, is_repository_name
from registry_common.registry import blob_store
from registry_common.settings import ConfigError, Settings
from registry_distribution.blob_sending import send_blob
from registry_distribution.errors import OciError

CDN_SIGNER = web.AppKey("cdn_signer", UrlSigner)
PUBLIC_IMMUTABLE = "public, max-age=31536000, immutable"


def create_signer(settings: Settings) -> UrlSigner:
    """The signer of CDN_DOMAIN's URLs from the CDN_*SIGNING_KEY* settings; ConfigError when
    they are missing or malformed."""
    current = _signing_key(
        "CDN_SIGNING_KEY", settings.cdn_signing_key_name, settings.cdn_signing_key
    )
    assert current is not None
    previous = _signing_key(
        "CDN_PREVIOUS_SIGNING_KEY",
        settings.cdn_previous_signing_key_name,
        settings.cdn_previous_signing_key,
        required=False,
    )
    return UrlSigner(current, previous)


def _signing_key(
    variable: str, name: str | None, key: SecretStr | None, *, required: bool = True
) -> SigningKey | None:
    secret = key.get_secret_value() if key is not None else None
    if not required and name is None and secret is None:
        return None
    if not name or not KEY_NAME.match(name):
        raise ConfigError(
            f"{variable}_NAME",
            "required with CDN_DOMAIN: the key's name on the CDN backend (lower-case letters, "
            "digits and dashes, at most 63, starting with a letter)",
        )
    if not secret:
        raise ConfigError(variable, "required with CDN_DOMAIN (base64url of 16 random bytes)")
    try:
        return SigningKey(name, decode_key(secret))
    except ValueError as exc:
        raise ConfigError(variable, str(exc)) from None


def cdn_url(settings: Settings, repository: RepositoryName, digest: str) -> str:
    """The unsigned URL of a blob on the CDN."""
    return f"https://{settings.cdn_domain}/{repository.full}/blobs/{digest}"


def signed_blob_url(app: web.Application, repository: RepositoryName, digest: str) -> str:
    """The signed CDN URL a blob GET redirects to."""
    settings = app[SETTINGS]
    return app[CDN_SIGNER].sign_for(
        cdn_url(settings, repository, digest), settings.cdn_url_ttl.total_seconds()
    )


def _denied() -> OciError:
    return OciError(ErrorCode.DENIED, headers={"Cache-Control": "no-store"})


async def serve_blob(request: web.Request) -> web.StreamResponse:
    """`/_cdn/<name>/blobs/<digest>`: serve a blob to the CDN, if the URL is signed."""
    name, digest = request.match_info["name"], request.match_info["digest"]
    if "%" in request.raw_path or not is_repository_name(name) or not is_digest(digest):
        raise _denied()
    repository = RepositoryName(name)
    settings = request.app[SETTINGS]
    if not request.app[CDN_SIGNER].verify(
        cdn_url(settings, repository, digest), request.query_string
    ):
        raise _denied()
    size = await blob_store.linked_blob_size(
        request.app[DB_POOL], repository, digest, settings.gc_grace_period, refresh=False
    )
    return await send_blob(request, digest, size, PUBLIC_IMMUTABLE)


async def serve_blob_on_cdn_host(request: web.Request) -> web.StreamResponse:
    """`/<name>/blobs/<digest>` with the CDN's host name: the origin as the CDN reaches it."""
    host = request.host.rsplit(":", 1)[0].lower() if request.host else ""
    if host != (request.app[SETTINGS].cdn_domain or "").lower():
        raise web.HTTPNotFound
    return await serve_blob(request)


def configure_cdn(app: web.Application) -> None:
    """With CDN_DOMAIN set, check the signing keys (ConfigError at start) and keep the signer;
    routes.py adds the origin's routes only then."""
    if app[SETTINGS].cdn_domain:
        app[CDN_SIGNER] = create_signer(app[SETTINGS])
