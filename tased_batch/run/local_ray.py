"""The private Ray cluster the tool starts for a run without ``--address``: its authentication setting.

Ray 2.52 added token authentication (``RAY_AUTH_MODE``); newer releases turn it on for every new
local ``ray.init()`` and print a notice asking users to opt out. A cluster started here lives for one
run, on this machine, but its ports can be reached by other users and hosts, so the right setting is
Ray's secure one, chosen explicitly: ``token``, with the token Ray generates and keeps in
``~/.ray/auth_token``. Chosen explicitly, Ray prints no notice. A user's own ``RAY_AUTH_MODE`` always
wins, and nothing is set when ``RAY_ADDRESS`` makes ``ray.init()`` join an existing cluster instead.
Ray releases before 2.52 ignore the variable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

AUTH_MODE_ENV = "RAY_AUTH_MODE"
LOCAL_AUTH_MODE = "token"


def local_cluster_env(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set ``RAY_AUTH_MODE`` for a local cluster this process is about to start; return the mode in effect.

    Call it just before ``ray.init()`` starts a new local cluster (its processes inherit this environment).
    """
    env = os.environ if environ is None else environ
    if AUTH_MODE_ENV in env or env.get("RAY_ADDRESS"):
        return env.get(AUTH_MODE_ENV)
    env[AUTH_MODE_ENV] = LOCAL_AUTH_MODE
    if environ is None and "ray" in sys.modules and not _reload_ray_config():
        del env[AUTH_MODE_ENV]  # leave Ray to its own default rather than a driver and cluster that disagree
        return None
    return LOCAL_AUTH_MODE


def _reload_ray_config() -> bool:
    """Make an already imported Ray re-read its settings, as Ray does itself when it turns token mode on.

    Ray reads ``RAY_AUTH_MODE`` when it is imported; without this the driver would keep the old mode
    while the cluster it starts uses the new one, and every call would be refused.
    """
    try:
        from ray._raylet import Config  # type: ignore[attr-defined]  # compiled; not in its stubs
    except ImportError:
        return True  # a Ray without authentication settings: the variable is inert
    try:
        Config.initialize("")
    except Exception:
        return False
    return True
