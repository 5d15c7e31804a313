"""`GET /v2/<name>/tags/list`: order, pagination and its bounds, on every storage backend."""

from __future__ import annotations

import asyncpg
import pytest

from registry_distribution.pages import MAX_PAGE_SIZE
from tests.fixtures.distribution import RegistryClient, assert_oci_error, make_image
from tests.fixtures.services import ServiceClient

NAME = "proj/app"
# Byte order: digits, then upper case, then `_`, then lower case.
TAGS = ["v1", "V2", "latest", "1.0", "Latest", "_x", "a", "a.b", "a-b", "a_b", "z"]


@pytest.fixture
async def tagged(registry: RegistryClient, registry_client: ServiceClient) -> str:
    """A manifest of NAME carrying every tag of TAGS; its digest."""
    image = make_image("tags")
    await registry.push_image(NAME, image)
    for tag in TAGS:
        response = await registry_client.put(
            f"/v2/{NAME}/manifests/{tag}",
            data=image.manifest,
            headers={"Content-Type": image.media_type},
        )
        assert response.status == 201, await response.text()
    return image.digest


async def list_tags(client: ServiceClient, name: str = NAME, **query: str) -> tuple[list[str], str]:
    """Tags of one page and its Link header ("" when none)."""
    response = await client.get(f"/v2/{name}/tags/list", params=query)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["name"] == name
    return body["tags"], response.headers.get("Link", "")


async def test_tags_are_listed_in_byte_order(tagged: str, registry_client: ServiceClient) -> None:
    tags, link = await list_tags(registry_client)
    assert tags == sorted(TAGS)
    assert link == ""


async def test_n_limits_the_page_and_link_points_to_the_next(
    tagged: str, registry_client: ServiceClient
) -> None:
    tags, link = await list_tags(registry_client, n="3")
    assert tags == sorted(TAGS)[:3]
    assert link == f'</v2/{NAME}/tags/list?n=3&last={tags[-1]}>; rel="next"'


async def test_following_links_lists_every_tag_once(
    tagged: str, registry_client: ServiceClient
) -> None:
    collected: list[str] = []
    url = f"/v2/{NAME}/tags/list?n=4"
    while url:
        response = await registry_client.get(url)
        collected += (await response.json())["tags"]
        link = response.headers.get("Link", "")
        url = link[1 : link.index(">")] if link else ""
    assert collected == sorted(TAGS)


async def test_last_starts_after_the_given_tag(tagged: str, registry_client: ServiceClient) -> None:
    tags, _ = await list_tags(registry_client, last="a")
    assert tags == [tag for tag in sorted(TAGS) if tag > "a"]
    tags, _ = await list_tags(registry_client, last="absent")
    assert tags == [tag for tag in sorted(TAGS) if tag > "absent"]


async def test_last_past_the_end_is_an_empty_page(
    tagged: str, registry_client: ServiceClient
) -> None:
    assert await list_tags(registry_client, n="5", last="zzz") == ([], "")


async def test_exact_final_page_has_no_link(tagged: str, registry_client: ServiceClient) -> None:
    tags, link = await list_tags(registry_client, n=str(len(TAGS)))
    assert len(tags) == len(TAGS)
    assert link == ""


async def test_n_zero_is_an_empty_list_without_link(
    tagged: str, registry_client: ServiceClient
) -> None:
    assert await list_tags(registry_client, n="0") == ([], "")


@pytest.mark.parametrize("n", ["-1", "abc", "1.5", "", " 3", "0x10", "+5"])
async def test_invalid_n_is_400(tagged: str, registry_client: ServiceClient, n: str) -> None:
    response = await registry_client.get(f"/v2/{NAME}/tags/list", params={"n": n})
    await assert_oci_error(response, 400, "UNSUPPORTED")


@pytest.mark.parametrize("last", ["-x", "a b", "x" * 129, ""])
async def test_invalid_last_is_400(tagged: str, registry_client: ServiceClient, last: str) -> None:
    response = await registry_client.get(f"/v2/{NAME}/tags/list", params={"last": last})
    await assert_oci_error(response, 400, "UNSUPPORTED")


async def test_large_n_is_clamped_to_the_cap(
    tagged: str, registry_client: ServiceClient, db: asyncpg.Connection
) -> None:
    await db.execute(
        """
        INSERT INTO tags (repository, tag, digest)
        SELECT $1, 'bulk-' || lpad(i::text, 5, '0'), $2 FROM generate_series(1, $3) i
        """,
        NAME,
        tagged,
        MAX_PAGE_SIZE,
    )
    for query in ({"n": "5000"}, {"n": "9" * 40}, {}):
        tags, link = await list_tags(registry_client, **query)
        assert len(tags) == MAX_PAGE_SIZE
        assert link.startswith(f"</v2/{NAME}/tags/list?n={MAX_PAGE_SIZE}&last=")


async def test_repository_without_tags_lists_none(
    registry: RegistryClient, registry_client: ServiceClient
) -> None:
    await registry.push_image(NAME, make_image("untagged"))
    assert await list_tags(registry_client) == ([], "")


async def test_deleted_tag_is_no_longer_listed(tagged: str, registry_client: ServiceClient) -> None:
    response = await registry_client.delete(f"/v2/{NAME}/manifests/latest")
    assert response.status == 202
    tags, _ = await list_tags(registry_client)
    assert "latest" not in tags
    assert len(tags) == len(TAGS) - 1


async def test_tags_of_another_repository_are_not_listed(
    tagged: str, registry: RegistryClient, registry_client: ServiceClient
) -> None:
    await registry.push_image("proj/other", make_image("other"), "only-here")
    tags, _ = await list_tags(registry_client, name="proj/other")
    assert tags == ["only-here"]


async def test_unknown_repository_is_name_unknown(registry_client: ServiceClient) -> None:
    for query in ({}, {"n": "0"}):
        response = await registry_client.get("/v2/proj/nothing/tags/list", params=query)
        await assert_oci_error(response, 404, "NAME_UNKNOWN")
