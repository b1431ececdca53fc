"""Ray's, RLlib's and Tune's notices that are theirs to act on, not a DRIVE user's.

`rllib` hides them by itself; a Python script calls `hide_ray_notices()` after
``ray.init`` (which resets these loggers' levels) and passes ``log_to_driver=False``
to ``ray.init`` to keep the workers' copies of them off its terminal::

    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    hide_ray_notices()
"""

from __future__ import annotations

import logging

#: Loggers whose warnings are RLlib's business, not the user's (deprecations inside RLlib).
NOTICE_LOGGERS = (
    "ray.rllib",
    "ray.tune",
    "ray._common.deprecation",
    "ray._private.authentication",  # the token-auth notice of every new local cluster
)


def hide_ray_notices() -> None:
    """Hides RLlib's and Tune's notices in this process (new API stack, deprecations,
    gputil); their errors still show. Importing or initialising ray resets these
    loggers' levels, so this imports it first; call it again after ``ray.init``."""
    import ray.rllib  # noqa: F401

    for name in NOTICE_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
