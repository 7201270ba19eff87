"""Exit codes shared by god, producer and consumer, so scripts can tell failures apart."""

OK = 0  #: everything went as asked
FAILED = 1  #: the run finished, but something it was responsible for failed
USAGE = 2  #: bad flags (typer/click's own code for usage errors)
CONFIG = 3  #: bad configuration: address, authkey, task function, file
UNREACHABLE = 4  #: god could not be reached within the allowed time
AUTH = 5  #: god refused our authkey
ADDRESS_IN_USE = 6  #: god could not bind its address
INTERRUPTED = 130  #: stopped at once by a second Ctrl-C / SIGTERM (128 + SIGINT)
