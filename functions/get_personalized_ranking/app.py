"""GetPersonalizedRanking (POST /personalize-ranking): a user's order of a given list of items."""

from typing import Any

from personalize_core.edge import api
from personalize_core.edge.requests import RankingRequest
from personalize_core.modelstore.store import get_store
from personalize_core.observability import API_GATEWAY_REST, LambdaContext, logger, metrics, tracer
from personalize_core.serving import operations

app = api.create_app()


@app.post("/personalize-ranking")
@tracer.capture_method
def get_personalized_ranking() -> api.Response:
    request = RankingRequest.parse(api.json_body(app))
    recommendation_id = f"RID-{api.request_id(app)}"
    answer = operations.get_personalized_ranking(request, get_store(), recommendation_id=recommendation_id)
    metrics.add_metric(name="Rankings", unit="Count", value=1)
    return api.respond(
        app,
        200,
        {"personalizedRanking": answer.items, "recommendationId": recommendation_id},
        {api.SOLUTION_VERSION_HEADER: answer.solution_version_arn},
    )


@logger.inject_lambda_context(correlation_id_path=API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event)
