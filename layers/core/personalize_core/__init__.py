"""Core of Lambda Personalize: the Personalize contract served from numpy models in S3.

This package is the Lambda layer's content (it lands in /opt/python). It keeps its
cold path light: no I/O and no boto3 import at import time; clients and caches are
created on first use.
"""

__version__ = "0.1.0"
