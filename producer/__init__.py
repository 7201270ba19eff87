"""Producer: puts tasks on god in batches: the tutorial's random rounds, JSON lines, or your own program."""

from producer.producer import Producer, connect

__all__ = ["Producer", "connect"]
