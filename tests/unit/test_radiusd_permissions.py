"""``trustport radius render``'s check that radiusd, once it dropped root, can read and write what it needs."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest

from trustport.freeradius.render import READ, SEARCH, WRITE, Need, RunAs, access_problems, allowed

FREERAD = RunAs("freerad", "freerad", uid=5000, gid=5000, groups=frozenset({5000, 5001}))  # 5001: e.g. ssl-cert
ROOT = RunAs("root", "root", uid=0, gid=0, groups=frozenset({0}))


@pytest.mark.parametrize(("mode", "owner", "group", "want", "expected"), [
    (0o600, 0, 0, READ, False),            # the defect: server key 0600 root:root
    (0o640, 0, 5000, READ, True),          # root:freerad 0640
    (0o640, 0, 5001, READ, True),          # a supplementary group counts (radiusd calls initgroups)
    (0o600, 5000, 0, READ, True),          # owned by freerad
    (0o604, 5000, 0, READ, True),
    (0o060, 5000, 5000, READ, False),      # the owner's bits apply to the owner, even when the group's grant more
    (0o006, 0, 5000, READ, False),         # ... and the group's to a member, even when others' grant more
    (0o644, 0, 0, READ, True),             # others may read
    (0o644, 0, 0, READ | WRITE, False),    # the registry must be writable too
    (0o660, 0, 5000, READ | WRITE, True),
    (0o755, 0, 0, WRITE | SEARCH, False),  # the registry's directory (SQLite's -wal/-shm are created there)
    (0o770, 0, 5000, WRITE | SEARCH, True),
    (0o750, 0, 0, SEARCH, False),          # a parent directory freerad cannot enter
    (0o751, 0, 0, SEARCH, True),
    (0o740, 0, 5000, SEARCH, False),       # r without x: listable, not enterable
])
def test_allowed(mode: int, owner: int, group: int, want: int, expected: bool) -> None:
    assert allowed(mode, owner, group, FREERAD, want) is expected


def test_root_may_do_anything() -> None:
    assert allowed(0o000, 1234, 1234, ROOT, READ | WRITE | SEARCH)


def _tree(tmp_path: Path) -> Path:
    base = tmp_path / "etc-trustport"
    base.mkdir()
    os.chmod(tmp_path, 0o755)
    return base


def _file(path: Path, mode: int, uid: int = 0, gid: int = 0) -> Path:
    path.write_text("x")
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to other users needs root")


def _reachable(tmp_path: Path) -> None:
    """pytest's tmp_path lives under /tmp/pytest-of-root (0700): let others through, as /etc is."""
    for directory in (tmp_path, *tmp_path.parents):
        if directory == Path("/"):
            break
        os.chmod(directory, os.stat(directory).st_mode | 0o001)


@needs_root
def test_reports_every_problem_with_the_command_that_fixes_it(tmp_path: Path) -> None:
    _reachable(tmp_path)
    base = _tree(tmp_path)
    key = _file(base / "server.key", 0o600)
    cert = _file(base / "server.pem", 0o644)
    settings = _file(base / "hook.json", 0o600)
    registry_dir = base / "db"
    registry_dir.mkdir(mode=0o755)
    registry = _file(registry_dir / "registry.sqlite", 0o644)
    private = base / "private"
    private.mkdir(mode=0o700)
    anchor = _file(private / "anchor.pem", 0o644)
    crl_dir = base / "crl"
    crl_dir.mkdir(mode=0o700, exist_ok=True)
    needs = [Need("server certificate", cert, READ), Need("server key", key, READ),
             Need("trust anchor a", anchor, READ), Need("hook settings", settings, READ, hand_over=True),
             Need("CRL directory", crl_dir, READ, directory=True),
             Need("registry directory", registry_dir, WRITE, directory=True, hand_over=True),
             Need("registry", registry, READ | WRITE, hand_over=True),
             Need("registry", base / "missing.sqlite", READ | WRITE, missing="run trustport db init")]
    problems = access_problems(needs, FREERAD)
    assert problems == [
        f"server key {key} is not readable by user freerad (mode 0600 root:root): "
        f"chown root:freerad {key} && chmod 0640 {key}",
        f"hook settings {settings} is not readable by user freerad (mode 0600 root:root): "
        f"chown freerad:freerad {settings} && chmod 0600 {settings}",
        f"CRL directory {crl_dir} is not readable by user freerad (mode 0700 root:root): "
        f"chown root:freerad {crl_dir} && chmod 0750 {crl_dir}",
        f"registry directory {registry_dir} is not writable by user freerad (mode 0755 root:root): "
        f"chown freerad:freerad {registry_dir} && chmod 0755 {registry_dir}",
        f"registry {registry} is not readable and writable by user freerad (mode 0644 root:root): "
        f"chown freerad:freerad {registry} && chmod 0644 {registry}",
        f"registry {base / 'missing.sqlite'} does not exist: run trustport db init",
        f"directory {private} is not searchable by user freerad (mode 0700 root:root), so it cannot reach "
        f"trust anchor a {anchor}: chown root:freerad {private} && chmod 0710 {private}",
    ]


@needs_root
def test_following_the_advice_clears_the_problems(tmp_path: Path) -> None:
    _reachable(tmp_path)
    base = _tree(tmp_path)
    private = base / "private"
    private.mkdir(mode=0o700)
    needs = [Need("server key", _file(private / "server.key", 0o600), READ),
             Need("registry", _file(base / "registry.sqlite", 0o600), READ | WRITE, hand_over=True)]
    who = RunAs("nobody", "nogroup", uid=65534, gid=65534, groups=frozenset({65534}))
    problems = access_problems(needs, who)
    assert len(problems) == 3  # the key, the registry and the directory in front of the key
    for problem in problems:
        subprocess.run(problem.rsplit(": ", 1)[1], shell=True, check=True)
    assert access_problems(needs, who) == []


@needs_root
def test_symlinks_are_checked_where_they_point(tmp_path: Path) -> None:
    _reachable(tmp_path)
    base = _tree(tmp_path)
    hidden = base / "hidden"
    hidden.mkdir(mode=0o700)
    target = _file(hidden / "server.key", 0o644)
    link = base / "server.key"
    link.symlink_to(target)
    [problem] = access_problems([Need("server key", link, READ)], FREERAD)
    assert problem.startswith(f"directory {hidden} is not searchable")


def _real_user() -> str:
    for name in ("freerad", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    subprocess.run(["useradd", "--system", "--no-create-home", "trustport-test"], check=True)
    return "trustport-test"


@needs_root
def test_against_a_real_user_agrees_with_the_kernel(tmp_path: Path) -> None:
    """The checker's verdict must be what the kernel says when that user really opens the file."""
    _reachable(tmp_path)
    name = _real_user()
    who = RunAs.of(name)
    assert who.uid == pwd.getpwnam(name).pw_uid and who.gid in who.groups
    base = _tree(tmp_path)
    cases = [_file(base / f"f{mode:o}-{gid}", mode, 0, gid)
             for mode in (0o600, 0o640, 0o644, 0o604) for gid in (0, who.gid)]
    for path in cases:
        verdict = not access_problems([Need("file", path, READ)], who)
        kernel = subprocess.run(["runuser", "-u", name, "--", "head", "-c1", str(path)],
                                capture_output=True, check=False).returncode == 0
        assert verdict is kernel, path
