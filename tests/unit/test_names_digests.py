import pytest

from cargohold.domain.digests import digest_of, is_digest, parse_digest
from cargohold.domain.names import check_repository_name, check_tag, is_repository_name, parse_reference
from cargohold.errors import Kind, RegistryError


@pytest.mark.parametrize("name", ["ab", "my-app-repo", "team/app", "a.b_c__d--e/f", "x" * 256, "a0/b1/c2"])
def test_valid_names(name: str) -> None:
    assert is_repository_name(name)


@pytest.mark.parametrize("name", ["a", "x" * 257, "../x", "a//b", "UPPER", "%2e%2e", "a/", "/a", "a..b",
                                  "-a", "a-", "a/../b", "a b", "é", ""])
def test_invalid_names(name: str) -> None:
    with pytest.raises(RegistryError) as exc:
        check_repository_name(name)
    assert exc.value.kind is Kind.NAME_INVALID


@pytest.mark.parametrize("digest", ["sha256:" + "a" * 64, "sha512:" + "0" * 128])
def test_valid_digests(digest: str) -> None:
    assert parse_digest(digest) == digest


@pytest.mark.parametrize("digest", ["sha256:../..", "sha256:" + "A" * 64, "sha256:" + "a" * 63,
                                    "sha256:" + "a" * 65, "md5:" + "a" * 32, "sha256", "", "sha256:",
                                    "sha256:" + "g" * 64, "sha256:" + "a" * 64 + "/x"])
def test_invalid_digests(digest: str) -> None:
    assert not is_digest(digest)
    with pytest.raises(RegistryError) as exc:
        parse_digest(digest)
    assert exc.value.kind is Kind.DIGEST_INVALID


def test_unknown_algorithm_is_named() -> None:
    with pytest.raises(RegistryError) as exc:
        parse_digest("md5:" + "a" * 32)
    assert "unsupported digest algorithm" in exc.value.message


def test_tags() -> None:
    assert check_tag("latest") == "latest"
    assert check_tag("a" * 128)
    for bad in ("a" * 129, "-x", ".x", "a/b", "a:b", ""):
        with pytest.raises(RegistryError) as exc:
            check_tag(bad)
        assert exc.value.kind is Kind.TAG_INVALID


def test_references() -> None:
    digest = digest_of(b"x")
    assert parse_reference("v1") == ("v1", None)
    assert parse_reference(digest) == (None, digest)
    with pytest.raises(RegistryError):
        parse_reference("sha256:nothex")
