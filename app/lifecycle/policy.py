"""Lifecycle settings as a value: retention and mass-event thresholds."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

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


_configured: list[LifecyclePolicy] = []


def configure(policy: LifecyclePolicy) -> None:
    """Set the process-wide policy (create_app or the CLI may call this once at start)."""
    _configured[:] = [policy]


@functools.cache
def _from_environment() -> LifecyclePolicy:
    return LifecyclePolicy.from_settings(load_settings())


def current_policy() -> LifecyclePolicy:
    """The configured policy, else the one read from the deployment's settings."""
    return _configured[0] if _configured else _from_environment()
