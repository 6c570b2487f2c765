"""Personalize's datasets: schemas (Avro), import jobs' row checks, and imported data in the model bucket.

schema.py    Avro schemas as CreateSchema / CreateDataset check them; one CSV value's check
imports.py   an import job's work: CSV from S3 (the job's role) checked row by row
data.py      imported data in the model bucket, and reading it back for training
"""
