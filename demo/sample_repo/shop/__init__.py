"""A tiny shop used by the demo review."""


def version():
    return "1.0"
