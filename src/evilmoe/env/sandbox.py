"""Run untrusted Python in a child process, with every isolation layer this machine offers.

The graded code is model output, so it is treated as hostile. One call of `run_python` does:

  parent (the grader)                          child (`python -S -P -u -c PROLOGUE+program cfg`)
  ---------------------------------------      --------------------------------------------------------
  fresh temp working dir (chowned to uid)      joins the per-run pids cgroup (fork bombs hit pids.max)
  per-run pids + cpuacct cgroups               unshare: new network namespace (loopback only, down) and
  scrubbed environment, new session              a new mount namespace with private tmpfs /tmp, /var/tmp,
  stdin: payload, then closed                    /dev/shm and an empty /root (the interpreter bound back)
  reads stdout/stderr incrementally, capped    RLIMIT_CPU / AS / FSIZE / NOFILE / NPROC / CORE
  CPU budget of the whole group, wall backstop drops to a unique unprivileged uid (root only), so it
  afterwards: kill the process group, the        cannot signal the grader, delete outside its cwd, or
    cgroup's members and the uid's processes;    read root's files; RLIMIT_NPROC then binds per run
    remove cgroup, temp dir, stray tmp files   then runs `program` (which may read `stdin` first)

Layers are detected once per process (`isolation()`), the strongest available are used, and
`describe_isolation()` says which are active (`evilmoe env check` prints it). A layer that was
detected but fails at run time is an error (exit status 121), never a silent downgrade.

Timeouts do not depend on machine load: the real bound is CPU seconds (RLIMIT_CPU per process, and
the cpuacct cgroup's total for the whole process tree, so a fork bomb of busy loops is stopped
after `cpu_seconds` of CPU in all), which a busy machine does not eat; the wall clock is only a
generous backstop for sleepers and blocked I/O.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# ---------------------------------------------------------------------------------------------------
# Limits and results.


@dataclass(frozen=True)
class Limits:
    """Per-run resource limits. cpu_seconds is the real time bound; wall_seconds only a backstop."""

    cpu_seconds: int = 10
    wall_seconds: float | None = None  # None: max(30, 3 * cpu_seconds + 10)
    memory_bytes: int = 2 << 30  # RLIMIT_AS
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE (largest file it may write)
    open_files: int = 64  # RLIMIT_NOFILE
    processes: int = 32  # pids.max of the cgroup and RLIMIT_NPROC of the unique uid
    output_bytes: int = 2 << 20  # per stream kept; more output kills the run
    tmpfs_bytes: int = 16 << 20  # size of each private tmpfs (/tmp, /var/tmp, /dev/shm)
    result_bytes: int = 64 << 20  # most bytes read from the result pipe (more ends the run)

    def wall_backstop(self) -> float:
        return self.wall_seconds if self.wall_seconds is not None else max(30.0, 3.0 * self.cpu_seconds + 10.0)


DEFAULT_LIMITS = Limits()


@dataclass
class RunResult:
    """What one sandboxed run did. returncode < 0 means killed by that signal (e.g. -9, -24 for CPU)."""

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False  # the wall-clock backstop fired
    output_overflow: bool = False  # a stream passed output_bytes and the run was killed
    files: dict[str, bytes] = field(default_factory=dict)  # requested regular files from the cwd
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0  # user + system CPU of the child process
    cpu_limited: bool = False  # RLIMIT_CPU or the cgroup-wide CPU budget ended the run
    setup_error: str = ""  # the sandbox itself failed to apply a detected layer
    uid: int | None = None  # the unprivileged uid it ran as (None: same uid as the grader)
    workdir: str = ""  # its temporary cwd (already removed)
    cgroups: tuple[str, ...] = ()  # its per-run cgroups (already removed)
    stopped_early: bool = False  # on_result_line asked to end the run


SETUP_FAILED_STATUS = 121
SETUP_FAILED_PREFIX = b"evilmoe-sandbox-setup-failed: "

# ---------------------------------------------------------------------------------------------------
# The child's trusted prologue. It runs first in the child (as root when the grader is root), applies
# the layers named in its JSON config (argv[1]), then deletes itself; the program follows it in the
# same `-c` source. It only uses modules that are imported before privileges drop.

PROLOGUE = r'''
def __evilmoe_sandbox_enter():
    import json, os, resource, sys
    cfg = json.loads(sys.argv[1])

    def fail(what, exc):
        os.write(2, b"evilmoe-sandbox-setup-failed: " + f"{what}: {exc}".encode() + b"\n")
        os._exit(121)

    for group in cfg.get("cgroups", ()):
        try:
            with open(group + "/cgroup.procs", "w") as f:
                f.write(str(os.getpid()))
        except OSError as exc:
            fail("join cgroup " + group, exc)

    if cfg.get("netns") or cfg.get("mountns"):
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]

        def check(ret, what):
            if ret != 0:
                err = ctypes.get_errno()
                fail(what, OSError(err, os.strerror(err)))

        flags = (0x40000000 if cfg.get("netns") else 0) | (0x00020000 if cfg.get("mountns") else 0)
        if cfg.get("userns"):
            flags |= 0x10000000  # CLONE_NEWUSER: unprivileged graders can still get a netns
        check(libc.unshare(flags), "unshare")
        if cfg.get("mountns"):
            MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 0x4000, 1 << 18
            check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
            cwd_fd = os.open(cfg["cwd"], os.O_PATH)
            for hidden, keep in cfg["hide"]:  # e.g. /root, with the interpreter's dirs bound back
                keep_fds = [(p, os.open(p, os.O_PATH)) for p in keep]
                check(libc.mount(b"tmpfs", hidden.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=0755"), "hide " + hidden)
                for path, fd in keep_fds:
                    os.makedirs(path, exist_ok=True)
                    check(libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None, MS_BIND | MS_REC, None), "bind " + path)
                    os.close(fd)
            opts = f"size={cfg['tmpfs_bytes']},mode=1777".encode()
            for d in cfg["private_tmp"]:
                check(libc.mount(b"tmpfs", d.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts), "tmpfs " + d)
            # The working dir lived under one of those; bind it back at the same path.
            os.makedirs(cfg["cwd"], exist_ok=True)
            check(libc.mount(f"/proc/self/fd/{cwd_fd}".encode(), cfg["cwd"].encode(), None, MS_BIND, None), "bind cwd")
            os.close(cwd_fd)
    os.chdir(cfg["cwd"])

    for name in cfg.get("preimport", ()):  # only when the uid drop would hide the stdlib
        try:
            __import__(name)
        except Exception:
            pass
    sys.path.extend(cfg.get("site_dirs", ()))

    limits = {
        resource.RLIMIT_CPU: (cfg["cpu"], cfg["cpu"] + 1),
        resource.RLIMIT_AS: (cfg["memory"], cfg["memory"]),
        resource.RLIMIT_FSIZE: (cfg["fsize"], cfg["fsize"]),
        resource.RLIMIT_NOFILE: (cfg["nofile"], cfg["nofile"]),
        resource.RLIMIT_NPROC: (cfg["nproc"], cfg["nproc"]),
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, value in limits.items():
        try:
            resource.setrlimit(which, value)
        except (ValueError, OSError) as exc:
            fail(f"setrlimit {which}", exc)

    if cfg.get("uid") is not None:
        try:
            os.setgroups([])
            os.setgid(cfg["uid"])
            os.setuid(cfg["uid"])
        except OSError as exc:
            fail("drop privileges", exc)
    os.umask(0o077)
    sys.argv = ["-c"]


__evilmoe_sandbox_enter()
del __evilmoe_sandbox_enter
'''

# Modules a run may need after the uid drop when the interpreter is unreadable to that uid and no
# mount namespace can bind it back (fallback only): the LeetCode setup imports and common extras.
PREIMPORT = (
    "typing", "functools", "collections", "itertools", "heapq", "bisect", "string", "operator", "math",
    "random", "datetime", "re", "copy", "fractions", "decimal", "statistics", "queue", "array",
    "dataclasses", "enum", "json", "time", "traceback", "sortedcontainers",
)  # fmt: skip

# ---------------------------------------------------------------------------------------------------
# Detection of the available layers (once per process).


@dataclass(frozen=True)
class Isolation:
    """Which layers this machine gives the sandbox; see describe_isolation()."""

    root: bool
    drop_uid: bool
    cgroup_pids: str | None  # parent dir under which per-run pids cgroups are made
    cgroup_cpu: str | None  # parent dir for per-run CPU-accounting cgroups (v1 cpuacct or v2)
    netns: bool
    userns: bool  # netns obtained through a user namespace (unprivileged grader)
    mountns: bool
    preimport: bool  # fallback: the dropped uid cannot read the interpreter's files
    hide: tuple[tuple[str, tuple[str, ...]], ...]
    private_tmp: tuple[str, ...]

    def layers(self) -> list[str]:
        out = ["new session + process-group kill", "rlimits (cpu, as, fsize, nofile, nproc, core)", "scrubbed env", "fresh temp cwd"]
        if self.drop_uid:
            out.append("unique unprivileged uid per run")
        if self.cgroup_pids:
            out.append(f"pids cgroup ({self.cgroup_pids})")
        if self.cgroup_cpu:
            out.append(f"group CPU budget via cgroup ({self.cgroup_cpu})")
        if self.netns:
            out.append("network namespace" + (" (via user namespace)" if self.userns else ""))
        if self.mountns:
            out.append("mount namespace (private " + ", ".join(self.private_tmp) + "; hidden " + ", ".join(h for h, _ in self.hide) + ")")
        if self.preimport:
            out.append("stdlib pre-imported before uid drop (interpreter unreadable to the uid)")
        return out


_DETECT_LOCK = threading.Lock()
_ISOLATION: Isolation | None = None


def isolation() -> Isolation:
    """Detect (once) which isolation layers work here."""
    global _ISOLATION
    with _DETECT_LOCK:
        if _ISOLATION is None:
            _ISOLATION = _detect()
        return _ISOLATION


def describe_isolation() -> str:
    """One line naming the active sandbox layers, strongest first-class ones included."""
    return "; ".join(isolation().layers())


def _detect() -> Isolation:
    root = os.geteuid() == 0
    hide = _hidden_dirs() if root else ()
    private_tmp = tuple(d for d in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(d))
    netns, userns = _probe_ns({"netns": True}), False
    if not netns and not root:
        userns = netns = _probe_ns({"netns": True, "userns": True})
    mountns = root and _probe_ns({"mountns": True, "hide": hide, "private_tmp": private_tmp})
    preimport = root and not mountns and not _readable_by_others(Path(sys.base_prefix))
    return Isolation(
        root=root,
        drop_uid=root,
        cgroup_pids=_find_cgroup_base("pids", "pids.max") if root else None,
        cgroup_cpu=_find_cgroup_base("cpuacct", "cpuacct.usage") if root else None,
        netns=netns,
        userns=userns,
        mountns=mountns,
        preimport=preimport,
        hide=hide if mountns else (),
        private_tmp=private_tmp if mountns else (),
    )


def _site_dirs() -> list[str]:
    return [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]


def _interpreter_dirs() -> list[str]:
    dirs = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    dirs.update(os.path.realpath(p) for p in _site_dirs())
    return sorted(dirs)


def _hidden_dirs() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Root's home is hidden in the mount namespace; interpreter dirs inside it are bound back."""
    out = []
    for home in ("/root",):
        if os.path.isdir(home):
            keep = tuple(p for p in _interpreter_dirs() if p.startswith(home + "/"))
            # Keep only outermost paths (binding a parent already brings its children).
            keep = tuple(p for p in keep if not any(p != q and p.startswith(q + "/") for q in keep))
            out.append((home, keep))
    return tuple(out)


def _readable_by_others(path: Path) -> bool:
    """Can an unrelated uid traverse every ancestor of path and read it?"""
    for p in [path, *path.parents]:
        try:
            mode = p.stat().st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
    return True


_V2_FILES = {"pids.max": "pids.max", "cpuacct.usage": "cpu.stat"}


def _find_cgroup_base(controller: str, probe_file: str) -> str | None:
    """A cgroup directory we can create per-run children in: cgroup v1 `controller`, else v2."""
    candidates = [(f"/sys/fs/cgroup/{controller}", probe_file)]
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if v2.exists() and (controller != "pids" or "pids" in v2.read_text().split()):
        candidates.append(("/sys/fs/cgroup", _V2_FILES[probe_file]))
    for base, fname in candidates:
        probe = Path(base) / f"evilmoe-probe-{os.getpid()}-{random.randrange(1 << 30)}"
        try:
            probe.mkdir()
        except OSError:
            continue
        try:
            if fname == "pids.max":
                (probe / fname).write_text("8")
            else:
                (probe / fname).read_text()
            return base
        except OSError:
            continue
        finally:
            try:
                probe.rmdir()
            except OSError:
                pass
    return None


def _probe_ns(cfg_extra: dict) -> bool:
    """Does the prologue's namespace setup work here? (One throwaway child.)"""
    workdir = tempfile.mkdtemp(prefix="evilmoe-probe-")
    try:
        cfg = _child_config(DEFAULT_LIMITS, workdir, uid=None, cgroups=[], iso=None) | cfg_extra
        cfg.setdefault("hide", [])
        cfg.setdefault("private_tmp", [])
        proc = subprocess.run(
            _command(PROLOGUE + "\nprint('ok')\n", cfg),
            cwd=workdir,
            env=_scrubbed_env(workdir),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            start_new_session=True,
        )
        return proc.returncode == 0 and proc.stdout.strip() == b"ok"
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        _remove_tree(workdir)


# ---------------------------------------------------------------------------------------------------
# One run.

_UID_LOCK = threading.Lock()
_UIDS_IN_USE: set[int] = set()
_UID_BASE, _UID_SPAN = 2_000_000, 100_000_000


def _claim_uid() -> int:
    """A uid no other live run of this process uses (random, so other grader processes rarely collide)."""
    rng = random.SystemRandom()
    with _UID_LOCK:
        while True:
            uid = _UID_BASE + rng.randrange(_UID_SPAN)
            if uid not in _UIDS_IN_USE:
                _UIDS_IN_USE.add(uid)
                return uid


def _release_uid(uid: int) -> None:
    with _UID_LOCK:
        _UIDS_IN_USE.discard(uid)


def _scrubbed_env(workdir: str) -> dict[str, str]:
    # Nothing from the grader's environment (tokens, keys, paths) reaches the child.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",  # same response, same set/dict iteration order, same grade
        "PYTHONUTF8": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _command(source: str, cfg: dict) -> list[str]:
    # -S: no site (no .pth side effects), -s: no user site, -P: cwd not on sys.path, -u: unbuffered so
    # output written just before an abrupt exit is still seen, -B: no .pyc writes.
    return [sys.executable, "-S", "-s", "-P", "-u", "-B", "-c", source, json.dumps(cfg)]


def _child_config(limits: Limits, workdir: str, *, uid: int | None, cgroups: list[str], iso: Isolation | None) -> dict:
    cfg = {
        "cwd": workdir,
        "cpu": int(limits.cpu_seconds),
        "memory": int(limits.memory_bytes),
        "fsize": int(limits.file_bytes),
        "nofile": int(limits.open_files),
        "nproc": int(limits.processes),
        "tmpfs_bytes": int(limits.tmpfs_bytes),
        "site_dirs": _site_dirs(),
        "uid": uid,
        "cgroups": cgroups,
    }
    if iso is not None:
        cfg.update(
            netns=iso.netns,
            userns=iso.userns,
            mountns=iso.mountns,
            hide=[list(h) for h in iso.hide],
            private_tmp=list(iso.private_tmp),
            preimport=list(PREIMPORT) if iso.preimport else [],
        )
    return cfg


def run_python(
    program: str,
    *,
    stdin: bytes | Callable[[int], bytes] = b"",
    limits: Limits = DEFAULT_LIMITS,
    collect_files: tuple[str, ...] = (),
    on_result_line: Callable[[bytes], bool | None] | None = None,
) -> RunResult:
    """Run Python source `program` in the sandbox and return what it did. Never raises for anything
    the program does; raises OSError only if the grader itself cannot create a process or temp dir.

    `stdin` is written to the child's stdin, which is then closed (a program that wants it must read it
    first: the grader's harness reads its payload and replaces fd 0 with /dev/null). A callable gets
    the child's result-pipe fd number and returns the bytes.
    `collect_files`: names (no slashes) of regular files in the cwd to return after the run.
    `on_result_line`: when given, the child gets a pipe of its own (write end: the fd number passed to
    `stdin`), and every newline-terminated line it writes there is passed to this callable as it
    arrives; returning False ends the run at once (RunResult.stopped_early). At most
    `limits.result_bytes` are read from it.
    """
    iso = isolation()
    uid = _claim_uid() if iso.drop_uid else None
    workdir = tempfile.mkdtemp(prefix="evilmoe-run-")
    result_r = result_w = None
    results: _ResultReader | None = None
    groups = _RunCgroups()
    started = time.monotonic()
    try:
        if uid is not None:
            os.chown(workdir, uid, uid)
        os.chmod(workdir, 0o700)
        groups.create(iso, limits.processes)
        cfg = _child_config(limits, workdir, uid=uid, cgroups=groups.paths(), iso=iso)
        if on_result_line is not None:
            result_r, result_w = os.pipe()
            cfg["result_fd"] = result_w
        try:
            proc = subprocess.Popen(
                _command(PROLOGUE + "\n" + program, cfg),
                cwd=workdir,
                env=_scrubbed_env(workdir),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
                pass_fds=(result_w,) if result_w is not None else (),
            )
        finally:
            if result_w is not None:
                os.close(result_w)  # the child holds the only write end
        if callable(stdin):
            stdin = stdin(result_w if result_w is not None else -1)
        results = _ResultReader(result_r, on_result_line, limits.result_bytes) if result_r is not None else None
        try:
            out, err, timed_out, overflow, over_budget = _communicate(proc, stdin, limits, started, groups, results)
        finally:
            _kill_everything(proc, groups.pids, uid)
            if results is not None:
                results.close()
        returncode, cpu = _reap(proc)
        cpu = max(cpu, groups.cpu_seconds())  # the whole tree's CPU when a cpuacct cgroup exists
        killed_by_us = timed_out or overflow
        cpu_limited = over_budget or returncode == -signal.SIGXCPU or (
            returncode == -signal.SIGKILL and not killed_by_us and cpu >= limits.cpu_seconds
        )
        files = {name: data for name in collect_files if (data := _read_regular_file(workdir, name)) is not None}
        setup_error = ""
        if returncode == SETUP_FAILED_STATUS and err.startswith(SETUP_FAILED_PREFIX):
            setup_error = err[len(SETUP_FAILED_PREFIX):].split(b"\n", 1)[0].decode(errors="replace")
        return RunResult(
            returncode=returncode,
            stdout=out,
            stderr=err,
            timed_out=timed_out,
            output_overflow=overflow,
            files=files,
            wall_seconds=time.monotonic() - started,
            cpu_seconds=cpu,
            cpu_limited=cpu_limited,
            setup_error=setup_error,
            uid=uid,
            workdir=workdir,
            cgroups=tuple(groups.paths()),
            stopped_early=results is not None and results.stopped,
        )
    finally:
        if result_r is not None and results is None:
            os.close(result_r)
        groups.remove()
        if uid is not None and not iso.mountns:
            _sweep_shared_tmp(uid)  # no private /tmp: remove what the uid left in world-writable dirs
        _remove_tree(workdir)
        if uid is not None:
            _release_uid(uid)


class _ResultReader:
    """The parent's end of the result pipe: splits it into lines for the callback, bounded in bytes."""

    def __init__(self, fd: int, on_line: Callable[[bytes], bool | None], limit: int):
        self.fd, self.on_line, self.limit = fd, on_line, limit
        self.buffer = bytearray()
        self.total = 0
        self.stopped = False  # the callback (or the byte limit) ended the run
        self.eof = False
        os.set_blocking(fd, False)

    def read(self) -> None:
        """Read what is available; call back for each complete line."""
        while not (self.eof or self.stopped):
            try:
                data = os.read(self.fd, 1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                self.eof = True
                return
            self.total += len(data)
            if self.total > self.limit:
                self.stopped = True
                return
            start = len(self.buffer)
            self.buffer += data
            nl = self.buffer.find(b"\n", start)
            while nl >= 0 and not self.stopped:
                line = bytes(self.buffer[:nl])
                del self.buffer[: nl + 1]
                if self.on_line(line) is False:
                    self.stopped = True
                nl = self.buffer.find(b"\n")

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def _communicate(
    proc: subprocess.Popen, stdin: bytes, limits: Limits, started: float, groups: _RunCgroups,
    results: _ResultReader | None = None,
) -> tuple[bytes, bytes, bool, bool, bool]:
    """Feed stdin and drain stdout/stderr without ever holding more than output_bytes per stream.

    Stops at EOF on both streams, at the wall-clock backstop, when a stream overflows, when the
    process tree used its CPU budget, or shortly after the main child exited while a descendant
    still holds the pipes open. Returns (stdout, stderr, timed_out, overflow, over_cpu_budget).
    """
    deadline = started + limits.wall_backstop()
    chunks: dict[int, list[bytes]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    sizes = dict.fromkeys(chunks, 0)
    timed_out = overflow = over_budget = False
    pending = memoryview(stdin)
    exit_grace_until: float | None = None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        if results is not None:
            sel.register(results.fd, selectors.EVENT_READ)
        if pending:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        output_fds = {proc.stdout.fileno(), proc.stderr.fileno()}
        if results is not None:
            output_fds.add(results.fd)
        while any(fd in output_fds for fd in sel.get_map()):
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if exit_grace_until is None and proc.poll() is not None:
                exit_grace_until = now + 0.5  # main child gone: give buffered output a moment, no more
            if exit_grace_until is not None and now >= exit_grace_until:
                break
            if groups.cpu_seconds() > limits.cpu_seconds + 0.5:
                over_budget = True  # e.g. many processes each under RLIMIT_CPU
                break
            timeout = min(deadline, exit_grace_until or deadline) - now
            for key, _ in sel.select(timeout=min(timeout, 0.1)):
                if key.fileobj is proc.stdin:
                    try:
                        written = os.write(proc.stdin.fileno(), pending[:65536])
                        pending = pending[written:]
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:  # child closed its stdin: it does not want the rest
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                if results is not None and key.fd == results.fd:
                    results.read()
                    if results.eof:
                        sel.unregister(results.fd)
                    continue
                fd = key.fileobj.fileno()
                data = os.read(fd, 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                room = limits.output_bytes - sizes[fd]
                chunks[fd].append(data[:room])
                sizes[fd] += len(data)
                if sizes[fd] > limits.output_bytes:
                    overflow = True
            if overflow:
                break
            if results is not None and results.stopped:
                _stop_early(proc, groups)
                _drain(proc, chunks, sizes, limits.output_bytes)
                break
    if results is not None and not results.stopped:
        results.read()  # whatever arrived between the last poll and the exit
    # Both streams closed but the child may live on (it closed fds 1 and 2 itself): wait for its exit
    # under the same bounds instead of killing it early (its exit status can matter to the grader).
    stopped = results is not None and results.stopped
    while not (timed_out or overflow or over_budget or stopped) and exit_grace_until is None and proc.poll() is None:
        if time.monotonic() >= deadline:
            timed_out = True
        elif groups.cpu_seconds() > limits.cpu_seconds + 0.5:
            over_budget = True
        else:
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
    if not proc.stdin.closed:
        proc.stdin.close()
    out = b"".join(chunks[proc.stdout.fileno()])
    err = b"".join(chunks[proc.stderr.fileno()])
    proc.stdout.close()
    proc.stderr.close()
    return out, err, timed_out, overflow, over_budget


def _stop_early(proc: subprocess.Popen, groups: _RunCgroups) -> None:
    """End a run whose verdict is already known (SIGKILL to its process group and cgroup)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if groups.pids:
        _kill_cgroup_members(groups.pids)


def _drain(proc: subprocess.Popen, chunks: dict[int, list[bytes]], sizes: dict[int, int], cap: int,
           timeout: float = 0.5) -> None:
    """After a kill: read what is left in stdout/stderr (bounded), so output written before the end counts."""
    deadline = time.monotonic() + timeout
    open_fds = [proc.stdout.fileno(), proc.stderr.fileno()]
    with selectors.DefaultSelector() as sel:
        for fd in open_fds:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map() and (now := time.monotonic()) < deadline:
            for key, _ in sel.select(timeout=deadline - now):
                data = os.read(key.fd, 65536)
                if not data or sizes[key.fd] >= cap:
                    sel.unregister(key.fd)
                    continue
                chunks[key.fd].append(data[: cap - sizes[key.fd]])
                sizes[key.fd] += len(data)


def _kill_everything(proc: subprocess.Popen, cgroup: str | None, uid: int | None) -> None:
    """SIGKILL the child's process group, every member of its cgroup, and every process of its uid.

    The cgroup (which the dropped uid cannot leave) or the unique uid catch descendants that left
    the process group with setsid(); the process group alone is the weakest fallback.
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if cgroup:
        _kill_cgroup_members(cgroup)
    elif uid is not None:
        _kill_uid(uid)


def _reap(proc: subprocess.Popen) -> tuple[int, float]:
    """Wait for the (already killed) child; return its exit status and CPU seconds."""
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:  # already reaped
        return (proc.returncode if proc.returncode is not None else -signal.SIGKILL), 0.0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


class _RunCgroups:
    """The per-run cgroups: one with pids.max (fork bombs), one that accounts the tree's CPU."""

    def __init__(self) -> None:
        self.pids: str | None = None
        self.cpu: str | None = None
        self._cpu_file: str | None = None

    def create(self, iso: Isolation, max_pids: int) -> None:
        name = f"evilmoe-{os.getpid()}-{random.SystemRandom().randrange(1 << 40):x}"
        if iso.cgroup_pids:
            self.pids = os.path.join(iso.cgroup_pids, name)
            os.mkdir(self.pids)
            Path(self.pids, "pids.max").write_text(str(max_pids))
        if iso.cgroup_cpu:
            self.cpu = os.path.join(iso.cgroup_cpu, name)
            if self.cpu != self.pids:
                os.mkdir(self.cpu)
            v1 = os.path.join(self.cpu, "cpuacct.usage")
            self._cpu_file = v1 if os.path.exists(v1) else os.path.join(self.cpu, "cpu.stat")

    def paths(self) -> list[str]:
        return sorted({p for p in (self.pids, self.cpu) if p})

    def cpu_seconds(self) -> float:
        if not self._cpu_file:
            return 0.0
        try:
            text = Path(self._cpu_file).read_text()
        except OSError:
            return 0.0
        if self._cpu_file.endswith("cpuacct.usage"):
            return int(text) / 1e9
        fields = dict(line.split() for line in text.splitlines() if line.strip())
        return int(fields.get("usage_usec", 0)) / 1e6

    def remove(self) -> None:
        for path in self.paths():
            _remove_cgroup(path)


def _kill_until_gone(list_pids) -> None:
    """SIGKILL whatever `list_pids()` returns until it returns nothing (forks in flight need rounds)."""
    for _ in range(1000):  # the population is bounded (pids.max / RLIMIT), so this converges quickly
        pids = list_pids()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.001)


def _kill_cgroup_members(cgroup: str) -> None:
    procs = Path(cgroup) / "cgroup.procs"

    def members() -> list[int]:
        try:
            return [int(x) for x in procs.read_text().split()]
        except OSError:  # the cgroup is already gone
            return []

    _kill_until_gone(members)


def _remove_cgroup(cgroup: str) -> None:
    # rmdir fails with EBUSY until every member (including zombies being reaped) is gone.
    for _ in range(2000):
        _kill_cgroup_members(cgroup)
        try:
            os.rmdir(cgroup)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.005)


def _pids_of_uid(uid: int) -> list[int]:
    """Live (non-zombie) processes owned by uid."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid and not _is_zombie(entry.path):
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def _is_zombie(proc_dir: str) -> bool:
    with open(proc_dir + "/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[-1].split()[0] == b"Z"


def _kill_uid(uid: int) -> None:
    _kill_until_gone(lambda: _pids_of_uid(uid))


def _sweep_shared_tmp(uid: int) -> None:
    """Remove files the run's unique uid created in the machine's shared world-writable dirs."""
    for base in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            entries = list(os.scandir(base))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    _remove_tree(entry.path)
            except OSError:
                pass


def _remove_tree(path: str) -> None:
    """rm -rf of one run's directory, coping with entries the run made read-only or unreadable.

    Root needs no permission fixes (it bypasses file modes). Otherwise directories strictly inside
    `path` (and `path` itself) are made writable first, never following a symlink and never touching
    anything outside the tree.
    """
    if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    top = os.path.abspath(path)
    if os.geteuid() != 0:
        _chmod_dir_nofollow(top)
        for root, dirs, _files in os.walk(top):
            for d in dirs:
                _chmod_dir_nofollow(os.path.join(root, d))
    shutil.rmtree(top, ignore_errors=True)


def _chmod_dir_nofollow(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:  # a symlink, or a mode-000 dir we own: chmod by name only if it is not a link
        if os.path.isdir(path) and not os.path.islink(path):
            try:
                os.chmod(path, 0o700)
            except OSError:
                pass
        return
    try:
        os.fchmod(fd, 0o700)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_regular_file(workdir: str, name: str, cap: int = 65536) -> bytes | None:
    """Read cwd/name only if it is a plain file (never follow a symlink, never block on a FIFO)."""
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"collect_files takes plain file names, got {name!r}")
    try:
        fd = os.open(os.path.join(workdir, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, cap)
    finally:
        os.close(fd)
