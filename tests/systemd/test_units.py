"""The systemd units pass `systemd-analyze verify` silently and score 2.0 or lower on `security --offline`.

PID 1 is not systemd in CI containers, so the checks run offline: a fake
root holds a copy of the stock units (for sysinit.target and friends), our units under
/etc/systemd/system, and a stub /usr/bin/comet-agent (verify fails when ExecStart's binary is
missing). `verify` exits 0 on unknown keys and unparsable values, so its output is asserted empty.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNITS = ("comet-agent.service", "comet-agent@.service")
#: The local server's unit (no GPU, no watchdog: checked by verify and security only).
SERVER_UNIT = "comet-agent-server.service"
#: A Comet experiment key: what the template's instance name is.
INSTANCE = "comet-agent@0123456789abcdef0123456789abcdef.service"
MAX_EXPOSURE = 2.0

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")


def _stock_unit_dir() -> Path | None:
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "sysinit.target").exists():
            return candidate
    return None


@pytest.fixture
def fake_root(tmp_path) -> Path:
    stock = _stock_unit_dir()
    if stock is None:
        pytest.skip("no stock systemd units (sysinit.target) to verify against")
    root = tmp_path / "root"
    shutil.copytree(stock, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in (*UNITS, SERVER_UNIT):
        shutil.copy(UNIT_DIR / unit, root / "etc/systemd/system" / unit)
    stub = root / "usr/bin/comet-agent"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return root


def _analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("unit", ["comet-agent.service", INSTANCE, SERVER_UNIT])
def test_verify_prints_nothing(fake_root, unit):
    result = _analyze("verify", "--man=no", f"--root={fake_root}", unit)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def test_verify_output_catches_a_misspelt_directive(fake_root):
    # The check above is only worth something if a typo makes verify talk (it still exits 0).
    path = fake_root / "etc/systemd/system/comet-agent.service"
    path.write_text(path.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    result = _analyze("verify", "--man=no", f"--root={fake_root}", "comet-agent.service")
    assert "Unknown key 'ProtectSytem'" in result.stdout + result.stderr


@pytest.mark.parametrize("unit", ["comet-agent.service", INSTANCE, SERVER_UNIT])
def test_security_exposure_is_at_most_2(fake_root, unit):
    result = _analyze("security", "--offline=true", f"--root={fake_root}", unit)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def _directives(unit: str) -> list[tuple[str, str]]:
    pairs = []
    for line in (UNIT_DIR / unit).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


@pytest.mark.parametrize("unit", UNITS)
def test_the_promised_directives_are_there(unit):
    pairs = _directives(unit)
    values = {}
    for key, value in pairs:
        values.setdefault(key, []).append(value)
    assert values["Type"] == ["notify"] and values["WatchdogSec"] and values["NotifyAccess"] == ["main"]
    assert values["LoadCredential"] == ["api-key:/etc/comet-agent/api-key"]
    # The key never goes through the environment (visible over D-Bus and to children).
    assert not any("API_KEY" in value for value in values.get("Environment", []))
    assert values["RestartPreventExitStatus"] == ["78"] and values["Restart"] == ["on-failure"]
    assert values["StateDirectoryMode"] == ["0700"] and values["DynamicUser"] == ["yes"]
    assert values["CapabilityBoundingSet"] == [""] and values["NoNewPrivileges"] == ["yes"]
    assert "AF_NETLINK" in values["RestrictAddressFamilies"][0]
    assert "PrivateDevices" not in values  # it would hide /dev/nvidia*
    assert {"char-nvidiactl rw", "char-nvidia-frontend rw"} <= set(values["DeviceAllow"])
    assert int(values["CPUWeight"][0]) < 100 and values["MemoryMax"]
    assert values["StartLimitBurst"] and values["StartLimitIntervalSec"]
