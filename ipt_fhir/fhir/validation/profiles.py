from __future__ import annotations

from ..outcome import Issue


def register_profile(structure_definition: dict) -> None:
    raise NotImplementedError


def validate_profiles(resource: dict, profiles: list[str] | None = None) -> list[Issue]:
    return []
