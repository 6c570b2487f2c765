"""The model bucket: its layout, the files of a solution version, and loading them for serving.

layout.py      bucket keys, manifests, campaign pointers, checksums (no numpy)
bucket.py      the control plane's and the publisher's reads and writes (boto3)
writer.py      the one writer of solution versions (publish CLI, demo, training)
s3_reader.py   the serving path's GET-only S3 client (no boto3 on the cold path)
objects.py     serving reads: bytes, buffers, read-ahead (no numpy)
npy.py, ids.py, matrices.py, attributes.py   decoding a version's files
item_matrix.py the item matrix's layout: two bfloat16-half planes (published, loaded, scanned)
model.py       a loaded solution version
store.py       campaigns -> loaded versions, kept warm, last good version on failure
warm_start.py  the head start of PRELOAD_CAMPAIGNS (I/O before numpy is imported)
"""
