#!/usr/bin/env python3
"""Checks every policy file in policies/ against policies/policy.schema.json (CI runs
it; keyd's own parser checks the same files in keyd's tests). Needs `jsonschema`."""

import json
import pathlib
import sys
import tomllib

import jsonschema


def as_json(value):
    """TOML values as JSON sees them (date-times become RFC 3339 text)."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    return value


def main():
    here = pathlib.Path(__file__).resolve().parent
    schema = json.loads((here / "policy.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.FormatChecker()
    )
    files = sorted(here.glob("*.toml")) + sorted(here.glob("examples/*.toml"))
    bad = 0
    for f in files:
        doc = as_json(tomllib.loads(f.read_text()))
        for e in validator.iter_errors(doc):
            bad += 1
            where = "/".join(str(p) for p in e.absolute_path)
            print(f"{f.relative_to(here)}: {where}: {e.message}")
    # The schema must refuse what keyd refuses: a few wrong files.
    wrong = [
        {"format": 2},
        {"format": 1, "rule": [{"id": "x", "effect": "maybe", "principals": ["*"], "operations": ["sign"]}]},
        {"format": 1, "rule": [{"id": "x", "effect": "allow", "principals": ["root"], "operations": ["sign"]}]},
        {"format": 1, "rule": [{"id": "x", "effect": "allow", "principals": ["*"], "operations": ["sing"]}]},
        {"format": 1, "rule": [{"id": "default-deny", "effect": "deny", "principals": ["*"], "operations": ["*"]}]},
        {"format": 1, "rule": [{"id": "x", "effect": "allow", "principals": ["node:m/**/1'"], "operations": ["sign"]}]},
        {"format": 1, "rule": [{"id": "x", "effect": "allow", "principals": ["*"], "operations": ["sign"], "rate": "5/week"}]},
        {"format": 1, "admins": {"x": {"role": "node"}}},
    ]
    for doc in wrong:
        if validator.is_valid(doc):
            bad += 1
            print(f"the schema accepts a wrong policy: {json.dumps(doc)}")
    if bad:
        sys.exit(1)
    print(f"{len(files)} policy files match the schema; {len(wrong)} wrong ones do not")


if __name__ == "__main__":
    main()
