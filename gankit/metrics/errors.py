"""The evaluation error: an evaluation that cannot run; the message says what to change."""
from __future__ import annotations


class EvalError(RuntimeError):
    """Unknown metric or extractor, missing weights, samples that do not fit the reference, ..."""
