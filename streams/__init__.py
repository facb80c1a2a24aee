"""The stream protocol: UI message chunks (`streams.chunks`), and their Redis
publisher (`streams.publisher`, with the activities' batching writers in
`streams.writer`) and reader (`streams.reader`).

Nothing is re-exported here: workflow code imports `streams.chunks`, and importing
this package must not pull the Redis client into Temporal's workflow sandbox.
"""
