"""The systemd units in deploy/ are valid and hardened, checked by systemd's own tools.

`systemd-analyze verify` parses a unit as systemd would and checks its command
exists; it exits 0 on a misspelt key or a bad value but prints a warning, so any
output at all fails the test. `systemd-analyze security --offline=yes` scores
the sandboxing (0 = locked down, 10 = none). Neither needs a running systemd.
The units name the program at /opt/newsletter/venv; the test points them at this
checkout's, in a temp copy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
COMMANDS = {
    "newsletter-serve.service": "serve --host 127.0.0.1 --port 8000",  # behind deploy/nginx.conf
    "newsletter-run.service": "run",
}
UNITS = sorted(COMMANDS)
INSTALLED = "/opt/newsletter/venv/bin/newsletter"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (Debian: the systemd package)"
)


def unit_text(name: str) -> str:
    return (DEPLOY / name).read_text(encoding="utf-8")


def local_copy(name: str, tmp_path: Path) -> Path:
    """The unit with its program pointed at this checkout's `newsletter`."""
    here = Path(sys.executable).with_name("newsletter")
    assert here.exists(), f"{here} is missing: install the checkout (pip install -e .)"
    text = unit_text(name)
    assert INSTALLED in text
    target = tmp_path / name
    target.write_text(text.replace(INSTALLED, str(here)), encoding="utf-8")
    return target


def settings_of(name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit_text(name).splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("name", UNITS)
def test_each_unit_runs_its_command_sandboxed(name):
    unit = settings_of(name)
    assert unit["ExecStart"] == [f"{INSTALLED} {COMMANDS[name]}"]
    assert unit["DynamicUser"] == ["yes"] and unit["User"] == ["newsletter"]
    assert unit["StateDirectory"] == ["newsletter"]
    assert unit["WorkingDirectory"] == ["/var/lib/newsletter"]
    assert unit["EnvironmentFile"] == ["/etc/newsletter/newsletter.env"]
    assert unit["Restart"] == ["on-failure"]
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
    }.items():
        assert unit[key] == [value], key


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False)


@needs_analyze
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_finds_nothing_to_say(name, tmp_path):
    result = analyze("verify", "--man=no", str(local_copy(name, tmp_path)))
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


@needs_analyze
def test_a_misspelt_key_is_what_verify_warns_about(tmp_path):
    """The check above can fail: systemd-analyze names a unit's mistakes (and still exits 0)."""
    unit = local_copy("newsletter-serve.service", tmp_path)
    unit.write_text(unit.read_text().replace("ProtectSystem=", "ProtectSytem="))
    result = analyze("verify", "--man=no", str(unit))
    assert "Unknown key 'ProtectSytem'" in result.stderr


@needs_analyze
@pytest.mark.parametrize("name", UNITS)
def test_systemd_rates_the_sandbox_ok(name, tmp_path):
    result = analyze("security", "--offline=yes", str(local_copy(name, tmp_path)))
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert found, result.stdout + result.stderr
    exposure, verdict = float(found.group(1)), found.group(2)
    # 1.3-1.4 today; 10 is an unsandboxed service, and below 2 systemd says OK.
    assert exposure < 2.0 and verdict == "OK", result.stdout
