"""IAM for the local runtime: who signed a request, and what their policies allow, on the embedded AWS.

On AWS, API Gateway's IAM auth names the caller (``requestContext.identity.userArn``) and the
control plane asks IAM's policy simulator whether the caller's policies allow each operation
(personalize_core.edge.authorization). Locally both answers come from the embedded AWS (moto's
server, in this process), so the same code runs against real IAM policy documents:

- ``signer_identity(headers)``: the principal whose access key signed the request - an IAM user or
  an assumed-role session of the embedded IAM. A request signed with any other key (``make run``'s
  fake ``local`` credentials) or not signed at all is the account's root user, whom IAM policies
  do not restrict, as on AWS. The signature itself is not checked here (API Gateway checks it).
- ``install_policy_simulator()``: moto has no ``iam:SimulatePrincipalPolicy``; this adds it to the
  embedded IAM, evaluating the principal's policies (inline and managed, its groups' too) with
  moto's own policy engine (``moto.iam.access_control.IAMPolicy``): Allow/Deny, Action/NotAction
  and Resource wildcards, an explicit Deny winning, StringEquals conditions. What moto's engine does
  not evaluate (other condition operators, NotResource, permissions boundaries, SCPs) the real
  simulator does; docs/DESIGN.md lists it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from moto.core.responses import ActionResult
from moto.iam.access_control import CreateAccessKeyFailure, IAMPolicy, PermissionResult, create_access_key
from moto.iam.exceptions import NoSuchEntity
from moto.iam.responses import IamResponse

ACCOUNT = "123456789012"  # moto's default account: the local stack's
PARTITION = "aws"
_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]{16,128})/")


def root_identity(account: str = ACCOUNT) -> dict[str, str]:
    """What API Gateway reports for a request the account's root user signed."""
    return {"userArn": f"arn:{PARTITION}:iam::{account}:root", "accountId": account, "caller": account}


def signer_identity(headers: Mapping[str, str], account: str = ACCOUNT) -> dict[str, str]:
    """``requestContext.identity`` fields for the signer of a request (see the module doc)."""
    authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    found = _CREDENTIAL.search(authorization)
    if found is None:
        return root_identity(account)
    key_id = found.group(1)
    token = next((v for k, v in headers.items() if k.lower() == "x-amz-security-token"), None)
    try:
        signer = create_access_key(
            account, PARTITION, key_id, {"X-Amz-Security-Token": token} if token else {}
        )
    except (CreateAccessKeyFailure, KeyError):
        return root_identity(account)
    return {"userArn": signer.arn, "accountId": account, "caller": key_id, "accessKey": key_id}


def _policies(backend: Any, kind: str, name: str) -> list[Any]:
    """The principal's identity policies, as moto's own authorisation collects them."""
    if kind == "user":
        policies: list[Any] = [backend.get_user_policy(name, p) for p in backend.list_user_policies(name)]
        policies += backend.list_attached_user_policies(name)[0]
        for group in backend.get_groups_for_user(name):
            policies += [
                backend.get_group_policy(group.name, p) for p in backend.list_group_policies(group.name)
            ]
            policies += backend.list_attached_group_policies(group.name)[0]
        return policies
    policies = [backend.get_role_policy(name, p)[1] for p in backend.list_role_policies(name)]
    return policies + list(backend.list_attached_role_policies(name)[0])


def _decision(policies: list[Any], action: str, resource: str, context: dict[str, str]) -> str:
    allowed = False
    for policy in policies:
        result = IAMPolicy(policy).is_action_permitted(action, resource, incoming_condition_values=context)
        if result == PermissionResult.DENIED:
            return "explicitDeny"
        allowed = allowed or result == PermissionResult.PERMITTED
    return "allowed" if allowed else "implicitDeny"


def _simulate_principal_policy(self: Any) -> Any:
    """moto's IamResponse method for SimulatePrincipalPolicy (its parameters parsed by moto)."""
    source = str(self._get_param("PolicySourceArn"))
    kind, _, path = source.split(":", 5)[-1].partition("/")
    if kind not in ("user", "role") or not path:
        raise NoSuchEntity(f"Cannot simulate {source}: only users and roles are simulated here")
    policies = _policies(self.backend, kind, path.rsplit("/", 1)[-1])
    context = {
        str(entry["ContextKeyName"]): str((entry.get("ContextKeyValues") or [""])[0])
        for entry in self._get_param("ContextEntries", []) or []
    }
    results = [
        {
            "EvalActionName": action,
            "EvalResourceName": resource,
            "EvalDecision": _decision(policies, action, resource, context),
            "MatchedStatements": [],
            "MissingContextValues": [],
        }
        for action in self._get_param("ActionNames", [])
        for resource in (self._get_param("ResourceArns") or ["*"])
    ]
    return ActionResult({"EvaluationResults": results, "IsTruncated": False})


def install_policy_simulator() -> None:
    """Give the embedded IAM (moto, in this process) ``SimulatePrincipalPolicy``. Idempotent."""
    if getattr(IamResponse, "simulate_principal_policy", None) is not _simulate_principal_policy:
        setattr(IamResponse, "simulate_principal_policy", _simulate_principal_policy)  # noqa: B010
