"""A minimal parser for `key = value` configuration files."""


class ConfigError(ValueError):
    pass


def parse(text):
    """Parse `key = value` lines into a dict.

    Blank lines and lines starting with `#` are ignored. Keys and values
    are stripped of surrounding whitespace.
    """
    result = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ConfigError(f"line {lineno}: expected 'key = value', got {raw!r}")
        key, value = line.split("=")
        key = key.strip()
        if not key:
            raise ConfigError(f"line {lineno}: empty key")
        result[key] = value.strip()
    return result
