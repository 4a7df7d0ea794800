"""`python -m localcloud.pubsub --port N`: run the builtin Pub/Sub emulator in the foreground."""

import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main())
