"""Lambda Personalize tooling: the publish CLI and the local runtime.

The serving code itself is ``personalize_core`` (the Lambda layer).
"""
