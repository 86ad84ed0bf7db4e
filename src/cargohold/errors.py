"""The one error table: every failure is a RegistryError of a Kind, rendered per face.

Each kind has one row: the OCI error code and HTTP status used on /v2, and the ECR
exception name and HTTP status used on the ECR API. Stdlib only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    oci_code: str
    oci_status: int
    ecr_exception: str
    ecr_status: int
    text: str  # the spec's short description, used when no message is given
    iam_code: str = "ServiceFailure"  # the IAM/STS (query protocol) error code and status
    iam_status: int = 500


class Kind(enum.Enum):
    BLOB_UNKNOWN = "BLOB_UNKNOWN"
    BLOB_UPLOAD_INVALID = "BLOB_UPLOAD_INVALID"
    BLOB_UPLOAD_UNKNOWN = "BLOB_UPLOAD_UNKNOWN"
    RANGE_INVALID = "RANGE_INVALID"
    DIGEST_INVALID = "DIGEST_INVALID"
    DIGEST_MISMATCH = "DIGEST_MISMATCH"
    MANIFEST_BLOB_UNKNOWN = "MANIFEST_BLOB_UNKNOWN"
    MANIFEST_INVALID = "MANIFEST_INVALID"
    MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
    NAME_INVALID = "NAME_INVALID"
    NAME_UNKNOWN = "NAME_UNKNOWN"
    SIZE_INVALID = "SIZE_INVALID"
    TOO_LARGE = "TOO_LARGE"
    TAG_INVALID = "TAG_INVALID"
    TAG_IMMUTABLE = "TAG_IMMUTABLE"
    UNAUTHORIZED = "UNAUTHORIZED"
    DENIED = "DENIED"
    UNSUPPORTED = "UNSUPPORTED"
    TOOMANYREQUESTS = "TOOMANYREQUESTS"
    INVALID_PARAMETER = "INVALID_PARAMETER"
    REPOSITORY_EXISTS = "REPOSITORY_EXISTS"
    REPOSITORY_NOT_EMPTY = "REPOSITORY_NOT_EMPTY"
    IMAGE_EXISTS = "IMAGE_EXISTS"
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
    CONFLICT = "CONFLICT"
    VALIDATION = "VALIDATION"
    SERIALIZATION = "SERIALIZATION"
    UNKNOWN_OPERATION = "UNKNOWN_OPERATION"
    MISSING_AUTH = "MISSING_AUTH"
    INCOMPLETE_SIGNATURE = "INCOMPLETE_SIGNATURE"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    UNRECOGNIZED_CLIENT = "UNRECOGNIZED_CLIENT"
    LAYER_PART_INVALID = "LAYER_PART_INVALID"
    LAYER_PART_TOO_SMALL = "LAYER_PART_TOO_SMALL"
    LAYER_EXISTS = "LAYER_EXISTS"
    REFERENCED_IMAGES_NOT_FOUND = "REFERENCED_IMAGES_NOT_FOUND"
    INVALID_TAG_PARAMETER = "INVALID_TAG_PARAMETER"
    TOO_MANY_TAGS = "TOO_MANY_TAGS"
    EMPTY_UPLOAD = "EMPTY_UPLOAD"
    NO_SUCH_ENTITY = "NO_SUCH_ENTITY"
    ENTITY_EXISTS = "ENTITY_EXISTS"
    MALFORMED_POLICY = "MALFORMED_POLICY"
    DELETE_CONFLICT = "DELETE_CONFLICT"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    POLICY_NOT_FOUND = "POLICY_NOT_FOUND"
    REGISTRY_POLICY_NOT_FOUND = "REGISTRY_POLICY_NOT_FOUND"
    LIFECYCLE_POLICY_NOT_FOUND = "LIFECYCLE_POLICY_NOT_FOUND"
    LIFECYCLE_PREVIEW_NOT_FOUND = "LIFECYCLE_PREVIEW_NOT_FOUND"
    LIFECYCLE_PREVIEW_IN_PROGRESS = "LIFECYCLE_PREVIEW_IN_PROGRESS"
    SCAN_NOT_FOUND = "SCAN_NOT_FOUND"
    UNKNOWN = "UNKNOWN"


TABLE: dict[Kind, Row] = {
    Kind.BLOB_UNKNOWN: Row("BLOB_UNKNOWN", 404, "LayersNotFoundException", 400,
                           "blob unknown to registry"),
    Kind.BLOB_UPLOAD_INVALID: Row("BLOB_UPLOAD_INVALID", 400, "InvalidLayerException", 400,
                                  "blob upload invalid"),
    Kind.BLOB_UPLOAD_UNKNOWN: Row("BLOB_UPLOAD_UNKNOWN", 404, "UploadNotFoundException", 400,
                                  "blob upload unknown to registry"),
    Kind.RANGE_INVALID: Row("BLOB_UPLOAD_INVALID", 416, "InvalidLayerPartException", 400,
                            "invalid content range"),
    Kind.DIGEST_INVALID: Row("DIGEST_INVALID", 400, "InvalidLayerException", 400,
                             "provided digest did not match uploaded content"),
    Kind.DIGEST_MISMATCH: Row("DIGEST_INVALID", 400, "ImageDigestDoesNotMatchException", 400,
                              "provided digest did not match uploaded content"),
    Kind.MANIFEST_BLOB_UNKNOWN: Row("MANIFEST_BLOB_UNKNOWN", 404, "LayersNotFoundException", 400,
                                    "manifest references a manifest or blob unknown to registry"),
    Kind.MANIFEST_INVALID: Row("MANIFEST_INVALID", 400, "InvalidParameterException", 400,
                               "manifest invalid"),
    Kind.MANIFEST_UNKNOWN: Row("MANIFEST_UNKNOWN", 404, "ImageNotFoundException", 400,
                               "manifest unknown to registry"),
    Kind.NAME_INVALID: Row("NAME_INVALID", 400, "InvalidParameterException", 400,
                           "invalid repository name"),
    Kind.NAME_UNKNOWN: Row("NAME_UNKNOWN", 404, "RepositoryNotFoundException", 400,
                           "repository name not known to registry"),
    Kind.SIZE_INVALID: Row("SIZE_INVALID", 400, "InvalidLayerException", 400,
                           "provided length did not match content length"),
    Kind.TOO_LARGE: Row("SIZE_INVALID", 413, "InvalidParameterException", 400,
                        "request body too large"),
    Kind.TAG_INVALID: Row("TAG_INVALID", 400, "InvalidParameterException", 400,
                          "manifest tag did not match URI"),
    Kind.TAG_IMMUTABLE: Row("DENIED", 409, "ImageTagAlreadyExistsException", 400,
                            "tag is immutable"),
    Kind.UNAUTHORIZED: Row("UNAUTHORIZED", 401, "UnrecognizedClientException", 400,
                           "authentication required", "InvalidClientTokenId", 403),
    Kind.DENIED: Row("DENIED", 403, "AccessDeniedException", 400,
                     "requested access to the resource is denied", "AccessDenied", 403),
    Kind.UNSUPPORTED: Row("UNSUPPORTED", 405, "UnsupportedImageTypeException", 400,
                          "the operation is unsupported"),
    Kind.TOOMANYREQUESTS: Row("TOOMANYREQUESTS", 429, "LimitExceededException", 400,
                              "too many requests"),
    Kind.INVALID_PARAMETER: Row("UNSUPPORTED", 400, "InvalidParameterException", 400,
                                "invalid parameter", "InvalidInput", 400),
    Kind.REPOSITORY_EXISTS: Row("DENIED", 409, "RepositoryAlreadyExistsException", 400,
                                "repository already exists"),
    Kind.REPOSITORY_NOT_EMPTY: Row("DENIED", 409, "RepositoryNotEmptyException", 400,
                                   "repository is not empty"),
    Kind.IMAGE_EXISTS: Row("DENIED", 409, "ImageAlreadyExistsException", 400,
                           "image already exists"),
    Kind.NOT_IMPLEMENTED: Row("UNSUPPORTED", 501, "NotImplementedException", 501,
                              "not implemented", "NotImplemented", 501),
    Kind.CONFLICT: Row("UNKNOWN", 409, "ServerException", 500,
                       "a concurrent change conflicted with this request; retry it"),
    Kind.VALIDATION: Row("UNSUPPORTED", 400, "ValidationException", 400, "validation error",
                         "ValidationError", 400),
    Kind.SERIALIZATION: Row("UNSUPPORTED", 400, "SerializationException", 400, "malformed request",
                            "MalformedInput", 400),
    Kind.UNKNOWN_OPERATION: Row("UNSUPPORTED", 404, "UnknownOperationException", 400,
                                "unknown operation", "InvalidAction", 400),
    Kind.MISSING_AUTH: Row("UNAUTHORIZED", 401, "MissingAuthenticationTokenException", 403,
                           "Missing Authentication Token", "MissingAuthenticationToken", 403),
    Kind.INCOMPLETE_SIGNATURE: Row("UNAUTHORIZED", 401, "IncompleteSignatureException", 400,
                                   "incomplete signature", "IncompleteSignature", 400),
    Kind.SIGNATURE_INVALID: Row("UNAUTHORIZED", 401, "InvalidSignatureException", 400,
                                "The request signature we calculated does not match the signature "
                                "you provided.", "SignatureDoesNotMatch", 403),
    Kind.UNRECOGNIZED_CLIENT: Row("UNAUTHORIZED", 401, "UnrecognizedClientException", 400,
                                  "The security token included in the request is invalid.",
                                  "InvalidClientTokenId", 403),
    Kind.LAYER_PART_INVALID: Row("BLOB_UPLOAD_INVALID", 416, "InvalidLayerPartException", 400,
                                 "layer part out of order"),
    Kind.LAYER_PART_TOO_SMALL: Row("BLOB_UPLOAD_INVALID", 400, "LayerPartTooSmallException", 400,
                                   "layer part too small"),
    Kind.LAYER_EXISTS: Row("DENIED", 409, "LayerAlreadyExistsException", 400, "layer already exists"),
    Kind.REFERENCED_IMAGES_NOT_FOUND: Row("MANIFEST_BLOB_UNKNOWN", 404,
                                          "ReferencedImagesNotFoundException", 400,
                                          "referenced images not found"),
    Kind.INVALID_TAG_PARAMETER: Row("UNSUPPORTED", 400, "InvalidTagParameterException", 400,
                                    "invalid tag parameter"),
    Kind.TOO_MANY_TAGS: Row("UNSUPPORTED", 400, "TooManyTagsException", 400, "too many tags"),
    Kind.EMPTY_UPLOAD: Row("BLOB_UPLOAD_INVALID", 400, "EmptyUploadException", 400,
                           "The specified layer upload does not contain any layer parts."),
    Kind.NO_SUCH_ENTITY: Row("NAME_UNKNOWN", 404, "InvalidParameterException", 400, "no such entity",
                             "NoSuchEntity", 404),
    Kind.ENTITY_EXISTS: Row("DENIED", 409, "InvalidParameterException", 400, "entity already exists",
                            "EntityAlreadyExists", 409),
    Kind.MALFORMED_POLICY: Row("UNSUPPORTED", 400, "InvalidParameterException", 400, "malformed policy document",
                               "MalformedPolicyDocument", 400),
    Kind.DELETE_CONFLICT: Row("DENIED", 409, "InvalidParameterException", 400, "delete conflict",
                              "DeleteConflict", 409),
    Kind.LIMIT_EXCEEDED: Row("TOOMANYREQUESTS", 429, "LimitExceededException", 400, "limit exceeded",
                             "LimitExceeded", 409),
    Kind.POLICY_NOT_FOUND: Row("NAME_UNKNOWN", 404, "RepositoryPolicyNotFoundException", 400,
                               "repository policy not found", "NoSuchEntity", 404),
    Kind.REGISTRY_POLICY_NOT_FOUND: Row("NAME_UNKNOWN", 404, "RegistryPolicyNotFoundException", 400,
                                        "registry policy not found", "NoSuchEntity", 404),
    Kind.LIFECYCLE_POLICY_NOT_FOUND: Row("NAME_UNKNOWN", 404, "LifecyclePolicyNotFoundException", 400,
                                         "lifecycle policy not found", "NoSuchEntity", 404),
    Kind.LIFECYCLE_PREVIEW_NOT_FOUND: Row("NAME_UNKNOWN", 404, "LifecyclePolicyPreviewNotFoundException", 400,
                                          "lifecycle policy preview not found", "NoSuchEntity", 404),
    Kind.LIFECYCLE_PREVIEW_IN_PROGRESS: Row("DENIED", 409, "LifecyclePolicyPreviewInProgressException", 400,
                                            "a lifecycle policy preview is in progress", "Conflict", 409),
    Kind.SCAN_NOT_FOUND: Row("MANIFEST_UNKNOWN", 404, "ScanNotFoundException", 400, "image scan not found"),
    Kind.UNKNOWN: Row("UNKNOWN", 500, "ServerException", 500, "unknown error"),
}


class RegistryError(Exception):
    """A failure with a kind from the table, a human message and optional structured detail."""

    def __init__(self, kind: Kind, message: str | None = None, detail: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.message = message or TABLE[kind].text
        self.detail = detail
        self.headers = headers or {}
        super().__init__(f"{kind.value}: {self.message}")

    @property
    def row(self) -> Row:
        return TABLE[self.kind]
