"""The benchmarks' process environment: fake AWS credentials, quiet Powertools, no tracing.

Imported first by every benchmark script (before boto3 or Powertools are imported, since both read
the environment when they load): ``import benchmarks.environment``.
"""

import os

os.environ.update(
    AWS_ACCESS_KEY_ID="bench",
    AWS_SECRET_ACCESS_KEY="bench",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_DISABLED="true",
    POWERTOOLS_SERVICE_NAME="bench",
    POWERTOOLS_METRICS_NAMESPACE="bench",
    POWERTOOLS_LOG_LEVEL="WARNING",
)
