"""OS packages from recorded dpkg / rpm / apk / pacman data."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from comet_agent.collectors.os_packages import (
    OsPackagesCollector,
    parse_apk_installed,
    parse_dpkg_status,
    parse_pacman_desc,
    parse_pacman_local,
    parse_rpm_qa,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def collector(tmp_path, **overrides) -> OsPackagesCollector:
    """A collector that sees none of the host's databases unless a test points it at a fixture."""
    settings = dict(
        dpkg_status_path=str(tmp_path / "none" / "status"),
        rpm_argv=None,
        apk_installed_path=str(tmp_path / "none" / "installed"),
        pacman_local_dir=str(tmp_path / "none" / "local"),
        rpm_database_dirs=(str(tmp_path / "none" / "rpm"),),
    )
    settings.update(overrides)
    return OsPackagesCollector(**settings)


def test_parse_dpkg_status_keeps_installed_packages_only_sorted_and_unique():
    packages = parse_dpkg_status((FIXTURES / "dpkg" / "status").read_text())
    assert packages == [
        "adduser=3.134",
        "bsdutils=1:2.38.1-5+deb12u3",
        "libc6=2.36-9+deb12u14",  # amd64 and i386 (Multi-Arch: same) listed once
        "python3.11=3.11.2-6+deb12u6",
        "tzdata=2025b-0+deb12u2",
    ]
    # nano (deinstall ok config-files) and vim-tiny (half-configured) are not installed


def test_parse_dpkg_status_handles_missing_trailing_newline_and_continuations():
    text = "Package: a\nStatus: install ok installed\nDescription: x\n Version: 9\nVersion: 1.0"
    assert parse_dpkg_status(text) == ["a=1.0"]


def test_parse_rpm_qa_formats_epoch_and_release_and_drops_gpg_keys():
    packages = parse_rpm_qa((FIXTURES / "rpm" / "rpm-qa.rocky-9.txt").read_text())
    assert packages == [
        "bash=5.1.8-6.el9_1",
        "filesystem=3.16-2.el9",
        "glibc=2.34-83.el9_3.7",
        "kernel-core=5.14.0-362.18.1.el9_3",
        "kernel-core=5.14.0-362.24.1.el9_3",
        "openssl-libs=1:3.0.7-25.el9_3",
        "python3=3.9.18-1.el9_3",
        "tzdata=2024a-1.el9",
    ]


def test_parse_apk_installed():
    assert parse_apk_installed((FIXTURES / "apk" / "installed").read_text()) == [
        "busybox=1.36.1-r15",
        "musl=1.2.4_git20230717-r4",
        "python3=3.11.8-r0",
    ]


def test_parse_pacman_local_reads_each_desc_and_skips_other_entries():
    assert parse_pacman_local(str(FIXTURES / "pacman" / "local")) == [
        "glibc=2.39-1",
        "python=3.11.8-1",
        "zstd=1.5.5-1",
    ]


def test_parse_pacman_desc_without_version_is_none():
    assert parse_pacman_desc("%NAME%\nfoo\n\n%DESC%\nbar\n") is None


def test_collector_reads_dpkg_first(tmp_path):
    snapshot = collector(
        tmp_path,
        dpkg_status_path=str(FIXTURES / "dpkg" / "status"),
        apk_installed_path=str(FIXTURES / "apk" / "installed"),
    ).collect()
    assert snapshot.manager == "dpkg"
    assert snapshot.packages[0] == "adduser=3.134"
    assert snapshot.reason is None


def test_collector_reads_apk_and_pacman(tmp_path):
    apk = collector(tmp_path, apk_installed_path=str(FIXTURES / "apk" / "installed")).collect()
    assert (apk.manager, len(apk.packages)) == ("apk", 3)
    pacman = collector(tmp_path, pacman_local_dir=str(FIXTURES / "pacman" / "local")).collect()
    assert (pacman.manager, pacman.packages[0]) == ("pacman", "glibc=2.39-1")


def _fake_rpm(tmp_path, body: str) -> str:
    """A stand-in ``rpm`` program replaying recorded ``rpm -qa --qf`` output (an edge substitution)."""
    program = tmp_path / "bin" / "rpm"
    program.parent.mkdir(parents=True, exist_ok=True)
    program.write_text(f"#!{sys.executable}\n{body}\n")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    return str(program)


def test_collector_runs_rpm_when_its_database_exists(tmp_path):
    recorded = FIXTURES / "rpm" / "rpm-qa.rocky-9.txt"
    rpm = _fake_rpm(tmp_path, f"import sys; sys.stdout.write(open({str(recorded)!r}).read())")
    (tmp_path / "rpmdb").mkdir()
    snapshot = collector(tmp_path, rpm_argv=(rpm, "-qa"), rpm_database_dirs=(str(tmp_path / "rpmdb"),)).collect()
    assert snapshot.manager == "rpm"
    assert "openssl-libs=1:3.0.7-25.el9_3" in snapshot.packages


def test_collector_skips_rpm_without_a_database(tmp_path):
    rpm = _fake_rpm(tmp_path, "print('bash\\t(none)\\t5\\t1')")
    snapshot = collector(tmp_path, rpm_argv=(rpm,)).collect()
    assert snapshot.manager is None


def test_collector_reports_a_failing_rpm_with_its_message(tmp_path):
    rpm = _fake_rpm(tmp_path, "import sys; sys.stderr.write('error: rpmdb open failed\\n'); sys.exit(1)")
    (tmp_path / "rpmdb").mkdir()
    snapshot = collector(tmp_path, rpm_argv=(rpm,), rpm_database_dirs=(str(tmp_path / "rpmdb"),)).collect()
    assert snapshot.manager == "rpm"
    assert snapshot.packages == ()
    assert snapshot.reason == "rpm query failed: error: rpmdb open failed"


def test_no_database_gives_empty_list_with_reason(tmp_path):
    snapshot = collector(tmp_path).collect()
    assert snapshot.manager is None
    assert snapshot.packages == ()
    assert snapshot.reason == "no dpkg, rpm, apk or pacman package database found"


def test_unreadable_database_gives_empty_list_with_reason(tmp_path):
    status = tmp_path / "status"
    status.mkdir()  # a directory where the file should be: reading it fails for any user
    snapshot = collector(tmp_path, dpkg_status_path=str(status)).collect()
    assert snapshot.manager is None  # a directory is not a status file: treated as absent
    empty = tmp_path / "empty-status"
    empty.write_text("")
    snapshot = collector(tmp_path, dpkg_status_path=str(empty)).collect()
    assert (snapshot.manager, snapshot.packages) == ("dpkg", ())
    assert snapshot.reason == "the dpkg database lists no installed packages"


def test_long_lists_are_cut_and_the_cut_is_stated(tmp_path):
    snapshot = collector(tmp_path, dpkg_status_path=str(FIXTURES / "dpkg" / "status"), max_packages=2).collect()
    assert snapshot.packages == ("adduser=3.134", "bsdutils=1:2.38.1-5+deb12u3")
    assert snapshot.truncated_count == 3
    assert snapshot.reason == "list cut to 2 of 5 packages"


def test_invalid_max_packages_is_rejected():
    with pytest.raises(ValueError, match="max_packages"):
        OsPackagesCollector(max_packages=0)
