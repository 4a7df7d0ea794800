"""Sizes as Cloud Run and Cloud Functions write them: memory limits such as 2Gi, 512Mi, 1G."""

from __future__ import annotations

import re

_MEMORY = re.compile(r"(\d+(?:\.\d+)?)(Mi|Gi|M|G)")
#: GiB per unit: binary Mi/Gi, and the decimal M/G that Cloud Functions also accepts.
_GIB_PER_UNIT = {"Mi": 1 / 1024, "Gi": 1.0, "M": 1e6 / 2**30, "G": 1e9 / 2**30}


def memory_gib(text: str) -> float:
    """GiB of a memory size: ``"512Mi"`` -> 0.5, ``"2Gi"`` -> 2.0, ``"1G"`` -> 0.93.

    Raises
    ------
    ValueError
        When ``text`` is not a positive size in Mi, Gi, M or G.
    """
    match = _MEMORY.fullmatch(str(text).strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"not a memory size like 2Gi or 512Mi: {text!r}")
    return float(match.group(1)) * _GIB_PER_UNIT[match.group(2)]
