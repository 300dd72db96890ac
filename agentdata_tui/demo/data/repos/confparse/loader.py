"""Load configuration files from disk."""

from confparse import parse


def load(path, defaults=None):
    """Read the config file at `path`, layered over `defaults`."""
    config = dict(defaults or {})
    with open(path, encoding="utf-8") as fh:
        config.update(parse(fh.read()))
    return config
