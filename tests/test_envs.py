"""The per-rule conda environments pin the same versions as pyproject.toml."""

import re
import tomllib

import yaml

from conftest import REPO


def pins_of(requirements):
    pins = {}
    for line in requirements:
        name, _, version = line.partition("==")
        assert version, f"not an exact pin: {line!r}"
        pins[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return pins


def test_env_pins_match_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pyproject = pins_of(project["dependencies"])
    assert pyproject["torch"] == "2.14.1" and pyproject["torchvision"] == "0.29.1"
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
        for name, version in pins_of(pip).items():
            assert pyproject.get(name) == version, f"{env.name}: {name}=={version} vs pyproject"


def test_every_env_holds_what_every_stage_reads_its_settings_with():
    """Every stage checks its --settings against the config schema (YAML, JSON schema)."""
    for env in sorted((REPO / "envs").glob("*.yaml")):
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
        assert {"pyyaml", "jsonschema"} <= set(pins_of(pip)), env.name


def test_every_rule_names_an_existing_env_and_a_log():
    for rule_file in (REPO / "workflow" / "rules").glob("*.smk"):
        text = rule_file.read_text()
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', text):
            assert (rule_file.parent / env).resolve().exists(), (rule_file.name, env)
        # Named rules and the rules defined once per seed block (`rule:` with `name:`).
        rules = re.findall(r"^\s*rule(?:\s+\w+)?:\s*$", text, re.M)
        assert len(rules) == text.count("log:") == text.count("conda:") or \
            rule_file.name == "common.smk", rule_file.name
        assert rules or rule_file.name == "common.smk", rule_file.name


def test_the_package_ships_its_config_schema(tmp_path):
    """A stage installed without the repository (pip install ., no -e) reads its settings'
    defaults from the schema, so the wheel holds it; the workflow's copy is a link to it."""
    import subprocess
    import sys
    import zipfile

    link = REPO / "workflow" / "schemas" / "config.schema.yaml"
    assert link.is_symlink() and link.resolve() == (
        REPO / "src" / "nnboundary" / "settings" / "config.schema.yaml").resolve()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("nnboundary-*.whl"))
    assert "nnboundary/settings/config.schema.yaml" in zipfile.ZipFile(wheel).namelist()
