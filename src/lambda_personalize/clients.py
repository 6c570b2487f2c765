"""Clients for a deployed stack.

API Gateway's IAM auth checks a SigV4 signature for the service ``execute-api``, while boto3
signs Personalize's runtime calls for ``personalize``. ``runtime_client`` returns the standard
``personalize-runtime`` client with one change: its requests are signed for ``execute-api`` in
the stack's region. Everything else (shapes, paginators, typed exceptions) is boto3's own.

    from lambda_personalize.clients import runtime_client

    runtime = runtime_client("https://abc123.execute-api.eu-west-1.amazonaws.com/Prod")
    runtime.get_recommendations(campaignArn=..., userId="42")
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_personalize_runtime import PersonalizeRuntimeClient

EXECUTE_API = "execute-api"
_API_HOST = re.compile(r"^https?://[^./]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?(/|$)")


def stack_region(api_url: str) -> str | None:
    """The region in an API Gateway URL (``https://<id>.execute-api.<region>.amazonaws.com/...``)."""
    match = _API_HOST.match(api_url)
    return match.group(1) if match else None


def runtime_client(
    api_url: str, region: str | None = None, session: Any = None, **client_kwargs: Any
) -> PersonalizeRuntimeClient:
    """A ``personalize-runtime`` client for the stack at ``api_url``, signing for ``execute-api``.

    ``region`` defaults to the one in ``api_url``, then to the session's. ``session`` is a
    ``boto3.session.Session`` (default: a new one, with the usual credential chain).
    ``client_kwargs`` go to ``session.client`` (e.g. ``config=Config(...)``).
    """
    import boto3  # noqa: PLC0415 - importing this module must stay cheap

    session = session or boto3.session.Session()
    signing_region = region or stack_region(api_url) or session.region_name
    if not signing_region:
        raise ValueError(f"cannot tell the region of {api_url}: pass region=")
    client: PersonalizeRuntimeClient = session.client(
        "personalize-runtime", endpoint_url=api_url, region_name=signing_region, **client_kwargs
    )

    def sign_for_execute_api(request: Any, **_: Any) -> None:
        # botocore reads the signing name and region from the request's signing context right
        # after this event, so this changes only the service in the credential scope.
        signing = request.context.setdefault("signing", {})
        signing["signing_name"] = EXECUTE_API
        signing["region"] = signing_region

    client.meta.events.register("before-sign.personalize-runtime", sign_for_execute_api)
    return client
