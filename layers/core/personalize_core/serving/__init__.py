"""Answering requests from a loaded solution version.

operations.py        GetRecommendations and GetPersonalizedRanking: a request in, items out
recipes.py           the one per-recipe dispatch, shared by real time and batch
scoring.py           exact softmax scores and top-k (native.py: the compiled selection)
filter_language.py   filter expressions parsed
filters.py           filters checked against a model and evaluated as item masks
filter_store.py      filter records, read and compiled once per warm function
"""
