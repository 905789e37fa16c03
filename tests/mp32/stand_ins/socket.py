# A stand-in for the socket module the 32-bit WebAssembly build lacks: just enough for
# firmware/link.py to import, so tests/mp32/link_heap.py can weigh the link's own bytecode.
AF_INET = 2
SOCK_DGRAM = 2
SOCK_STREAM = 1


def getaddrinfo(*a):
    raise OSError("no network in this build")


class socket:
    def __init__(self, *a):
        raise OSError("no network in this build")
