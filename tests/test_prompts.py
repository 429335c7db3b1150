"""Every template in prompts/ renders with its sample variables (prompts/NAME.sample.yaml).

Templates are discovered, so a template another room adds is covered as soon as it lands;
a template without a sidecar must render with no variables at all.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
import yaml

from assistant import prompts

TEMPLATES = prompts.list_templates()


def _samples(name: str) -> dict:
    sidecar = prompts.PROMPTS_DIR / f"{name}.sample.yaml"
    if not sidecar.is_file():
        return {}
    data = yaml.safe_load(sidecar.read_text()) or {}
    assert isinstance(data, dict), f"{sidecar}: sample variables must be a YAML mapping"
    return data


def test_templates_are_discovered():
    assert "history_en" in TEMPLATES and "history_zh" in TEMPLATES


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_renders_with_its_samples(name):
    variables = _samples(name)
    try:
        text = prompts.render(name, **variables)
    except jinja2.UndefinedError as exc:
        pytest.fail(f"prompts/{name}.j2 needs a variable its samples lack ({exc}); "
                    f"add it to prompts/{name}.sample.yaml")
    assert text.strip(), f"prompts/{name}.j2 rendered empty text"
    assert "{{" not in text and "{%" not in text


def test_strict_undefined_and_missing_template(tmp_path: Path):
    (tmp_path / "greet.j2").write_text("Hello {{ name }}")
    assert prompts.render("greet", prompts_dir=tmp_path, name="Ada") == "Hello Ada"
    with pytest.raises(jinja2.UndefinedError):
        prompts.render("greet", prompts_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="greet"):
        prompts.render("nope", prompts_dir=tmp_path)
