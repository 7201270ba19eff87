"""Consumer: takes tasks from god in batches, runs them in worker processes, sends results."""

from consumer.tasks import Retry

__all__ = ["Retry"]
