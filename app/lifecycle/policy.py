"""Lifecycle settings as a value: retention and mass-event thresholds.

``create_app`` configures the policy of its own database (``configure(policy, engine)``), so
the settings it was given, overrides included, reach the deprovisioning path; several apps
in one process (tests) keep their own. Code without an app (the CLI, scripts) falls back to
the deployment's settings.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.settings import load_settings


@dataclass(frozen=True)
class LifecyclePolicy:
    """The [lifecycle] settings the deprovisioning path needs."""

    retention_days: int = 30
    mass_window_seconds: int = 600
    mass_share_percent: int = 10
    mass_count: int = 50
    mass_min_count: int = 5

    @classmethod
    def from_settings(cls, settings: dict[str, dict[str, Any]]) -> LifecyclePolicy:
        """Build from validated settings (section [lifecycle])."""
        section = settings["lifecycle"]
        return cls(**{name: section[name] for name in cls.__dataclass_fields__})

    def with_overrides(self, organization_policy: dict[str, Any]) -> LifecyclePolicy:
        """Apply an organization's own thresholds (policy["lifecycle"]) over the deployment's."""
        own = organization_policy.get("lifecycle") or {}
        known = {k: int(v) for k, v in own.items()
                 if k in self.__dataclass_fields__ and isinstance(v, int)}
        return LifecyclePolicy(**{**self.__dict__, **known})


# Per database engine: an app's sessions see the policy of the settings that built the app.
_by_engine: weakref.WeakKeyDictionary[Engine, LifecyclePolicy] = weakref.WeakKeyDictionary()
_process_default: list[LifecyclePolicy] = []


def configure(policy: LifecyclePolicy, engine: Engine | None = None) -> None:
    """Set the policy of sessions bound to ``engine`` (or the process default without one)."""
    if engine is None:
        _process_default[:] = [policy]
    else:
        _by_engine[engine] = policy


@functools.cache
def _from_environment() -> LifecyclePolicy:
    return LifecyclePolicy.from_settings(load_settings())


def current_policy(session: Session | None = None) -> LifecyclePolicy:
    """The policy configured for the session's engine, else the process default, else the
    deployment's settings (config file and environment)."""
    if session is not None and _by_engine:
        bind = session.get_bind()
        found = _by_engine.get(bind if isinstance(bind, Engine) else bind.engine)
        if found is not None:
            return found
    return _process_default[0] if _process_default else _from_environment()
