"""Answering requests from a loaded solution version.

operations.py        GetRecommendations and GetPersonalizedRanking: a request in, items out
recipes.py           the one per-recipe dispatch, shared by real time and batch
scoring.py           exact softmax scores and top-k from the item planes' high-half scan
batch_scoring.py     the same for many users at once (blocked matrix products)
native.py            the compiled kernels (_planes.c: scan and re-rank; _select.c: candidate selection)
filter_language.py   filter expressions parsed
filters.py           filters checked against a model and evaluated as item masks
filter_store.py      filter records, read and compiled once per warm function
"""
