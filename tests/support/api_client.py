"""A program using the Python API as a user writes it: ``producer.connect()`` finds god, the key
and TLS in the environment. Puts the integers given as arguments and prints each result."""

import sys

from producer import connect

if __name__ == "__main__":
    with connect(results=True, give_up_after=10) as god:
        god.put_many([int(a) for a in sys.argv[1:]])
        for result in god.results(timeout=20):
            print(result.line(), flush=True)
