"""A normalised fingerprint of an example, so the same example is written once (exports) and a
correction that only restyles the answer does not count as one (reward labels)."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_WORD = re.compile(r"\w+")


def normalised(text: str) -> str:
    """Case, width, spacing and punctuation removed: "Click *Reset*." equals "click reset"."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def fingerprint(*parts: str) -> str:
    """A stable hash of the normalised parts; the separator keeps ("ab", "c") apart from ("a", "bc")."""
    joined = "\x1f".join(normalised(p) for p in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()
