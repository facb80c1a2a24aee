"""The stream protocol: UI message chunks, and their Redis publisher and reader."""

from streams.chunks import TERMINAL_TYPES, Chunk, parse_chunk
from streams.publisher import ChunkWriter, Retention, StepStream, StreamPublisher
from streams.reader import StreamEvent, StreamReader

__all__ = [
    "TERMINAL_TYPES",
    "Chunk",
    "ChunkWriter",
    "Retention",
    "StepStream",
    "StreamEvent",
    "StreamPublisher",
    "StreamReader",
    "parse_chunk",
]
