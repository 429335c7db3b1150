"""Loads the prompt templates in `prompts/*.j2` (Jinja2, StrictUndefined).

Prompts never live as multi-line strings in Python files: they are templates a reviewer can
read and diff. StrictUndefined makes a missing variable an error instead of an empty string,
so a renamed field cannot silently blank out part of a prompt.

Every template `prompts/NAME.j2` has sample variables in `prompts/NAME.sample.yaml` (a YAML
mapping); `tests/test_prompts.py` renders each template with them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


@lru_cache(maxsize=4)
def environment(prompts_dir: str | None = None) -> jinja2.Environment:
    """The shared Jinja environment over a prompts folder (default: the repository's `prompts/`)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(prompts_dir or str(PROMPTS_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # prompts are plain text, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def list_templates(prompts_dir: Path | None = None) -> list[str]:
    """Names (without `.j2`) of every template in the prompts folder, sorted."""
    folder = Path(prompts_dir or PROMPTS_DIR)
    return sorted(p.stem for p in folder.glob("*.j2"))


def render(name: str, /, prompts_dir: Path | None = None, **variables) -> str:
    """Render `prompts/<name>.j2` with the given variables.

    Args:
        name: Template name without the `.j2` suffix (e.g. "history_en"); positional only, so a
            template may itself have a variable called `name`.
        prompts_dir: Another prompts folder (tests).
        **variables: The template's variables; a missing one raises `jinja2.UndefinedError`.

    Raises:
        FileNotFoundError: naming the folder and the templates that exist.
    """
    env = environment(str(prompts_dir) if prompts_dir else None)
    try:
        template = env.get_template(f"{name}.j2")
    except jinja2.TemplateNotFound:
        folder = Path(prompts_dir or PROMPTS_DIR)
        raise FileNotFoundError(
            f"no prompt template {folder / (name + '.j2')}; templates there: {', '.join(list_templates(folder))}"
        ) from None
    return template.render(**variables).strip()
