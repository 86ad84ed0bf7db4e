"""Content discovery: tags list and _catalog, with n/last pagination and Link headers."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.api.helpers import (
    assert_oci_error,
    next_link,
    push_blob,
    push_image,
    put_manifest,
    unique_repo,
)

# Mixed case on purpose: the order is pinned to byte order (what the reference registry and the
# conformance suite's own `last` check use; SQLite BINARY, PostgreSQL COLLATE "C"). Note that the
# spec's prose says "lexical order (i.e. case-insensitive alphanumeric order)".
TAGS = ["Delta", "alpha", "charlie", "Beta", "1.0", "1.0-rc1", "10", "2", "echo.x", "Foxtrot-9"]
ORDERED = sorted(TAGS)


@pytest.fixture(scope="module")
def tagged(module_client: httpx.Client) -> str:
    """A repository holding one manifest under every tag in TAGS."""
    client = module_client
    repo = unique_repo("tags")
    image = push_image(client, repo, TAGS[0])
    for tag in TAGS[1:]:
        assert put_manifest(client, repo, tag, image.body).status_code == 201
    return repo


def _tags(client: httpx.Client, repo: str, **params: str | int) -> httpx.Response:
    r = client.get(f"/v2/{repo}/tags/list", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["name"] == repo
    return r


def _walk(client: httpx.Client, first: str) -> tuple[list[str], list[httpx.Response]]:
    """Follow Link rel=next from `first`; returns every item seen and every page."""
    url: str | None = first
    items: list[str] = []
    pages: list[httpx.Response] = []
    while url is not None:
        r = client.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body.get("tags") if "tags" in body else body["repositories"]
        pages.append(r)
        url = next_link(r)
        assert len(pages) < 100
    return items, pages


# -- tags -----------------------------------------------------------------------------------

def test_tags_are_listed_in_lexical_order(client: httpx.Client, tagged: str) -> None:
    r = _tags(client, tagged)
    assert r.json()["tags"] == ORDERED
    assert "link" not in r.headers


@pytest.mark.parametrize("n", [1, 2, 3, 4, len(TAGS) - 1])
def test_tags_pagination_with_link_header(client: httpx.Client, tagged: str, n: int) -> None:
    items, pages = _walk(client, f"/v2/{tagged}/tags/list?n={n}")
    assert items == ORDERED
    for page in pages[:-1]:
        assert len(page.json()["tags"]) == n  # fewer than n only at the end
        link = next_link(page)
        assert link is not None
        parts = urlsplit(link)
        assert parts.path == f"/v2/{tagged}/tags/list"
        query = parse_qs(parts.query)
        assert query["n"] == [str(n)]
        assert query["last"] == [page.json()["tags"][-1]]
    assert next_link(pages[-1]) is None
    assert 0 < len(pages[-1].json()["tags"]) <= n


@pytest.mark.parametrize("n", [len(TAGS), len(TAGS) + 1, 1000])
def test_tags_n_at_least_the_count_has_no_link(client: httpx.Client, tagged: str, n: int) -> None:
    r = _tags(client, tagged, n=n)
    assert r.json()["tags"] == ORDERED
    assert "link" not in r.headers


def test_tags_n_zero_is_empty_without_link(client: httpx.Client, tagged: str) -> None:
    r = _tags(client, tagged, n=0)
    assert r.json()["tags"] == []
    assert "link" not in r.headers
    r = _tags(client, tagged, n=0, last=ORDERED[2])
    assert r.json()["tags"] == []
    assert "link" not in r.headers


@pytest.mark.parametrize("index", [0, 3, len(ORDERED) - 2, len(ORDERED) - 1])
def test_tags_last_without_n(client: httpx.Client, tagged: str, index: int) -> None:
    r = _tags(client, tagged, last=ORDERED[index])
    assert r.json()["tags"] == ORDERED[index + 1:]


def test_tags_last_and_n(client: httpx.Client, tagged: str) -> None:
    r = _tags(client, tagged, n=3, last=ORDERED[1])
    assert r.json()["tags"] == ORDERED[2:5]
    assert next_link(r) is not None


def test_tags_last_need_not_be_an_existing_tag(client: httpx.Client, tagged: str) -> None:
    r = _tags(client, tagged, last="b")  # between "alpha" and "charlie"
    assert r.json()["tags"] == [t for t in ORDERED if t > "b"] == ["charlie", "echo.x"]


def test_tags_reflect_deletion(client: httpx.Client) -> None:
    repo = unique_repo()
    image = push_image(client, repo, "b")
    for tag in ("a", "c"):
        assert put_manifest(client, repo, tag, image.body).status_code == 201
    assert _tags(client, repo).json()["tags"] == ["a", "b", "c"]
    assert client.delete(f"/v2/{repo}/manifests/b").status_code == 202
    assert _tags(client, repo).json()["tags"] == ["a", "c"]


def test_repository_without_tags_lists_none(client: httpx.Client) -> None:
    repo = unique_repo()
    push_blob(client, repo, b"only a blob")
    push_image(client, repo, None)  # pushed by digest: untagged
    assert _tags(client, repo).json()["tags"] in ([], None)


def test_tags_of_unknown_repository(client: httpx.Client) -> None:
    assert_oci_error(client.get(f"/v2/{unique_repo('nowhere')}/tags/list"), 404, "NAME_UNKNOWN")


@pytest.mark.parametrize("n", ["abc", "-1", "1.5", ""])
def test_tags_invalid_n(client: httpx.Client, tagged: str, n: str) -> None:
    assert_oci_error(client.get(f"/v2/{tagged}/tags/list", params={"n": n}), 400)


# -- catalog --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def catalog_repos(module_client: httpx.Client) -> list[str]:
    """Five repositories sharing a unique prefix, so pagination can be checked amid others."""
    client = module_client
    prefix = unique_repo("cat")
    names = [f"{prefix}-{s}" for s in ("e", "a", "d", "b", "c")]
    for name in names:
        push_blob(client, name, name.encode())
    names.append(f"{prefix}/nested")  # a name with a path component sorts after the hyphenated ones
    push_blob(client, names[-1], b"nested")
    return sorted(names)


def test_catalog_lists_repositories_in_order(client: httpx.Client, catalog_repos: list[str]) -> None:
    r = client.get("/v2/_catalog")
    assert r.status_code == 200
    repositories = r.json()["repositories"]
    assert repositories == sorted(repositories)
    assert [n for n in repositories if n in catalog_repos] == catalog_repos


@pytest.mark.parametrize("n", [1, 2, 4])
def test_catalog_pagination(client: httpx.Client, catalog_repos: list[str], n: int) -> None:
    before_first = catalog_repos[0][:-1]  # a prefix sorts before every name that extends it
    items, pages = _walk(client, f"/v2/_catalog?n={n}&last={before_first}")
    assert items[:len(catalog_repos)] == catalog_repos
    assert items == sorted(items)
    for page in pages[:-1]:
        assert len(page.json()["repositories"]) == n
        link = next_link(page)
        assert link is not None
        parts = urlsplit(link)
        assert parts.path == "/v2/_catalog"
        assert parse_qs(parts.query)["last"] == [page.json()["repositories"][-1]]
        assert parse_qs(parts.query)["n"] == [str(n)]
    assert next_link(pages[-1]) is None


def test_catalog_last(client: httpx.Client, catalog_repos: list[str]) -> None:
    r = client.get("/v2/_catalog", params={"last": catalog_repos[2], "n": 3})
    assert r.status_code == 200
    assert r.json()["repositories"] == catalog_repos[3:6]


def test_catalog_n_zero(client: httpx.Client, catalog_repos: list[str]) -> None:
    r = client.get("/v2/_catalog", params={"n": 0})
    assert r.status_code == 200
    assert r.json()["repositories"] == []
    assert "link" not in r.headers


def test_catalog_invalid_n(client: httpx.Client) -> None:
    assert_oci_error(client.get("/v2/_catalog", params={"n": "many"}), 400)
