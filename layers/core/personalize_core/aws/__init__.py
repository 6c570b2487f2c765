"""AWS on the serving functions' own terms: SigV4 signing and a JSON-protocol client on http.client.

boto3 costs a serving function ~0.3 s of cold start (botocore, service models, a client); these
modules cost the import of http.client. The model store's S3 GETs (``modelstore/s3_reader.py``)
and the events' DynamoDB and Firehose calls (``json_client.py``) sign with ``sigv4.py``.
"""
