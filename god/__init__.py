"""God: the coordinator that serves the task and result queues and records results."""
