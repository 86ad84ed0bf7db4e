"""The IAM and STS faces: POST / form-encoded (query protocol), SigV4 with service iam or sts."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from cargohold.errors import Kind, RegistryError
from cargohold.http.bodies import read_limited
from cargohold.http.context import ContextFactory
from cargohold.http.ecr.model import service_model
from cargohold.http.ecr.sigv4 import parse_authorization, verify
from cargohold.http.query import parse_input, render_error, render_output
from cargohold.services.iam import Iam
from cargohold.services.identity import Identity, Principal, RequestContext
from cargohold.storage.meta.iam import KeyRow, PolicyRow, UserRow

log = logging.getLogger("cargohold.iam")
MAX_BODY = 1024 * 1024
NAMESPACES = {"iam": "https://iam.amazonaws.com/doc/2010-05-08/", "sts": "https://sts.amazonaws.com/doc/2011-06-15/"}
Op = Callable[[Principal, RequestContext, dict[str, Any]], dict[str, Any] | None]  # None: empty result


def _ts(ms: int) -> float:
    return ms / 1000.0


def user_shape(u: UserRow) -> dict[str, Any]:
    out: dict[str, Any] = {"Path": u.path, "UserName": u.name, "UserId": u.user_id, "Arn": u.arn,
                           "CreateDate": _ts(u.created_at)}
    if u.tags:
        out["Tags"] = u.tags
    return out


def key_shape(k: KeyRow, user: str) -> dict[str, Any]:
    return {"UserName": user, "AccessKeyId": k.key_id, "Status": k.status, "CreateDate": _ts(k.created_at)}


def policy_shape(p: PolicyRow) -> dict[str, Any]:
    out: dict[str, Any] = {"PolicyName": p.name, "PolicyId": p.policy_id, "Arn": p.arn, "Path": p.path,
                           "DefaultVersionId": "v1", "AttachmentCount": p.attachment_count,
                           "PermissionsBoundaryUsageCount": 0, "IsAttachable": True,
                           "CreateDate": _ts(p.created_at), "UpdateDate": _ts(p.updated_at)}
    if p.description:
        out["Description"] = p.description
    return out


def _page(items: list[Any], limit: int, key: Callable[[Any], str]) -> tuple[list[Any], dict[str, Any]]:
    if len(items) > limit:
        items = items[:limit]
        return items, {"IsTruncated": True, "Marker": key(items[-1])}
    return items, {"IsTruncated": False}


class IamApi:
    def __init__(self, identity: Identity, iam: Iam, region: str, clock: Callable[[], float] = time.time,
                 contexts: ContextFactory | None = None) -> None:
        self.contexts = contexts or ContextFactory()
        self.identity = identity
        self.iam = iam
        self.region = region
        self.clock = clock
        self.ops: dict[str, dict[str, Op]] = {"iam": self._iam_ops(), "sts": {"GetCallerIdentity": self._whoami}}

    def _secret_for(self, key_id: str) -> str | None:
        found = self.identity.principal_for_key(key_id)
        return found[1] if found else None

    async def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        namespace = NAMESPACES["iam"]
        try:
            signed = parse_authorization(request.headers.get("authorization"))
            service = signed.service if signed is not None and signed.service in NAMESPACES else "iam"
            namespace = NAMESPACES[service]
            body = await read_limited(request, MAX_BODY, Kind.VALIDATION)
            params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            action = params.get("Action", "")
            # IAM is global (signed for us-east-1); STS may be signed for the configured region.
            region = signed.region if signed and signed.region in (self.region, "us-east-1") else self.region

            def authenticate() -> Principal:
                verify(request.method, request.url.path, request.url.query, request.headers, body, self._secret_for,
                       now=self.clock(), region=region, services=(service,))
                assert signed is not None
                found = self.identity.principal_for_key(signed.access_key_id)
                if found is None:
                    raise RegistryError(Kind.UNRECOGNIZED_CLIENT,
                                        "The security token included in the request is invalid.")
                return found[0]

            principal = await to_thread.run_sync(authenticate)
            op = self.ops[service].get(action)
            model = service_model(service)
            if op is None:
                if action in model.operation_names:
                    raise RegistryError(Kind.NOT_IMPLEMENTED, f"The operation {action} is not implemented by cargohold")
                raise RegistryError(Kind.UNKNOWN_OPERATION, f"Could not find operation {action[:80]}")
            op_model = model.operation_model(action)
            parsed = parse_input(op_model, params)
            ctx = self.contexts(request, request_id)
            result = await to_thread.run_sync(op, principal, ctx, parsed)
            return Response(render_output(op_model, namespace, result or {}, request_id), media_type="text/xml")
        except RegistryError as err:
            status, payload = render_error(err, namespace, request_id)
            return Response(payload, status_code=status, media_type="text/xml")
        except Exception:
            log.exception("IAM request %s failed", request_id)
            status, payload = render_error(RegistryError(Kind.UNKNOWN, "internal error"), namespace, request_id)
            return Response(payload, status_code=status, media_type="text/xml")

    # -- operations -------------------------------------------------------------------------

    def _whoami(self, principal: Principal, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return {"UserId": principal.user_id, "Account": principal.account_id, "Arn": principal.arn}

    def _iam_ops(self) -> dict[str, Op]:
        iam = self.iam

        def limit(p: dict[str, Any]) -> int:
            return min(int(p.get("MaxItems") or 100), 1000)

        def list_users(c: Principal, x: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
            users = iam.list_users(c, x, p.get("PathPrefix", "/"), p.get("Marker"), limit(p) + 1)
            users, more = _page(users, limit(p), lambda u: u.name)
            return {"Users": [user_shape(u) for u in users], **more}

        def create_key(c: Principal, x: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
            new = iam.create_access_key(c, x, p.get("UserName"))
            return {"AccessKey": {**key_shape(new.key, new.user_name), "SecretAccessKey": new.secret}}

        def list_keys(c: Principal, x: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
            user, keys = iam.list_access_keys(c, x, p.get("UserName"))
            return {"AccessKeyMetadata": [key_shape(k, user) for k in keys], "IsTruncated": False}

        def inline(kind: str) -> dict[str, Op]:
            owner = "UserName" if kind == "user" else "GroupName"
            cap = kind.capitalize()
            return {
                f"Put{cap}Policy": lambda c, x, p: iam.put_inline(c, x, kind, p[owner], p["PolicyName"],
                                                                  p["PolicyDocument"]),
                f"Get{cap}Policy": lambda c, x, p: {
                    owner: p[owner], "PolicyName": p["PolicyName"],
                    # IAM returns policy documents URL-encoded; botocore decodes them.
                    "PolicyDocument": quote(iam.get_inline(c, x, kind, p[owner], p["PolicyName"]), safe="")},
                f"List{cap}Policies": lambda c, x, p: {"PolicyNames": iam.list_inline(c, x, kind, p[owner]),
                                                       "IsTruncated": False},
                f"Delete{cap}Policy": lambda c, x, p: iam.delete_inline(c, x, kind, p[owner], p["PolicyName"]),
                f"Attach{cap}Policy": lambda c, x, p: iam.attach(c, x, kind, p[owner], p["PolicyArn"]),
                f"Detach{cap}Policy": lambda c, x, p: iam.detach(c, x, kind, p[owner], p["PolicyArn"]),
                f"ListAttached{cap}Policies": lambda c, x, p: {
                    "AttachedPolicies": [{"PolicyName": n, "PolicyArn": a}
                                         for n, a in iam.attached(c, x, kind, p[owner])], "IsTruncated": False},
            }

        def list_policies(c: Principal, x: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
            if p.get("Scope") == "AWS":
                return {"Policies": [], "IsTruncated": False}
            policies = iam.list_policies(c, x, p.get("Marker"), limit(p) + 1)
            policies, more = _page(policies, limit(p), lambda q: q.name)
            return {"Policies": [policy_shape(q) for q in policies], **more}

        def group_shape(g: Any) -> dict[str, Any]:
            return {"Path": g.path, "GroupName": g.name, "GroupId": g.group_id, "Arn": g.arn,
                    "CreateDate": _ts(g.created_at)}

        ops: dict[str, Op] = {
            "CreateUser": lambda c, x, p: {"User": user_shape(iam.create_user(
                c, x, p["UserName"], p.get("Path", "/"), p.get("Tags")))},
            "GetUser": lambda c, x, p: {"User": user_shape(iam.get_user(c, x, p.get("UserName")))},
            "ListUsers": list_users,
            "DeleteUser": lambda c, x, p: iam.delete_user(c, x, p["UserName"]),
            "CreateAccessKey": create_key,
            "ListAccessKeys": list_keys,
            "UpdateAccessKey": lambda c, x, p: iam.update_access_key(c, x, p.get("UserName"), p["AccessKeyId"],
                                                                     p["Status"]),
            "DeleteAccessKey": lambda c, x, p: iam.delete_access_key(c, x, p.get("UserName"), p["AccessKeyId"]),
            "CreatePolicy": lambda c, x, p: {"Policy": policy_shape(iam.create_policy(
                c, x, p["PolicyName"], p["PolicyDocument"], p.get("Path", "/"), p.get("Description")))},
            "GetPolicy": lambda c, x, p: {"Policy": policy_shape(iam.get_policy(c, x, p["PolicyArn"]))},
            "ListPolicies": list_policies,
            "DeletePolicy": lambda c, x, p: iam.delete_policy(c, x, p["PolicyArn"]),
            "CreateGroup": lambda c, x, p: {"Group": group_shape(iam.create_group(c, x, p["GroupName"],
                                                                                   p.get("Path", "/")))},
            "AddUserToGroup": lambda c, x, p: iam.add_to_group(c, x, p["GroupName"], p["UserName"]),
            "RemoveUserFromGroup": lambda c, x, p: iam.remove_from_group(c, x, p["GroupName"], p["UserName"]),
        }
        ops.update(inline("user"))
        ops.update(inline("group"))
        return ops
