"""Personalize's authorisation model: may this caller do this, by its own IAM policies?

API Gateway's IAM auth (AuthMode=IAM) proves who signed a request and that they may invoke the API
(``execute-api:Invoke``); it puts the principal in ``requestContext.identity.userArn``. What it
cannot know is whether the caller may, say, update *this* campaign. So each operation names the
permissions Personalize itself would check - its own action names on its own resource ARNs
(``personalize:UpdateCampaign`` on ``arn:aws:personalize:...:campaign/x``; for a batch job also
``iam:PassRole`` on the job's role, passed to ``personalize.amazonaws.com``) - and this module asks
IAM's policy simulator (``iam:SimulatePrincipalPolicy``) whether the caller's policies allow them.
The policies a Personalize user already has then govern this product unchanged: identity policies,
managed and inline, through groups, with permissions boundaries and Organizations SCPs, as IAM
evaluates them (session policies and resource policies are not part of a principal simulation).

    authorizer = get_authorizer()                         # from settings (control_plane_access)
    authorizer.authorize(caller_of(event), [Permission("personalize:PutEvents", tracker_arn)])

``authorize`` raises AccessDeniedException (a PersonalizeError: the edge answers it as Personalize
does) naming the first permission denied, or AuthorizationUnavailableError when IAM cannot answer.
Decisions are cached for ``authorization_cache_seconds`` per (principal, permission): a warm
function asks IAM once per caller and resource in that window. The account's root user is allowed
everything (IAM does not restrict root). ``OPEN`` skips every check: the explicit opt-in
(ControlPlaneAccess=Open) for stacks without IAM auth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from personalize_core.aws.clients import create_iam_client
from personalize_core.errors import AccessDeniedException, AuthorizationUnavailableError
from personalize_core.observability import logger
from personalize_core.settings import get_settings

if TYPE_CHECKING:
    from personalize_core.edge.api import ProxyEvent

#: control_plane_access values.
IAM_POLICIES = "IAM_POLICIES"
OPEN = "OPEN"
#: What iam:PassRole's condition key says the role is passed to (as Personalize's own PassRole).
PERSONALIZE_SERVICE = "personalize.amazonaws.com"


class Permission(NamedTuple):
    """One thing a request needs: an IAM action on a resource ARN (``*`` for List operations), with
    the request's condition keys (e.g. ``iam:PassedToService``)."""

    action: str
    resource: str = "*"
    context: tuple[tuple[str, str], ...] = ()


def pass_role(role_arn: str) -> Permission:
    """``iam:PassRole`` of a role to Personalize (what CreateBatchInferenceJob's roleArn needs)."""
    return Permission("iam:PassRole", role_arn, (("iam:PassedToService", PERSONALIZE_SERVICE),))


class Caller(NamedTuple):
    """Who signed the request, as API Gateway's IAM auth reports it."""

    #: ``requestContext.identity.userArn``: a user, an assumed-role session, or the account root.
    arn: str

    @property
    def is_root(self) -> bool:
        return self.arn.endswith(":root") and ":iam::" in self.arn

    @property
    def role_name(self) -> str | None:
        """The role of an assumed-role session (``arn:aws:sts::<acct>:assumed-role/<role>/<session>``)."""
        if ":sts::" not in self.arn or ":assumed-role/" not in self.arn:
            return None
        return self.arn.split(":assumed-role/", 1)[1].split("/", 1)[0] or None


def caller_of(event: ProxyEvent) -> Caller | None:
    """The caller API Gateway authenticated (AuthMode=IAM), or None (no IAM auth on the route)."""
    context = event.raw.get("requestContext")
    identity = context.get("identity") if isinstance(context, Mapping) else None
    arn = identity.get("userArn") if isinstance(identity, Mapping) else None
    return Caller(str(arn)) if isinstance(arn, str) and arn.startswith("arn:") else None


class _Decision(NamedTuple):
    allowed: bool
    why: str
    expires: float


class Authorizer:
    def __init__(
        self,
        mode: str = IAM_POLICIES,
        iam_factory: Callable[[], Any] = create_iam_client,
        cache_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in (IAM_POLICIES, OPEN):
            raise ValueError(f"control-plane access must be {IAM_POLICIES} or {OPEN}, not {mode!r}")
        self.mode = mode
        self.cache_seconds = cache_seconds
        self._iam_factory = iam_factory
        self._iam: Any = None
        self._clock = clock
        self._lock = threading.Lock()
        self._decisions: dict[tuple[str, Permission], _Decision] = {}
        self._principals: dict[str, tuple[str, float]] = {}
        #: IAM calls made (the measurement and the tests read it).
        self.simulations = 0

    @property
    def iam(self) -> Any:
        if self._iam is None:
            self._iam = self._iam_factory()
        return self._iam

    def authorize(self, caller: Caller | None, permissions: Sequence[Permission]) -> None:
        """Return if the caller may do all of ``permissions``; AccessDeniedException otherwise."""
        if self.mode == OPEN:
            return
        if caller is None:
            raise AccessDeniedException(
                "The request carries no IAM identity: this control plane authorises each call against "
                "the caller's IAM policies (deploy with AuthMode=IAM and sign requests), unless the stack "
                "opens it explicitly (ControlPlaneAccess=Open)"
            )
        if caller.is_root:
            return  # IAM policies do not restrict the account's root user
        now = self._clock()
        wanted = [p for p in dict.fromkeys(permissions) if not self._cached_allow(caller, p, now)]
        if wanted:
            self._simulate(caller, wanted, now)

    def _cached_allow(self, caller: Caller, permission: Permission, now: float) -> bool:
        with self._lock:
            decision = self._decisions.get((caller.arn, permission))
        if decision is None or decision.expires <= now:
            return False
        if not decision.allowed:
            raise self._denied(caller, permission, decision.why)
        return True

    def _simulate(self, caller: Caller, permissions: list[Permission], now: float) -> None:
        principal = self._principal(caller, now)
        # One simulation per distinct context (every permission of a control-plane call has the same).
        by_context: dict[tuple[tuple[str, str], ...], list[Permission]] = {}
        for permission in permissions:
            by_context.setdefault(permission.context, []).append(permission)
        for context, group in by_context.items():
            results = self._evaluate(principal, group, context)
            for permission in group:
                decision = results.get((permission.action, permission.resource), "implicitDeny")
                allowed = decision == "allowed"
                why = "with an explicit deny" if decision == "explicitDeny" else "because no policy allows it"
                with self._lock:
                    self._decisions[(caller.arn, permission)] = _Decision(
                        allowed, why, now + self.cache_seconds
                    )
                if not allowed:
                    raise self._denied(caller, permission, why)

    def _evaluate(
        self, principal: str, permissions: list[Permission], context: tuple[tuple[str, str], ...]
    ) -> dict[tuple[str, str], str]:
        """IAM's decision for each (action, resource): allowed, explicitDeny or implicitDeny."""
        found: dict[tuple[str, str], str] = {}
        entries = [
            {"ContextKeyName": key, "ContextKeyValues": [value], "ContextKeyType": "string"}
            for key, value in context
        ]
        # The simulator evaluates every action against every resource: ask per resource.
        for resource in dict.fromkeys(p.resource for p in permissions):
            actions = sorted({p.action for p in permissions if p.resource == resource})
            request: dict[str, Any] = {"PolicySourceArn": principal, "ActionNames": actions}
            if resource != "*":
                request["ResourceArns"] = [resource]
            if entries:
                request["ContextEntries"] = entries
            try:
                self.simulations += 1
                pages = self.iam.get_paginator("simulate_principal_policy").paginate(**request)
                for page in pages:
                    for result in page.get("EvaluationResults", []):
                        found[(result["EvalActionName"], resource)] = str(result["EvalDecision"])
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
                if code in ("NoSuchEntity", "InvalidInput"):  # a principal IAM cannot simulate
                    return {}
                logger.exception("IAM policy simulation failed", extra={"principal": principal})
                raise AuthorizationUnavailableError(
                    "The caller's permissions cannot be checked now (IAM did not answer); try again"
                ) from exc
        return found

    def _principal(self, caller: Caller, now: float) -> str:
        """The IAM entity whose policies apply: the user, or the role of an assumed-role session."""
        role = caller.role_name
        if role is None:
            return caller.arn
        with self._lock:
            known = self._principals.get(role)
        if known is not None and known[1] > now:
            return known[0]
        try:
            arn = str(
                self.iam.get_role(RoleName=role)["Role"]["Arn"]
            )  # the role's path is not in the session ARN
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code == "NoSuchEntity":
                raise AccessDeniedException(
                    f"{caller.arn} is not authorized: its role {role} does not exist"
                ) from None
            raise AuthorizationUnavailableError(
                "The caller's role cannot be looked up now; try again"
            ) from exc
        with self._lock:
            self._principals[role] = (arn, now + self.cache_seconds)
        return arn

    @staticmethod
    def _denied(caller: Caller, permission: Permission, why: str) -> AccessDeniedException:
        # IAM's own wording, so that what users search for matches.
        return AccessDeniedException(
            f"User: {caller.arn} is not authorized to perform: {permission.action} on resource: "
            f"{permission.resource} {why}"
        )


@cache
def get_authorizer() -> Authorizer:
    """The process-wide authorizer (a warm function keeps its cache)."""
    settings = get_settings()
    return Authorizer(settings.control_plane_access, cache_seconds=settings.authorization_cache_seconds)
