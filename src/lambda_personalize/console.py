"""The local runtime's console page: Personalize's "Test campaign results", served over the same API.

``GET /console`` is a plain HTML page (no build step) that calls ``POST /recommendations``,
``POST /personalize-ranking`` and the control plane at ``POST /`` exactly as a client would.
``GET /console/campaigns`` lists the campaigns in the model bucket, so the page can offer them
(the control plane's ListCampaigns is not something the runtime can rely on existing).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from importlib import resources
from typing import Any

from .local_api import Handler

_PAGE = "console.html"
log = logging.getLogger(__name__)


def page_html() -> str:
    return resources.files("lambda_personalize").joinpath(_PAGE).read_text("utf-8")


def _result(
    status: int, content_type: str, body: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_type, "Cache-Control": "no-store", **(headers or {})},
        "body": body,
        "isBase64Encoded": False,
    }


def list_campaigns(s3: Any, bucket: str) -> list[dict[str, Any]]:
    """Every campaign pointer in the bucket, with the recipe of the version it serves."""
    campaigns = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix="campaigns/"):
        for entry in page.get("Contents", []):
            if not entry["Key"].endswith(".json"):
                continue
            try:
                pointer = json.loads(s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read())
                manifest_key = f"solutions/{pointer['solution']}/{pointer['version']}/manifest.json"
                campaign = {k: pointer[k] for k in ("campaignArn", "name", "solutionVersionArn")}
            except (ValueError, KeyError, TypeError) as exc:  # one unreadable record: left out, named
                log.error("console: %s is unreadable and left out: %s", entry["Key"], exc)
                continue
            try:
                manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
                recipe = manifest.get("recipe", "") if isinstance(manifest, dict) else ""
            except (s3.exceptions.NoSuchKey, ValueError):
                recipe = ""
            campaigns.append({**campaign, "recipe": recipe})
    return sorted(campaigns, key=lambda c: c["name"])


def console_routes(
    model_bucket: str, s3_factory: Callable[[], Any]
) -> dict[tuple[str, str], tuple[str, Handler]]:
    def page(_event: dict[str, Any], _context: Any) -> dict[str, Any]:
        return _result(200, "text/html; charset=utf-8", page_html())

    def campaigns(_event: dict[str, Any], _context: Any) -> dict[str, Any]:
        listed = list_campaigns(s3_factory(), model_bucket) if model_bucket else []
        return _result(200, "application/json", json.dumps({"campaigns": listed}))

    def home(_event: dict[str, Any], _context: Any) -> dict[str, Any]:
        return _result(302, "text/plain", "", {"Location": "/console"})

    return {
        ("GET", "/console"): ("Console", page),
        ("GET", "/console/campaigns"): ("Console", campaigns),
        ("GET", "/"): ("Console", home),
    }
