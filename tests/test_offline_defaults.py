"""The offline rules of tools/paths.py hold in a fresh process: hub, analytics and kernel downloads off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fresh(code: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}  # none of the variables set by the Makefile
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_importing_tools_turns_the_hub_and_analytics_off():
    done = _fresh("import os, tools.paths; print([os.environ[k] for k in "
                  "('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'GRADIO_ANALYTICS_ENABLED', 'ANONYMIZED_TELEMETRY')])")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['1', '1', 'False', 'False']"


def test_bitsandbytes_does_not_ask_for_a_kernel_download():
    """On avx512_bf16 CPUs bitsandbytes warns at import that `pip install kernels` would fetch its 4-bit
    kernel from the Hub (cases build printed it). Elsewhere it never tries, so there is nothing to see."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "avx512_bf16" not in flags:
        pytest.skip("bitsandbytes only looks for the kernel on CPUs with avx512_bf16")
    bare = _fresh("import bitsandbytes")
    assert "kernels-community" in bare.stderr  # what a user saw: the warning this test guards against
    ours = _fresh("import tools.paths, bitsandbytes")
    assert ours.returncode == 0 and "kernels-community" not in ours.stderr, ours.stderr
