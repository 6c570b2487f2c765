"""The HTTP edge: API Gateway proxy events in, Personalize's wire shapes out.

api.py        the one-route app, the request body, responses and the one error mapping
fields.py     typed, limit-checked access to a JSON request's fields (public validators)
requests.py   the runtime requests (GetRecommendations, GetPersonalizedRanking)

Every body passes personalize_core.text's Unicode check (in api.json_body).
"""
