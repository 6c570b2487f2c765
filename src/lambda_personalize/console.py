"""The local runtime's console page: Personalize's "Test campaign results", served over the same API.

``GET /console`` is a plain HTML page (no build step) that calls ``POST /recommendations``,
``POST /personalize-ranking``, ``POST /events`` (PutEvents) and the control plane at ``POST /``
exactly as a client would. ``GET /console/campaigns`` lists the campaigns in the model bucket, so
the page can offer them (the control plane's ListCampaigns is not something the runtime can rely
on existing); ``POST /console/events`` shows a user's or session's recent events as the events
table holds them (Personalize has no API that reads events back).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from importlib import resources
from typing import Any

from personalize_core.arns import parse_arn
from personalize_core.events.table import EventsTable

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
                group = (manifest.get("datasetGroupArn") if isinstance(manifest, dict) else "") or ""
            except (s3.exceptions.NoSuchKey, ValueError):
                recipe = group = ""
            if not group:  # a published version's dataset group is its solution
                head = pointer["solutionVersionArn"].partition(":solution/")[0]
                group = f"{head}:dataset-group/{pointer['solution']}"
            campaigns.append({**campaign, "recipe": recipe, "datasetGroupArn": group})
    return sorted(campaigns, key=lambda c: c["name"])


def recent_events(table: EventsTable | None, body: dict[str, Any]) -> dict[str, Any]:
    """A user's (or session's) recent events in a dataset group, newest first, as serving reads them."""
    if table is None:
        return {"events": [], "message": "This stack records no events"}
    group = parse_arn(str(body.get("datasetGroupArn", "")), "datasetGroupArn", "dataset-group").path[0]
    entity = table.entity(group, str(body.get("userId", "")))
    linked = entity.link
    if linked:  # a session linked to a user: serving reads the user's events
        entity = table.entity(group, linked)
    events = [
        {"eventId": e.event_id, "eventType": e.event_type, "itemId": e.item_id, "sentAt": e.sent_at}
        for e in entity.events
    ]
    return {"events": events, "linkedTo": linked}


def console_routes(
    model_bucket: str,
    s3_factory: Callable[[], Any],
    events_factory: Callable[[], EventsTable | None] = lambda: None,
) -> dict[tuple[str, str], tuple[str, Handler]]:
    def page(_event: dict[str, Any], _context: Any) -> dict[str, Any]:
        return _result(200, "text/html; charset=utf-8", page_html())

    def campaigns(_event: dict[str, Any], _context: Any) -> dict[str, Any]:
        listed = list_campaigns(s3_factory(), model_bucket) if model_bucket else []
        return _result(200, "application/json", json.dumps({"campaigns": listed}))

    def events(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        try:
            answer = recent_events(events_factory(), json.loads(event.get("body") or "{}"))
        except Exception as exc:  # a bad request from the page: say what it was
            return _result(400, "application/json", json.dumps({"message": str(exc)[:300]}))
        return _result(200, "application/json", json.dumps(answer))

    def home(_event: dict[str, Any], _context: Any) -> dict[str, Any]:
        return _result(302, "text/plain", "", {"Location": "/console"})

    return {
        ("GET", "/console"): ("Console", page),
        ("GET", "/console/campaigns"): ("Console", campaigns),
        ("POST", "/console/events"): ("Console", events),
        ("GET", "/"): ("Console", home),
    }
