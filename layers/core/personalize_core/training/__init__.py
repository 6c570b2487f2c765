"""Training solution versions from Personalize datasets (implicit's ALS), run by the training function.

messages.py     the training queue's messages (import, train, autotrain)
config.py       recipes (custom and domain) and solutionConfig -> what a run does
evaluation.py   Personalize's holdout and metric names
trainer.py      interactions in, a solution version's files out (through modelstore.writer)
inputs.py       where training data comes from: imported datasets, and (later) recorded events
worker.py       the training function's logic: import jobs, versions, recommenders, campaigns
"""
