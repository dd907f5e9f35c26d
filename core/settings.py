"""Workspace settings: the choices that cross pages (generator, its model and options, the CLIP filter and its
thresholds, k, λ, images per mode, seed, attribute), one typed record per dataset, kept as JSON in the cache.

The Generate page writes them and the Results page reads them, so an experiment retrains with exactly the
generated set the user made; pages never read each other's widgets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from core import store
from core.config import DEFAULT_ATTRIBUTE, DebugConfig, FilterConfig, GeneratorConfig, from_dict
from core.errors import InvalidInputError

SETTINGS_SCHEMA = 1
EDITABLE_DEBUG = ("k_modes", "images_per_mode", "lam", "seed")  # the rest (prompt templates) stay the paper's


@dataclass(frozen=True)
class WorkspaceSettings:
    attribute: str = DEFAULT_ATTRIBUTE
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    clip_filter: FilterConfig | None = None  # None: generated images are used unfiltered

    def generation_args(self) -> dict[str, Any]:
        """JSON arguments of the generate step these settings ask for (λ plays no part in generating)."""
        return {
            "attribute": self.attribute,
            "generator": asdict(self.generator),
            "debug": {k: getattr(self.debug, k) for k in EDITABLE_DEBUG if k != "lam"},
            **({"clip_filter": asdict(self.clip_filter)} if self.clip_filter is not None else {}),
        }

    def experiment_args(self) -> dict[str, Any]:
        """JSON arguments of an experiment step that retrains with the set :meth:`generation_args` makes."""
        return dict(self.generation_args(), debug={k: getattr(self.debug, k) for k in EDITABLE_DEBUG})

    def to_json(self) -> dict[str, Any]:
        return {"schema": SETTINGS_SCHEMA, **self.experiment_args()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkspaceSettings:
        """Settings from :meth:`to_json`'s output; raises InvalidInputError on a value no step accepts."""
        if not isinstance(data, dict):
            raise InvalidInputError("Workspace settings are a JSON object.")
        unknown = sorted(set(data) - {f.name for f in fields(cls)} - {"schema"})
        if unknown:
            raise InvalidInputError(f"Unknown workspace settings {unknown}.")
        debug = data.get("debug") or {}
        if set(debug) - set(EDITABLE_DEBUG):
            raise InvalidInputError(f"Workspace settings keep only {', '.join(EDITABLE_DEBUG)} of the debug config.")
        out = cls(
            attribute=str(data.get("attribute") or DEFAULT_ATTRIBUTE),
            generator=from_dict(GeneratorConfig, data.get("generator")),
            debug=from_dict(DebugConfig, debug),
            clip_filter=None if data.get("clip_filter") is None else from_dict(FilterConfig, data["clip_filter"]),
        )
        out.check()
        return out

    def check(self) -> None:
        from core.fix.generators.clip_filter import check_filter
        from core.fix.mitigate import check_config

        check_config(self.debug)
        if self.clip_filter is not None:
            check_filter(self.clip_filter)
        if not isinstance(self.generator.options, dict):
            raise InvalidInputError("Generator options are a JSON object of constructor arguments.")

    def with_debug(self, **changes: Any) -> WorkspaceSettings:
        return replace(self, debug=replace(self.debug, **changes))


def settings_path(spec: dict) -> Path:
    """Where the settings of the dataset ``spec`` names live (one file per dataset spec)."""
    return store.cache_root() / "workspace" / f"{store.make_key('settings', spec)}.json"


def load_settings(spec: dict) -> WorkspaceSettings:
    """The saved settings for this dataset; the defaults when none are saved or the file no longer validates."""
    data = store.load_json(settings_path(spec))
    if data is None:
        return WorkspaceSettings()
    try:
        return WorkspaceSettings.from_json(data)
    except (InvalidInputError, TypeError):
        return WorkspaceSettings()


def save_settings(spec: dict, settings: WorkspaceSettings) -> WorkspaceSettings:
    """Validate and persist; returns what was saved. Writing the same settings again changes nothing."""
    settings.check()
    path = settings_path(spec)
    if store.load_json(path) != settings.to_json():
        store.save_json(path, settings.to_json())
    return settings
