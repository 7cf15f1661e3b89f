"""Sandbox: hostile programs end within their bounds, cannot reach outside, and leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evilmoe.env import sandbox
from evilmoe.env.commands import CHECK_PROBLEMS
from evilmoe.env.grader import grade
from evilmoe.env.sandbox import Limits, run_python

ISO = sandbox.isolation()
SHARED_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
MODES_BEFORE = {d: os.stat(d).st_mode for d in SHARED_DIRS if os.path.isdir(d)}
LIMITS = Limits(cpu_seconds=1, wall_seconds=15)
BOUND = 25.0  # seconds: the wall backstop plus cleanup, generous for a loaded 2-core machine


def _pids_of(uid: int) -> list[int]:
    return sandbox._pids_of_uid(uid)


def _run(program: str, **kw) -> sandbox.RunResult:
    t0 = time.monotonic()
    r = run_python(program, limits=kw.pop("limits", LIMITS), **kw)
    elapsed = time.monotonic() - t0
    assert elapsed < BOUND, f"took {elapsed:.1f} s"
    # nothing left behind: no live process of its uid, no temp dir, no cgroup
    assert not os.path.exists(r.workdir)
    for group in r.cgroups:
        assert not os.path.exists(group)
    if r.uid is not None:
        assert _pids_of(r.uid) == []
    return r


def test_plain_run_and_isolation_description():
    r = _run("import os, sys\nprint(sys.stdin.read(), os.getcwd() == os.environ['HOME'])", stdin=b"payload")
    assert r.returncode == 0 and r.stdout == b"payload True\n"
    desc = sandbox.describe_isolation()
    assert "rlimits" in desc and "scrubbed env" in desc
    if os.geteuid() == 0:
        assert ISO.drop_uid and "unprivileged uid" in desc
        assert r.uid is not None and r.uid != 0


def test_stdin_is_closed_for_programs_that_do_not_read_it():
    r = _run("import sys\nprint(repr(sys.stdin.read()))")
    assert r.stdout == b"''\n"


def test_infinite_loop_hits_the_cpu_limit():
    r = _run("while True:\n    pass")
    assert r.cpu_limited and not r.timed_out and r.returncode < 0


def test_sleeper_hits_the_wall_backstop():
    r = _run("import time\ntime.sleep(60)", limits=Limits(cpu_seconds=1, wall_seconds=2))
    assert r.timed_out and r.wall_seconds < 10


def test_fork_bomb_is_contained():
    r = _run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    assert r.returncode != 0 and (r.cpu_limited or r.timed_out)


def test_escaped_grandchild_is_killed():
    # A daemonised grandchild in its own session, holding no pipes, must still die with the run.
    r = _run(
        "import os, sys, time\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        os.close(1); os.close(2)\n        time.sleep(300)\n    os._exit(0)\n"
        "time.sleep(0.3)\nprint('parent done')"
    )
    assert r.stdout == b"parent done\n"


def test_memory_hog_fails_fast():
    r = _run("x = bytearray(64 * 1024**3)")
    assert r.returncode == 1 and b"MemoryError" in r.stderr
    r = _run("x = []\nwhile True:\n    x.append(bytearray(10**7))")
    assert r.returncode != 0


def test_gigabytes_of_output_are_capped():
    r = _run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", limits=Limits(cpu_seconds=5, output_bytes=1 << 20))
    assert r.output_overflow and len(r.stdout) <= 1 << 20
    r = _run("import os\nwhile True:\n    os.write(2, b'y' * 65536)", limits=Limits(cpu_seconds=5, output_bytes=1 << 20))
    assert r.output_overflow and len(r.stderr) <= 1 << 20


def test_cannot_delete_or_write_outside_its_cwd(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    leak = Path("/tmp") / f"evilmoe-leak-{os.getpid()}.txt"
    r = _run(
        "import os, shutil\n"
        f"shutil.rmtree({str(victim)!r}, ignore_errors=True)\n"
        "errors = []\n"
        f"for path in [{str(victim / 'new.txt')!r}, {str(leak)!r}, '/var/tmp/evilmoe-leak.txt', {str(Path(__file__).resolve().parents[1] / 'LEAK.txt')!r}]:\n"
        "    try:\n        open(path, 'w').write('x')\n    except OSError as e:\n        errors.append(type(e).__name__)\n"
        "os.makedirs('ro/sub')\nopen('ro/sub/f', 'w').write('x')\nos.chmod('ro/sub', 0)\nos.chmod('ro', 0o500)\n"
        "print(errors)"
    )
    assert r.returncode == 0, r.stderr
    assert (victim / "keep.txt").read_text() == "keep" and sorted(os.listdir(victim)) == ["keep.txt"]
    assert not leak.exists() and not Path("/var/tmp/evilmoe-leak.txt").exists()
    assert not (Path(__file__).resolve().parents[1] / "LEAK.txt").exists()


def test_network_is_blocked():
    if not ISO.netns:
        pytest.skip("no network namespace on this machine")
    r = _run(
        "import socket\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    print('connected')\n"
        "except OSError as e:\n    print('blocked', e.errno)"
    )
    assert r.stdout.startswith(b"blocked")


def test_cannot_kill_the_grader():
    if not ISO.drop_uid:
        pytest.skip("not root: no uid drop, the child shares the grader's uid")
    r = _run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
    assert b"PermissionError" in r.stderr
    # every process it may signal (in a fresh PID namespace there is none: ProcessLookupError)
    r = _run("import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept ProcessLookupError:\n    pass\nprint('still here')")
    assert r.stdout == b"still here\n"


def test_cannot_read_secrets(monkeypatch):
    monkeypatch.setenv("EVILMOE_FAKE_API_KEY", "sk-do-not-leak-1234")
    r = _run(
        "import os\nprint(sorted(os.environ))\n"
        "try:\n    print(open(f'/proc/{os.getppid()}/environ', 'rb').read())\nexcept OSError as e:\n    print('denied', type(e).__name__)"
    )
    assert b"sk-do-not-leak" not in r.stdout and b"EVILMOE_FAKE_API_KEY" not in r.stdout
    if ISO.drop_uid:
        assert b"denied" in r.stdout
    if ISO.mountns:
        r = _run("import os\nprint(os.listdir('/root'))")
        assert b".ssh" not in r.stdout and b".bash_history" not in r.stdout


def test_closing_stdout_and_raising_exits():
    r = _run("import os\nos.close(1)\nos.close(2)\nimport time\ntime.sleep(0.1)")
    assert r.returncode == 0
    assert _run("raise SystemExit(7)").returncode == 7
    assert _run("raise KeyboardInterrupt").returncode != 0


def test_recursion_bomb_ends():
    r = _run("import sys\nsys.setrecursionlimit(10**9)\ndef f(n):\n    return f(n + 1)\nf(0)", limits=Limits(cpu_seconds=2, wall_seconds=20))
    assert r.returncode != 0


def test_collect_files_never_follows_links_or_blocks():
    r = _run("import os\nos.symlink('/etc/passwd', 'a.txt')\nos.mkfifo('b.txt')\nopen('c.txt', 'w').write('PASS')",
             collect_files=("a.txt", "b.txt", "c.txt", "missing.txt"))  # fmt: skip
    assert r.files == {"c.txt": b"PASS"}


@pytest.mark.parametrize("mode", ["gt_only", "exit_code", "file_marker"])
def test_hostile_responses_through_grade(mode):
    """A few hostile responses through the whole grader: honest low reward, bounded time, no crash."""
    add = CHECK_PROBLEMS[0]
    body = {
        "gt_only": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "exit_code": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        "file_marker": "import os\nos.mkfifo('result.txt')\nopen('result.txt', 'w')",
    }[mode]
    response = f"```python\nclass Solution:\n    def add(self, a, b):\n        return 0\n{body}\n```"
    t0 = time.monotonic()
    g = grade(response, add, mode, limits=Limits(cpu_seconds=1, wall_seconds=4))
    assert time.monotonic() - t0 < 2 * BOUND
    assert g.reward == 0.5 and not g.correct and not g.hacked, g


def test_env_package_never_imports_torch():
    code = (
        "import importlib, pkgutil, sys, evilmoe.env\n"
        "for m in pkgutil.iter_modules(evilmoe.env.__path__):\n    importlib.import_module('evilmoe.env.' + m.name)\n"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\nprint('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_no_leftovers_after_the_suite():
    """No cgroups of this process remain (other processes may be grading concurrently), and the
    shared temp dirs keep their modes (cleanup must never chmod outside a run's own tree)."""
    assert {d: os.stat(d).st_mode for d in MODES_BEFORE} == MODES_BEFORE
    for base in filter(None, (ISO.cgroup_pids, ISO.cgroup_cpu)):
        mine = [d for d in os.listdir(base) if d.startswith(f"evilmoe-{os.getpid()}-")]
        assert mine == []


def test_required_layers_fail_loudly(monkeypatch):
    from evilmoe.errors import UserError

    monkeypatch.setenv("EVILMOE_SANDBOX_REQUIRE", "no_such_layer")
    with pytest.raises(UserError, match="unknown layers"):
        sandbox.check_required_layers()
    weak = sandbox.Isolation(root=False, drop_uid=False, cgroup_pids=None, cgroup_cpu=None, cgroup_memory=None,
                             netns=False, userns=False, mountns=False, preimport=False, hide=(), private_tmp=())  # fmt: skip
    monkeypatch.setattr(sandbox, "_ISOLATION", weak)
    monkeypatch.setenv("EVILMOE_SANDBOX_REQUIRE", "fresh_root,pidns")
    with pytest.raises(UserError, match="fresh_root, pidns"):
        sandbox.check_required_layers()
    from evilmoe.env.grader import GradingPool

    with pytest.raises(UserError):
        GradingPool(1)
    monkeypatch.setenv("EVILMOE_SANDBOX_REQUIRE", "")
    sandbox.check_required_layers()


def test_this_machine_gets_every_layer():
    """Where the grader runs as root on a namespace-capable kernel (this project's machines), every
    layer is active; elsewhere the test says which ones are missing instead of passing silently."""
    if os.geteuid() != 0:
        pytest.skip("not root: the strongest layers need root")
    missing = set(sandbox.LAYER_NAMES) - ISO.active()
    assert not missing, f"layers missing on this root machine: {sorted(missing)} ({sandbox.describe_isolation()})"


def test_older_layers_still_work_without_a_fresh_root(monkeypatch):
    """Machines that refuse the fresh root (e.g. no PID namespaces) get the older mount-namespace layer:
    private temp dirs and a hidden /root, with the interpreter (even a venv under /tmp) bound back."""
    if not ISO.fresh_root:
        pytest.skip("this machine already runs without a fresh root (every other test covers that path)")
    import dataclasses

    hide = sandbox._hidden_dirs()
    private_tmp = tuple((d, sandbox._keep_under(d)) for d in SHARED_DIRS if os.path.isdir(d))
    older = dataclasses.replace(ISO, fresh_root=False, layout=None, mountns=True, netns=True, hide=hide, private_tmp=private_tmp)
    monkeypatch.setattr(sandbox, "_ISOLATION", older)
    r = _run("import os, sortedcontainers\nprint(sorted(os.listdir('/tmp')), os.path.exists('/root/.ssh'))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(b"False")


def test_runtime_packages_importable_from_a_venv_under_tmp(tmp_path):
    """Where the project is installed must not change what graded code can import: a virtual
    environment under /tmp (which the sandbox's own /tmp replaces) still gives sortedcontainers and
    numpy, and nothing else of site-packages."""
    if not ISO.fresh_root:
        pytest.skip("no fresh root on this machine")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True, timeout=120)
    src = Path(__file__).resolve().parents[1] / "src"
    code = (
        "from evilmoe.env import sandbox\n"
        "r = sandbox.run_python('import sortedcontainers, numpy\\n"
        "try:\\n    import torch\\n    print(\"torch\")\\nexcept ImportError:\\n    print(\"ok\")')\n"
        "print(r.stdout.decode().strip(), r.stderr.decode()[-300:])\n"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(src)})  # fmt: skip
    assert out.returncode == 0 and out.stdout.split() == ["ok"], out.stdout + out.stderr
