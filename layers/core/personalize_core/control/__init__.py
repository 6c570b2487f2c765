"""Personalize's control plane (JSON 1.1 at ``POST /``): the operation registry and one module per
resource.

    registry.py          X-Amz-Target -> operation
    paging.py            the one nextToken codec
    filters.py, campaigns.py, solution_versions.py, batch_jobs.py   the operations
"""
