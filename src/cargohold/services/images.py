"""ECR's image-level use cases over the same data the /v2 face reads and writes."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from cargohold.domain.digests import digest_of, is_digest
from cargohold.domain.manifests import MANIFEST_TYPES
from cargohold.domain.names import is_tag
from cargohold.errors import Kind, RegistryError
from cargohold.services.content import Content
from cargohold.services.repositories import Caller, Repositories
from cargohold.storage.meta.store import ManifestRow, MetadataStore, Repository


@dataclass(frozen=True)
class ImageId:
    digest: str | None = None
    tag: str | None = None

    def wire(self) -> dict[str, str]:
        out = {}
        if self.digest:
            out["imageDigest"] = self.digest
        if self.tag:
            out["imageTag"] = self.tag
        return out


@dataclass(frozen=True)
class Failure:
    image_id: ImageId
    code: str
    reason: str


@dataclass(frozen=True)
class Image:
    row: ManifestRow
    tags: list[str] = field(default_factory=list)
    requested_tag: str | None = None


class Images:
    def __init__(self, meta: MetadataStore, repos: Repositories, content: Content) -> None:
        self.meta = meta
        self.repos = repos
        self.content = content

    def _not_found_text(self, image: ImageId, repo: Repository) -> str:
        return (f"The image with imageId {{imageDigest:'{image.digest or 'null'}', imageTag:'"
                f"{image.tag or 'null'}'}} does not exist within the repository with name '{repo.name}' "
                f"in the registry with id '{repo.account_id}'")

    def _resolve_ids(self, repo: Repository, ids: Sequence[ImageId]
                     ) -> tuple[list[tuple[ImageId, str]], list[Failure]]:
        """Map each requested id to a digest; invalid or unknown ids become failures (ECR's codes)."""
        failures: list[Failure] = []
        wanted: list[tuple[ImageId, str | None]] = []
        tags = [i.tag for i in ids if i.tag and is_tag(i.tag)]
        tag_digests = self.meta.tag_map(repo.id, tags) if tags else {}
        for image in ids:
            if not image.digest and not image.tag:
                failures.append(Failure(image, "MissingDigestAndTag",
                                        "Invalid request parameters: both tag and digest cannot be null"))
            elif image.digest and not is_digest(image.digest):
                failures.append(Failure(image, "InvalidImageDigest", "Invalid request parameters: "
                                        "image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'"))
            elif image.tag and not is_tag(image.tag):
                failures.append(Failure(image, "InvalidImageTag", "Invalid request parameters: invalid tag"))
            elif image.tag:
                digest = tag_digests.get(image.tag)
                if digest is None:
                    wanted.append((image, None))
                elif image.digest and image.digest != digest:
                    failures.append(Failure(image, "ImageTagDoesNotMatchDigest",
                                            "Invalid request parameters: given tag and digest do not match"))
                else:
                    wanted.append((image, digest))
            else:
                wanted.append((image, image.digest))
        found = self.meta.manifests_by_digest(repo.id, [d for _, d in wanted if d]) if wanted else {}
        resolved = []
        for image, digest in wanted:
            if digest is None or digest not in found:
                failures.append(Failure(image, "ImageNotFound", "Requested image not found"))
            else:
                resolved.append((image, digest))
        return resolved, failures

    # -- listings -------------------------------------------------------------------------------

    def _listing(self, repo: Repository, tag_status: str, after: str | None) -> Iterator[tuple[Image, str]]:
        """Images in digest order after a cursor, with the cursor that resumes after each one."""
        cursor = after
        while True:
            rows = self.meta.list_manifests(repo.id, cursor, 500)
            if not rows:
                return
            tags = self.meta.tags_of(repo.id, [r.digest for r in rows])
            for row in rows:
                names = tags[row.digest]
                if tag_status == "ANY" or (tag_status == "TAGGED") == bool(names):
                    yield Image(row, names), row.digest
            cursor = rows[-1].digest

    def list_images(self, caller: Caller, name: str, tag_status: str, after: str | None,
                    limit: int) -> tuple[list[ImageId], str | None]:
        """One entry per tag, plus one per untagged image, at most `limit` a page.

        The cursor is the last digest listed, or "<digest> <tag>" when a page ends inside an
        image's tags (tags never contain spaces).
        """
        repo = self.repos.resolve(caller, name, "ecr:ListImages")
        digest_after, _, tag_after = (after or "").partition(" ")

        def entries() -> Iterator[ImageId]:
            if tag_after and tag_status != "UNTAGGED":
                names = self.meta.tags_of(repo.id, [digest_after])[digest_after]
                yield from (ImageId(digest_after, t) for t in names if t > tag_after)
            for image, _ in self._listing(repo, tag_status, digest_after or None):
                if image.tags:
                    yield from (ImageId(image.row.digest, t) for t in image.tags)
                else:
                    yield ImageId(image.row.digest)

        page = list(itertools.islice(entries(), limit + 1))
        if len(page) <= limit:
            return page, None
        last = page[limit - 1]
        return page[:limit], f"{last.digest} {last.tag}" if last.tag else last.digest

    def describe_images(self, caller: Caller, name: str, ids: Sequence[ImageId] | None, tag_status: str,
                        after: str | None, limit: int) -> tuple[list[Image], str | None]:
        repo = self.repos.resolve(caller, name, "ecr:DescribeImages")
        if ids:
            resolved, failures = self._resolve_ids(repo, ids)
            if failures:
                raise RegistryError(Kind.MANIFEST_UNKNOWN, self._not_found_text(failures[0].image_id, repo))
            found = self.meta.manifests_by_digest(repo.id, [d for _, d in resolved])
            found_tags = self.meta.tags_of(repo.id, list(found))
            return [Image(found[d], found_tags[d]) for d in dict.fromkeys(d for _, d in resolved)], None
        page = list(itertools.islice(self._listing(repo, tag_status, after), limit + 1))
        if len(page) <= limit:
            return [image for image, _ in page], None
        return [image for image, _ in page[:limit]], page[limit - 1][1]

    def batch_get(self, caller: Caller, name: str, ids: Sequence[ImageId],
                  accepted: Sequence[str] | None) -> tuple[list[Image], list[Failure]]:
        repo = self.repos.resolve(caller, name, "ecr:BatchGetImage")
        resolved, failures = self._resolve_ids(repo, ids)
        rows = self.meta.manifests_by_digest(repo.id, [d for _, d in resolved], with_content=True)
        images: list[Image] = []
        now = self.repos.now_ms()
        for image, digest in resolved:
            row = rows[digest]
            if accepted and row.media_type not in accepted:
                failures.append(Failure(image, "ImageNotFound",
                                        f"The image's manifest media type {row.media_type} is not in "
                                        f"acceptedMediaTypes"))
                continue
            images.append(Image(row, [], image.tag))
            self.meta.record_pull(repo.id, digest, now)
        return images, failures

    def inspect(self, caller: Caller, name: str, digest: str) -> Image:
        """One image with its manifest bytes and tags, for viewing (the console): authorized as
        ecr:BatchGetImage but, unlike a pull, not recorded as one (lastRecordedPullTime stays)."""
        repo = self.repos.resolve(caller, name, "ecr:BatchGetImage")
        row = self.meta.get_manifest(repo.id, digest, with_content=True) if is_digest(digest) else None
        if row is None:
            raise RegistryError(Kind.MANIFEST_UNKNOWN, self._not_found_text(ImageId(digest), repo))
        return Image(row, self.meta.tags_of(repo.id, [digest])[digest])

    def batch_delete(self, caller: Caller, name: str, ids: Sequence[ImageId]
                     ) -> tuple[list[ImageId], list[Failure]]:
        """By tag: remove the tag (and the image with its last tag, as ECR does); by digest: the image."""
        repo = self.repos.resolve(caller, name, "ecr:BatchDeleteImage")
        resolved, failures = self._resolve_ids(repo, ids)
        deleted: list[ImageId] = []
        for image, digest in resolved:
            parents = self.meta.parents_of(repo.id, digest)
            tag_only = image.tag is not None and not image.digest
            if tag_only:
                assert image.tag is not None
                self.meta.delete_tag(repo.id, image.tag)
                if self.meta.tags_of(repo.id, [digest])[digest] or parents:
                    deleted.append(ImageId(digest, image.tag))
                    continue
            elif parents:
                failures.append(Failure(image, "ImageReferencedByManifestList",
                                        f"Requested image referenced by manifest list: {parents}"))
                continue
            self.meta.delete_manifest(repo.id, digest)
            deleted.append(ImageId(digest, image.tag))
        return deleted, failures

    # -- writes ---------------------------------------------------------------------------------

    def put_image(self, caller: Caller, name: str, manifest: str, media_type: str | None,
                  tag: str | None, digest: str | None) -> Image:
        body = manifest.encode()
        if media_type is None:
            try:
                declared = json.loads(body).get("mediaType")
            except (ValueError, AttributeError):
                declared = None
            media_type = declared if declared in MANIFEST_TYPES else None
        if media_type is not None and media_type not in MANIFEST_TYPES:
            raise RegistryError(Kind.INVALID_PARAMETER, f"Invalid parameter at 'imageManifestMediaType': "
                                f"unsupported media type {media_type}")
        reference = tag or digest
        repo = self.repos.resolve(caller, name, "ecr:PutImage")
        if tag is not None and not is_tag(tag):
            raise RegistryError(Kind.INVALID_PARAMETER,
                                f"Invalid parameter at 'imageTag' failed to satisfy constraint: '{tag[:300]}'")
        if digest is not None and not is_digest(digest):
            raise RegistryError(Kind.INVALID_PARAMETER, "Invalid parameter at 'imageDigest'")
        actual = digest_of(body)
        if digest is not None and digest != actual:
            raise RegistryError(Kind.DIGEST_MISMATCH,
                                f"Manifest digest '{actual}' does not match the provided digest '{digest}'")
        existing = self.meta.manifests_by_digest(repo.id, [actual])
        if existing and (tag is None or self.meta.tag_digest(repo.id, tag) == actual):
            raise RegistryError(
                Kind.IMAGE_EXISTS,
                f"Image with digest '{actual}'" + (f" and tag '{tag}'" if tag else "") +
                f" already exists in the repository with name '{name}' in registry with id '{repo.account_id}'")
        try:
            self.content.put_manifest(caller, name, reference or actual, body, media_type)
        except RegistryError as err:
            if err.kind is Kind.MANIFEST_BLOB_UNKNOWN and isinstance(err.detail, dict):
                if err.detail.get("blobs"):
                    raise RegistryError(
                        Kind.BLOB_UNKNOWN,
                        f"Layers with digests '{err.detail['blobs']}' required for pushing image into "
                        f"repository with name '{name}' in the registry with id '{repo.account_id}' do not "
                        f"exist") from None
                raise RegistryError(Kind.REFERENCED_IMAGES_NOT_FOUND,
                                    f"Referenced images {err.detail.get('manifests')} not found") from None
            if err.kind is Kind.MANIFEST_INVALID:
                raise RegistryError(Kind.INVALID_PARAMETER,
                                    f"Invalid parameter at 'imageManifest' failed to satisfy constraint: "
                                    f"'{err.message}'") from None
            raise
        row = self.meta.get_manifest(repo.id, actual)
        assert row is not None
        return Image(row, [], tag)

    # -- layers ---------------------------------------------------------------------------------

    def check_layers(self, caller: Caller, name: str, digests: Sequence[str]
                     ) -> tuple[dict[str, int | None], list[tuple[str, str, str]]]:
        repo = self.repos.resolve(caller, name, "ecr:BatchCheckLayerAvailability")
        failures = [(d, "InvalidLayerDigest", "Invalid layer digest") for d in digests if not is_digest(d)]
        valid = [d for d in dict.fromkeys(digests) if is_digest(d)]
        sizes = self.meta.repository_blob_sizes(repo.id, valid) if valid else {}
        return {d: sizes.get(d) for d in valid}, failures

    def layer_for_download(self, caller: Caller, name: str, digest: str) -> int:
        repo = self.repos.resolve(caller, name, "ecr:GetDownloadUrlForLayer")
        size = self.meta.repository_blob_size(repo.id, digest) if is_digest(digest) else None
        if size is None:
            raise RegistryError(Kind.BLOB_UNKNOWN,
                                f"The layer with digest '{digest}' does not exist in the repository with name "
                                f"'{name}' in the registry with id '{repo.account_id}'")
        return size

    def referrers(self, caller: Caller, name: str, digest: str, artifact_types: Sequence[str] | None,
                  after: str | None, limit: int) -> tuple[list[ManifestRow], str | None]:
        repo = self.repos.resolve(caller, name, "ecr:ListImageReferrers")
        rows = [r for r in self.meta.referrers(repo.id, digest)
                if not artifact_types or r.artifact_type in artifact_types]
        if after is not None:
            rows = [r for r in rows if r.digest > after]
        page = rows[:limit]
        return page, (page[-1].digest if len(rows) > limit else None)
