"""A task module that imports in a consumer but ends every worker process that imports it: what a
task module that crashes on import in the workers' environment looks like to the consumer."""

import multiprocessing
import os

from consumer.tasks import square

if multiprocessing.parent_process() is not None:
    os._exit(3)

__all__ = ["square"]
