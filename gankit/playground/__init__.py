"""`gankit playground`: watch gankit's own engine play a GAN game live in the browser (2D and image modes).

Layout: ``settings`` (page values -> a validated gankit config, YAML export), ``session`` (the Trainer
stepped in a background thread), ``frames`` (what the page draws, packed compactly), ``server`` (the
starlette app and its token / Host / Origin checks) and ``static/`` (the page).
"""
from __future__ import annotations


def serve(*args, **kwargs) -> None:  # the web framework is imported only when the playground runs
    from gankit.playground.server import serve as _serve

    _serve(*args, **kwargs)
