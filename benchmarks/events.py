"""API Gateway events for the benchmarks (the same shape API Gateway sends the function)."""

from __future__ import annotations

import json
from typing import Any

from lambda_personalize.local_api import proxy_event


def recommendations_event(campaign_arn: str, user_id: str, num_results: int = 25) -> dict[str, Any]:
    body = json.dumps({"campaignArn": campaign_arn, "userId": user_id, "numResults": num_results})
    return proxy_event("POST", "/recommendations", {"Content-Type": "application/json"}, body.encode())
