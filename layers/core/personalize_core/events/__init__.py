"""Events: Personalize's ``personalize-events`` API and the records it keeps.

    requests.py    PutEvents, PutItems, PutUsers validated against botocore's model
    items.py       what the events table's items hold (keys, records, store errors)
    table.py       the events table (DynamoDB): recent events per user and session, session links,
                   recommendation records, event trackers' tracking ids, dataset groups' state and
                   PutItems/PutUsers metadata; the only module that touches it
    delivery.py    every accepted event to Firehose, as a line of Personalize's Interactions format
    recording.py   the operations: what PutEvents, PutItems and PutUsers do

Serving reads what these write through ``serving/live.py``; training reads the Firehose files
through ``training/inputs.py``.
"""
