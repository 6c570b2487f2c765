"""GetRecommendations (POST /recommendations): user personalization, related items, popular items."""

from personalize_core.modelstore.warm_start import begin_preload

# First, before numpy and the rest are imported: with PRELOAD_CAMPAIGNS set, the model's download
# starts now and runs while the imports below do (preload() then finds it done or under way).
begin_preload()

from typing import Any  # noqa: E402

from personalize_core.edge import api  # noqa: E402
from personalize_core.edge.requests import RecommendationsRequest  # noqa: E402
from personalize_core.modelstore.store import get_store, preload  # noqa: E402
from personalize_core.observability import API_GATEWAY_REST, LambdaContext, logger, metrics, tracer  # noqa: E402
from personalize_core.serving import operations  # noqa: E402
from personalize_core.settings import get_settings  # noqa: E402

app = api.create_app()
# Only when PRELOAD_CAMPAIGNS is set (the template's SnapStart option): load during init, so the
# snapshot holds the model and a restored function answers its first request warm.
preload(get_store(), get_settings().preload_campaigns)


@app.post("/recommendations")
@tracer.capture_method
def get_recommendations() -> api.Response:
    request = RecommendationsRequest.parse(api.json_body(app))
    recommendation_id = f"RID-{api.request_id(app)}"
    answer = operations.get_recommendations(request, get_store(), recommendation_id=recommendation_id)
    metrics.add_metric(name="Recommendations", unit="Count", value=1)
    return api.respond(
        app,
        200,
        {"itemList": answer.items, "recommendationId": recommendation_id},
        {api.SOLUTION_VERSION_HEADER: answer.solution_version_arn},
    )


@logger.inject_lambda_context(correlation_id_path=API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event)
