import re


def slugify(text: str, sep: str = "-") -> str:
    """Turn text into a URL slug."""
    text = text.lower().strip()
    return re.sub(r"[^a-z0-9]+", sep, text).strip(sep)
