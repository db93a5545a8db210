"""Specs: YAML with locations, ``extends``, ``--set`` overrides, validation and JSON Schema.

``load_spec(path, overrides, registry)`` returns a :class:`LoadedSpec` or raises
:class:`SpecError`, whose every line reads
``file:line:col: key.path: message (did you mean ...?)``.

The spec model is built after the plugins load (:func:`build_spec_model`): each part
slot is a union of the registered parameter models of its kind, discriminated on
``type``.
"""
from __future__ import annotations

from typing import Any

from ..registry import Registry
from .errors import EXIT_INVALID, EXIT_UNKNOWN, SpecError, SpecIssue
from .loading import DEFAULT_SPEC, LoadedSpec, apply_override, load_spec, load_spec_text
from .models import RunConfig, TrainConfig, build_spec_model, slot_kind
from .yaml_loader import SpecDumper, SpecLoader, dump_yaml, parse_document, parse_yaml

__all__ = ["LoadedSpec", "SpecError", "SpecIssue", "load_spec", "load_spec_text", "json_schema", "dump_yaml",
           "DEFAULT_SPEC", "build_spec_model", "TrainConfig", "RunConfig", "EXIT_INVALID", "EXIT_UNKNOWN",
           "SpecLoader", "SpecDumper", "parse_yaml", "parse_document", "apply_override", "slot_kind"]


def json_schema(registry: Registry) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a whole spec with every registered part, for editor completion."""
    schema = build_spec_model(registry).model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "stylegan-core spec"
    props = schema.setdefault("properties", {})
    props.setdefault("extends", {"type": "string", "description": "a preset name (stylegan-plugins --presets) or "
                                                                   "another spec file (relative to this one) that "
                                                                   "this one is merged onto"})
    return schema
