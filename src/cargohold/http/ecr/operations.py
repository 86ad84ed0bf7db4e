"""One thin adapter per ECR operation: wire params -> service call -> wire result."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from anyio import to_thread

from cargohold.domain.digests import is_digest
from cargohold.errors import Kind, RegistryError
from cargohold.http.ecr.api import EcrApi
from cargohold.services.identity import Identity, ResourceFacts
from cargohold.services.images import Failure, Image, ImageId, Images
from cargohold.services.repositories import Caller, RepositoryAdmin
from cargohold.services.uploads import Uploads
from cargohold.storage.meta.store import Repository

T = TypeVar("T")
LAYER_PART_SIZE = 10 * 1024 * 1024
MIN_LAYER_PART = 5 * 1024 * 1024
DOWNLOAD_URL_TTL = 3600


async def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await to_thread.run_sync(lambda: fn(*args, **kwargs))


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000.0


def _token(cursor: str | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps({"c": cursor}).encode()).decode() if cursor else None


def _cursor(params: dict[str, Any]) -> str | None:
    token = params.get("nextToken")
    if token is None:
        return None
    try:
        cursor = json.loads(base64.urlsafe_b64decode(token.encode()))["c"]
        if not isinstance(cursor, str):
            raise ValueError
        return cursor
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise RegistryError(Kind.INVALID_PARAMETER,
                            "Invalid parameter at 'nextToken' failed to satisfy constraint: "
                            "'Invalid pagination token'") from None


def _image_ids(params: dict[str, Any]) -> list[ImageId]:
    return [ImageId(i.get("imageDigest"), i.get("imageTag")) for i in params.get("imageIds", [])]


def _failure(f: Failure) -> dict[str, Any]:
    return {"imageId": f.image_id.wire(), "failureCode": f.code, "failureReason": f.reason}


class EcrOperations:
    def __init__(self, api: EcrApi, identity: Identity, admin: RepositoryAdmin, images: Images,
                 uploads: Uploads, public_host: str, scheme: str) -> None:
        self.api = api
        self.identity = identity
        self.admin = admin
        self.images = images
        self.uploads = uploads
        self.public_host = public_host
        self.scheme = scheme
        self.account_id = admin.repos.account_id
        # Optional extra imageDetail members per digest (e.g. scan status), set by the composition root.
        self.image_extras: Callable[[str, str, list[str]], dict[str, dict[str, Any]]] | None = None
        for name in dir(self):
            if name[:1].isupper():
                api.register(name, getattr(self, name))

    # -- shapes ---------------------------------------------------------------------------------

    def repository(self, repo: Repository) -> dict[str, Any]:
        out: dict[str, Any] = {
            "repositoryArn": self.admin.repos.arn(repo.name, repo.account_id), "registryId": repo.account_id,
            "repositoryName": repo.name,
            "repositoryUri": f"{self.registry_host(repo.account_id)}/{repo.name}",
            "createdAt": _seconds(repo.created_at), "imageTagMutability": repo.tag_mutability,
            "imageScanningConfiguration": {"scanOnPush": repo.scan_on_push},
            "encryptionConfiguration": repo.encryption or {"encryptionType": "AES256"},
        }
        if repo.mutability_exclusions:
            out["imageTagMutabilityExclusionFilters"] = repo.mutability_exclusions
        return out

    def registry(self, caller: Caller) -> str:
        return self.admin.repos.registry_of(caller)

    def image_detail(self, registry: str, name: str, image: Image) -> dict[str, Any]:
        row = image.row
        out: dict[str, Any] = {
            "registryId": registry, "repositoryName": name, "imageDigest": row.digest,
            "imageSizeInBytes": row.image_size, "imagePushedAt": _seconds(row.pushed_at),
            "imageManifestMediaType": row.media_type, "imageStatus": "ACTIVE",
        }
        if image.tags:
            out["imageTags"] = image.tags
        if row.artifact_type or row.config_digest:
            out["artifactMediaType"] = row.artifact_type or "application/vnd.docker.container.image.v1+json"
        if row.last_pulled_at is not None:
            out["lastRecordedPullTime"] = _seconds(row.last_pulled_at)
        if row.subject_digest:
            out["subjectManifestDigest"] = row.subject_digest
        return out

    def _image(self, registry: str, name: str, image: Image) -> dict[str, Any]:
        row = image.row
        image_id = {"imageDigest": row.digest}
        if image.requested_tag:
            image_id["imageTag"] = image.requested_tag
        return {"registryId": registry, "repositoryName": name, "imageId": image_id,
                "imageManifest": (row.content or b"").decode(), "imageManifestMediaType": row.media_type}

    @staticmethod
    def _limit(params: dict[str, Any], default: int, maximum: int = 1000) -> int:
        return min(int(params.get("maxResults") or default), maximum)

    # -- repositories ---------------------------------------------------------------------------

    async def CreateRepository(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        repo = await _run(
            self.admin.create, caller, p["repositoryName"], tags=p.get("tags"),
            mutability=p.get("imageTagMutability", "MUTABLE"),
            exclusions=p.get("imageTagMutabilityExclusionFilters"),
            scan_on_push=bool(p.get("imageScanningConfiguration", {}).get("scanOnPush", False)),
            encryption=p.get("encryptionConfiguration"))
        return {"repository": self.repository(repo)}

    async def DescribeRepositories(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        names = p.get("repositoryNames")
        if names and p.get("maxResults"):
            raise RegistryError(Kind.INVALID_PARAMETER, "Invalid parameter: maxResults cannot be used with "
                                "repositoryNames")
        limit = self._limit(p, 100)
        repos = await _run(self.admin.describe, caller, names, _cursor(p), limit + 1)
        more = not names and len(repos) > limit
        repos = repos[:limit] if not names else repos
        out: dict[str, Any] = {"repositories": [self.repository(r) for r in repos]}
        if more:
            out["nextToken"] = _token(repos[-1].name)
        return out

    async def DeleteRepository(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        repo = await _run(self.admin.delete, caller, p["repositoryName"], bool(p.get("force")))
        return {"repository": self.repository(repo)}

    async def PutImageTagMutability(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        repo = await _run(self.admin.set_mutability, caller, p["repositoryName"], p["imageTagMutability"],
                          p.get("imageTagMutabilityExclusionFilters"))
        out: dict[str, Any] = {"registryId": self.registry(caller), "repositoryName": repo.name,
                               "imageTagMutability": repo.tag_mutability}
        if repo.mutability_exclusions:
            out["imageTagMutabilityExclusionFilters"] = repo.mutability_exclusions
        return out

    async def PutImageScanningConfiguration(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        scan = bool(p["imageScanningConfiguration"].get("scanOnPush", False))
        repo = await _run(self.admin.set_scanning, caller, p["repositoryName"], scan)
        return {"registryId": self.registry(caller), "repositoryName": repo.name,
                "imageScanningConfiguration": {"scanOnPush": repo.scan_on_push}}

    async def TagResource(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        await _run(self.admin.tag, caller, p["resourceArn"], p["tags"])
        return {}

    async def UntagResource(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        await _run(self.admin.untag, caller, p["resourceArn"], p["tagKeys"])
        return {}

    async def ListTagsForResource(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        return {"tags": await _run(self.admin.list_tags, caller, p["resourceArn"])}

    async def DescribeRegistry(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        return {"registryId": self.registry(caller), "replicationConfiguration": {"rules": []}}

    async def GetAuthorizationToken(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        # An action on the caller's own account (resource "*"), decided by its own identity policies.
        await _run(self.admin.repos.authorizer.authorize, caller.principal, "ecr:GetAuthorizationToken", "*",
                   caller.context, ResourceFacts(account_id=caller.principal.account_id))
        token, expires = self.identity.issue_token(caller.principal)
        password = base64.b64encode(f"AWS:{token}".encode()).decode()
        return {"authorizationData": [
            {"authorizationToken": password, "expiresAt": float(expires),
             "proxyEndpoint": f"{self.scheme}://{self.registry_host(registry)}"}
            for registry in (p.get("registryIds") or [caller.principal.account_id])]}

    def registry_host(self, registry: str) -> str:
        """The home account's registry is the plain host; another account's is <account>.<host>, as on ECR."""
        return self.public_host if registry == self.account_id else f"{registry}.{self.public_host}"

    # -- images ---------------------------------------------------------------------------------

    async def ListImages(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        status = (p.get("filter") or {}).get("tagStatus", "ANY")
        ids, cursor = await _run(self.images.list_images, caller, p["repositoryName"], status, _cursor(p),
                                 self._limit(p, 100))
        out: dict[str, Any] = {"imageIds": [i.wire() for i in ids]}
        if cursor:
            out["nextToken"] = _token(cursor)
        return out

    async def DescribeImages(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        ids = _image_ids(p) or None
        if ids and (p.get("maxResults") or p.get("nextToken")):
            raise RegistryError(Kind.INVALID_PARAMETER, "Invalid parameter: maxResults and nextToken cannot "
                                "be used with imageIds")
        status = (p.get("filter") or {}).get("tagStatus", "ANY")
        images, cursor = await _run(self.images.describe_images, caller, p["repositoryName"], ids, status,
                                    _cursor(p), self._limit(p, 100))
        registry = self.registry(caller)
        out: dict[str, Any] = {"imageDetails": [self.image_detail(registry, p["repositoryName"], i) for i in images]}
        if self.image_extras is not None and images:
            extras = await _run(self.image_extras, registry, p["repositoryName"], [i.row.digest for i in images])
            for detail in out["imageDetails"]:
                detail.update(extras.get(detail["imageDigest"], {}))
        if cursor:
            out["nextToken"] = _token(cursor)
        return out

    async def BatchGetImage(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        images, failures = await _run(self.images.batch_get, caller, p["repositoryName"], _image_ids(p),
                                      p.get("acceptedMediaTypes"))
        return {"images": [self._image(self.registry(caller), p["repositoryName"], i) for i in images],
                "failures": [_failure(f) for f in failures]}

    async def BatchDeleteImage(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        deleted, failures = await _run(self.images.batch_delete, caller, p["repositoryName"], _image_ids(p))
        return {"imageIds": [i.wire() for i in deleted], "failures": [_failure(f) for f in failures]}

    async def PutImage(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        image = await _run(self.images.put_image, caller, p["repositoryName"], p["imageManifest"],
                           p.get("imageManifestMediaType"), p.get("imageTag"), p.get("imageDigest"))
        return {"image": self._image(self.registry(caller), p["repositoryName"], image)}

    async def ListImageReferrers(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        digest = p["subjectId"].get("imageDigest", "")
        if not is_digest(digest):
            raise RegistryError(Kind.INVALID_PARAMETER, "Invalid parameter at 'subjectId.imageDigest'")
        rows, cursor = await _run(self.images.referrers, caller, p["repositoryName"], digest,
                                  (p.get("filter") or {}).get("artifactTypes"), _cursor(p),
                                  self._limit(p, 50, 50))
        referrers = []
        for row in rows:
            entry: dict[str, Any] = {"digest": row.digest, "mediaType": row.media_type, "size": row.size,
                                     "artifactStatus": "ACTIVE"}
            if row.artifact_type:
                entry["artifactType"] = row.artifact_type
            if row.annotations:
                entry["annotations"] = row.annotations
            referrers.append(entry)
        out: dict[str, Any] = {"referrers": referrers}
        if cursor:
            out["nextToken"] = _token(cursor)
        return out

    # -- layers ---------------------------------------------------------------------------------

    async def BatchCheckLayerAvailability(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        sizes, failures = await _run(self.images.check_layers, caller, p["repositoryName"], p["layerDigests"])
        layers = []
        for digest, size in sizes.items():
            layer: dict[str, Any] = {"layerDigest": digest,
                                     "layerAvailability": "AVAILABLE" if size is not None else "UNAVAILABLE"}
            if size is not None:
                layer["layerSize"] = size
                layer["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
            layers.append(layer)
        return {"layers": layers, "failures": [
            {"layerDigest": d, "failureCode": c, "failureReason": r} for d, c, r in failures]}

    async def GetDownloadUrlForLayer(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        name, digest = p["repositoryName"], p["layerDigest"]
        await _run(self.images.layer_for_download, caller, name, digest)
        expires = int(self.identity.clock()) + DOWNLOAD_URL_TTL
        grant = self.identity.box.sign({"a": self.registry(caller), "r": name, "d": digest, "e": expires,
                                        "p": caller.principal.arn})  # p: who pulls, for usage metering
        return {"downloadUrl": f"{self.scheme}://{self.public_host}/download/{grant}", "layerDigest": digest}

    async def InitiateLayerUpload(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        # ECR never creates a repository on push through its own API.
        await _run(self.admin.repos.resolve, caller, p["repositoryName"], "ecr:InitiateLayerUpload")
        upload_id = await _run(self.uploads.start, caller, p["repositoryName"])
        return {"uploadId": upload_id, "partSize": LAYER_PART_SIZE}

    async def UploadLayerPart(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        name, upload_id = p["repositoryName"], p["uploadId"]
        first, last, data = p["partFirstByte"], p["partLastByte"], p["layerPartBlob"]
        meta = self.uploads.meta
        offset = await _run(self.uploads.status, caller, name, upload_id)

        def invalid(message: str) -> RegistryError:
            return RegistryError(Kind.LAYER_PART_INVALID, message, detail={"ecr_fields": {
                "registryId": self.registry(caller), "repositoryName": name, "uploadId": upload_id,
                "lastValidByteReceived": max(offset - 1, 0)}})

        if first != offset:
            raise invalid(f"The part first byte {first} is not consecutive to the last byte received "
                          f"{offset - 1}")
        if last - first + 1 != len(data):
            raise invalid(f"The part size {len(data)} does not match partFirstByte..partLastByte")
        previous = await _run(meta.upload_last_part, upload_id)
        if offset > 0 and previous is not None and previous < MIN_LAYER_PART:
            raise RegistryError(Kind.LAYER_PART_TOO_SMALL,
                                f"Layer parts must be at least {MIN_LAYER_PART} bytes, except the last")

        async def body() -> AsyncIterator[bytes]:
            yield data

        try:
            new_offset = await self.uploads.append(caller, name, upload_id, body(), (first, last))
        except RegistryError as err:
            if err.kind is Kind.RANGE_INVALID:
                raise invalid(err.message) from None
            raise
        await _run(meta.set_upload_part, upload_id, len(data))
        return {"registryId": self.registry(caller), "repositoryName": name, "uploadId": upload_id,
                "lastByteReceived": new_offset - 1}

    async def CompleteLayerUpload(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        name, upload_id, digests = p["repositoryName"], p["uploadId"], p["layerDigests"]
        offset = await _run(self.uploads.status, caller, name, upload_id)
        if offset == 0:
            raise RegistryError(Kind.EMPTY_UPLOAD,
                                f"The specified layer upload does not contain any layer parts. Upload id "
                                f"'{upload_id}'")
        digest = digests[0]
        if len(digests) != 1 or not is_digest(digest):
            raise RegistryError(Kind.INVALID_PARAMETER, "Invalid parameter at 'layerDigests'")
        sizes, _ = await _run(self.images.check_layers, caller, name, [digest])
        if sizes.get(digest) is not None:
            await _run(self.uploads.cancel, caller, name, upload_id)
            raise RegistryError(Kind.LAYER_EXISTS, f"The image layer '{digest}' already exists in the "
                                f"repository with name '{name}' in registry with id '{self.registry(caller)}'")
        try:
            await self.uploads.complete(caller, name, upload_id, digest, None)
        except RegistryError as err:
            if err.kind is Kind.DIGEST_INVALID:
                raise RegistryError(Kind.DIGEST_INVALID,
                                    "The layer digest calculation performed by cargohold upon receipt of the "
                                    f"image layer does not match the digest specified: {digest}") from None
            raise
        return {"registryId": self.registry(caller), "repositoryName": name, "uploadId": upload_id,
                "layerDigest": digest}
