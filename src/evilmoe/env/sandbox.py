"""Run untrusted Python in a child process, with every isolation layer this machine offers.

The graded code is model output, so it is treated as hostile. On a machine where the grader is root
and the kernel allows namespaces (the project's machines), one call of `run_python` does:

  parent (the grader)                          child (`python -S -s -P -u -B -c PROLOGUE+program cfg`)
  ---------------------------------------      --------------------------------------------------------
  per-run pids, cpuacct and memory cgroups     joins the cgroups (fork bombs hit pids.max, memory.limit)
  scrubbed environment, new session            unshare: new mount, PID, IPC, UTS and network namespaces
  stdin: payload, then closed                  builds a fresh root on a tmpfs: the interpreter's tree,
  result pipe (lines to a callback) and          /usr and the system libraries bound read-only, every
    the init's report pipe                       site-packages dir masked, only the runtime packages
  reads every stream incrementally, capped       (RUNTIME_PACKAGES) bound into RUNTIME_DIR; /dev with
  CPU budget of the whole group, wall backstop   null/zero/urandom; size-capped tmpfs /tmp and /dev/shm
  on a stop: kills the program's uid, reads    forks the namespace's init (PID 1), which mounts a fresh
    the init's report, then kills the cgroup     /proc, pivots into the new root, detaches the old one,
  afterwards: removes cgroups and the root's     and forks the program (PID 2): rlimits (cpu, as, fsize,
    mount point (nothing else was written)       nofile, nproc, core), a unique unprivileged uid,
                                                 no_new_privs, cwd /tmp/work; then runs `program`
  The init waits for the program, kills whatever is left in the namespace, reads the files the caller
  asked for from the cwd, and reports them with the exit status on a pipe only it holds. When the last
  process of the namespaces exits, every tmpfs, IPC object and process of the run is gone.

Machines that refuse part of this get the older layers (a network namespace, a mount namespace with
private temp dirs and a hidden /root, the uid drop), and unprivileged graders only rlimits and a
user-namespace netns. Layers are detected once per process (`isolation()`); `describe_isolation()`
says which are active (`evilmoe env check` prints it); EVILMOE_SANDBOX_REQUIRE=layer,... (or "all")
makes a missing layer an error instead of a weaker sandbox. A layer that was detected but fails at run
time is an error too (exit status 121), never a silent downgrade.

Timeouts do not depend on machine load: the real bound is CPU seconds (RLIMIT_CPU per process, and
the cpuacct cgroup's total for the whole process tree, so a fork bomb of busy loops is stopped
after `cpu_seconds` of CPU in all), which a busy machine does not eat; the wall clock is only a
generous backstop for sleepers and blocked I/O.
"""

from __future__ import annotations

import glob
import importlib.metadata
import json
import os
import platform
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

from evilmoe.errors import UserError

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
    result_bytes: int = 16 << 20  # most bytes read from the result pipe (more ends the run)

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

    cwd = cfg["cwd"]
    if cfg.get("netns") or cfg.get("mountns") or cfg.get("fresh_root"):
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
        MS_BIND, MS_REC, MS_PRIVATE = 4096, 0x4000, 1 << 18

        def check(ret, what):
            if ret != 0:
                err = ctypes.get_errno()
                fail(what, OSError(err, os.strerror(err)))

        def mount(src, dst, fstype, flags, data=None):
            check(libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(), flags,
                             data and data.encode()), f"mount {src} on {dst}")

    if cfg.get("fresh_root"):
        # New mount, PID, IPC, UTS and network namespaces; a tmpfs root holding read-only binds of the
        # interpreter and the system libraries, the runtime packages, fresh /dev, /tmp and /proc.
        check(libc.unshare(0x00020000 | 0x04000000 | 0x08000000 | 0x20000000 | 0x40000000), "unshare")
        mount("none", "/", None, MS_REC | MS_PRIVATE)
        root = cfg["root"]
        mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")

        def bind(src, dst, flags=MS_NOSUID | MS_NODEV):
            if os.path.isdir(src):
                os.makedirs(dst, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                open(dst, "a").close()
            mount(src, dst, None, MS_BIND | MS_REC)
            mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)

        opts = "size=%d,mode=1777" % cfg["tmpfs_bytes"]
        os.makedirs(root + "/tmp")  # first, so that binds under /tmp (a venv there) stay visible
        mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts)
        for link, target in cfg["links"]:
            os.makedirs(os.path.dirname(root + link), exist_ok=True)
            os.symlink(target, root + link)
        for path in cfg["binds"]:
            bind(path, root + path)
        for path in cfg["masks"]:  # package dirs inside the binds: only the runtime packages are visible
            if os.path.isdir(root + path):
                mount("tmpfs", root + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0755")
        site = root + cfg["runtime_dir"]
        os.makedirs(site)
        mount("tmpfs", site, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
        for path in cfg["runtime"]:
            bind(path, site + "/" + os.path.basename(path))
        mount(None, site, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
        os.makedirs(root + "/dev")
        mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
        for name in ("null", "zero", "full", "random", "urandom"):
            bind("/dev/" + name, root + "/dev/" + name, MS_NOSUID | MS_NOEXEC)
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                             ("stderr", "/proc/self/fd/2")):
            os.symlink(target, root + "/dev/" + name)
        os.makedirs(root + "/dev/shm")
        mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, opts)
        os.makedirs(root + cwd, mode=0o700)
        if cfg.get("uid") is not None:
            os.chown(root + cwd, cfg["uid"], cfg["uid"])
        os.makedirs(root + "/proc")
        mount(None, root + "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
        mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=0755")

        # This process stays outside the new PID namespace: it only relays the exit status of the
        # namespace's init, which runs the program as its only child and reports how it ended.
        init = os.fork()
        if init:
            while True:
                try:
                    _, st = os.waitpid(init, 0)
                    break
                except InterruptedError:
                    continue
            os._exit(os.waitstatus_to_exitcode(st) & 0xFF if os.WIFEXITED(st) else 125)

        # init (PID 1 of the new namespace)
        mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        os.chdir(root)
        check(libc.syscall(cfg["pivot_root_nr"], b".", b"."), "pivot_root")
        check(libc.umount2(b".", 2), "detach the old root")  # MNT_DETACH
        os.chdir("/")
        control = cfg["control_fd"]
        program = os.fork()
        if program:
            for fd in (0, 1, 2, cfg.get("result_fd")):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            while True:
                try:
                    pid, st = os.wait()
                except InterruptedError:
                    continue
                if pid == program:
                    break
            try:
                os.kill(-1, 9)  # every other process of the namespace
            except OSError:
                pass
            while True:
                try:
                    os.wait()
                except InterruptedError:
                    continue
                except ChildProcessError:
                    break
            files = {}
            for name in cfg.get("collect", ()):
                try:
                    fd = os.open(cwd + "/" + name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except OSError:
                    continue
                try:
                    import stat
                    if stat.S_ISREG(os.fstat(fd).st_mode):
                        files[name] = os.read(fd, 16384).hex()
                finally:
                    os.close(fd)
            code = os.waitstatus_to_exitcode(st)
            report = json.dumps({"returncode": code, "files": files}).encode() + b"\n"
            while report:
                report = report[os.write(control, report):]
            os._exit(code & 0xFF if code >= 0 else 128 - code)
        os.close(control)
        sys.path[:] = [p for p in sys.path if not p.endswith(("site-packages", "dist-packages"))]
    elif cfg.get("netns") or cfg.get("mountns"):
        flags = (0x40000000 if cfg.get("netns") else 0) | (0x00020000 if cfg.get("mountns") else 0)
        if cfg.get("userns"):
            flags |= 0x10000000  # CLONE_NEWUSER: unprivileged graders can still get a netns
        check(libc.unshare(flags), "unshare")
        if cfg.get("mountns"):
            mount("none", "/", None, MS_REC | MS_PRIVATE)
            cwd_fd = os.open(cwd, os.O_PATH)
            tmp_opts = f"size={cfg['tmpfs_bytes']},mode=1777"
            # e.g. /root hidden, private /tmp; the interpreter's dirs under them are bound back
            hidden = [(d, keep, "size=1m,mode=0755") for d, keep in cfg["hide"]]
            hidden += [(d, keep, tmp_opts) for d, keep in cfg["private_tmp"]]
            for d, keep, opts in hidden:
                keep_fds = [(p, os.open(p, os.O_PATH)) for p in keep]
                mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, opts)
                for path, fd in keep_fds:
                    os.makedirs(path, exist_ok=True)
                    mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
                    os.close(fd)
            # The working dir lived under one of those; bind it back at the same path.
            os.makedirs(cwd, exist_ok=True)
            mount(f"/proc/self/fd/{cwd_fd}", cwd, None, MS_BIND)
            os.close(cwd_fd)
    os.chdir(cwd)

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
    if cfg.get("no_new_privs"):
        import ctypes
        if ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            fail("no_new_privs", OSError(ctypes.get_errno(), "prctl"))
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
    """Which layers this machine gives the sandbox; see describe_isolation().

    `fresh_root` is the strongest setup and implies new mount, PID, IPC, UTS and network namespaces,
    a tmpfs root with read-only binds of the interpreter, system libraries and runtime packages only,
    and no_new_privs. Without it (no root, or a kernel that refuses), the older layers below are used:
    a network namespace, a mount namespace that hides /root and gives private temp dirs.
    """

    root: bool
    drop_uid: bool
    cgroup_pids: str | None  # parent dir under which per-run pids cgroups are made
    cgroup_cpu: str | None  # parent dir for per-run CPU-accounting cgroups (v1 cpuacct or v2)
    cgroup_memory: str | None  # parent dir for per-run memory cgroups (v1 memory or v2)
    netns: bool
    userns: bool  # netns obtained through a user namespace (unprivileged grader)
    mountns: bool
    preimport: bool  # fallback: the dropped uid cannot read the interpreter's files
    hide: tuple[tuple[str, tuple[str, ...]], ...]
    private_tmp: tuple[tuple[str, tuple[str, ...]], ...]
    fresh_root: bool = False
    no_new_privs: bool = False
    layout: RootLayout | None = None  # what the fresh root holds
    missing_runtime: tuple[str, ...] = ()  # declared runtime packages not installed here

    def active(self) -> set[str]:
        """Names of the active layers, as EVILMOE_SANDBOX_REQUIRE spells them."""
        names = {"rlimits"}
        for name, on in (("uid", self.drop_uid), ("pids_cgroup", self.cgroup_pids), ("cpu_cgroup", self.cgroup_cpu),
                         ("memory_cgroup", self.cgroup_memory), ("netns", self.netns), ("mountns", self.mountns or self.fresh_root),
                         ("fresh_root", self.fresh_root), ("pidns", self.fresh_root), ("ipcns", self.fresh_root),
                         ("no_new_privs", self.no_new_privs)):  # fmt: skip
            if on:
                names.add(name)
        return names

    def layers(self) -> list[str]:
        out = ["new session + process-group kill", "rlimits (cpu, as, fsize, nofile, nproc, core)", "scrubbed env"]
        if self.drop_uid:
            out.append("unique unprivileged uid per run")
        if self.no_new_privs:
            out.append("no_new_privs")
        if self.cgroup_pids:
            out.append(f"pids cgroup ({self.cgroup_pids})")
        if self.cgroup_cpu:
            out.append(f"group CPU budget via cgroup ({self.cgroup_cpu})")
        if self.cgroup_memory:
            out.append(f"memory cgroup per run ({self.cgroup_memory})")
        if self.fresh_root and self.layout:
            out.append("fresh root: new mount, PID (own /proc), IPC, UTS and network namespaces; tmpfs root with "
                       f"read-only {', '.join(self.layout.binds)}; runtime packages {', '.join(RUNTIME_PACKAGES)} only; "
                       "size-capped /tmp (cwd) and /dev/shm")
        else:
            out.append("fresh temp cwd")
            if self.netns:
                out.append("network namespace" + (" (via user namespace)" if self.userns else ""))
            if self.mountns:
                out.append("mount namespace (private " + ", ".join(d for d, _ in self.private_tmp) + "; hidden "
                           + ", ".join(h for h, _ in self.hide) + ")")
        if self.preimport:
            out.append("stdlib pre-imported before uid drop (interpreter unreadable to the uid)")
        if self.missing_runtime:
            out.append(f"MISSING runtime packages: {', '.join(self.missing_runtime)} (pip install them)")
        return out


# Packages graded code may import besides the standard library: what the LeetCode reference solutions
# import (tests/test_env_problems.py keeps this in step with the data and with pyproject.toml).
RUNTIME_PACKAGES = ("sortedcontainers", "numpy")

# Layers a user may demand (EVILMOE_SANDBOX_REQUIRE=name,name,... or "all"); a missing one is an error.
LAYER_NAMES = ("uid", "no_new_privs", "pids_cgroup", "cpu_cgroup", "memory_cgroup", "netns", "mountns",
               "fresh_root", "pidns", "ipcns")  # fmt: skip


@dataclass(frozen=True)
class RootLayout:
    """What a fresh root is built from (host paths, bound read-only at the same path)."""

    links: tuple[tuple[str, str], ...]  # (path, symlink target), e.g. /lib -> usr/lib
    binds: tuple[str, ...]  # directories and files bound read-only
    masks: tuple[str, ...]  # package dirs inside the binds, covered by an empty tmpfs
    runtime: tuple[str, ...]  # top-level entries of the runtime packages, bound into RUNTIME_DIR
    pivot_root_nr: int


RUNTIME_DIR = "/evilmoe-runtime"  # where the runtime packages appear inside the fresh root
SANDBOX_CWD = "/tmp/work"  # the graded program's cwd (and HOME) inside the fresh root
_PIVOT_ROOT_NR = {"x86_64": 155, "aarch64": 41}


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


class MissingLayerError(UserError):
    """A sandbox layer the user asked for (EVILMOE_SANDBOX_REQUIRE) is not available here."""


def required_layers() -> set[str]:
    """The layers EVILMOE_SANDBOX_REQUIRE names ("all" = every layer in LAYER_NAMES)."""
    raw = os.environ.get("EVILMOE_SANDBOX_REQUIRE", "").strip()
    if not raw:
        return set()
    names = set(LAYER_NAMES) if raw == "all" else {n.strip() for n in raw.split(",") if n.strip()}
    unknown = names - set(LAYER_NAMES)
    if unknown:
        raise MissingLayerError(f"EVILMOE_SANDBOX_REQUIRE names unknown layers {sorted(unknown)}; known: {', '.join(LAYER_NAMES)}")
    return names


def check_required_layers() -> None:
    """Raise MissingLayerError when a required layer is not active (never a silent downgrade)."""
    missing = required_layers() - isolation().active()
    if missing:
        raise MissingLayerError(
            f"sandbox layers required by EVILMOE_SANDBOX_REQUIRE are not available on this machine: {', '.join(sorted(missing))} "
            f"(active: {describe_isolation()}); run as root on a kernel with namespaces and cgroups, or unset the variable"
        )


def _detect() -> Isolation:
    root = os.geteuid() == 0
    layout, missing = _root_layout()
    no_new_privs = _probe_ns({"no_new_privs": True})
    fresh_root = root and layout.pivot_root_nr > 0 and _probe_ns({"fresh_root": True, "no_new_privs": no_new_privs}, layout)
    hide = _hidden_dirs() if root and not fresh_root else ()
    private_tmp = tuple((d, _keep_under(d)) for d in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(d)) if not fresh_root else ()
    netns, userns, mountns = fresh_root, False, False
    if not fresh_root:
        netns = _probe_ns({"netns": True})
        if not netns and not root:
            userns = netns = _probe_ns({"netns": True, "userns": True})
        mountns = root and _probe_ns({"mountns": True, "hide": hide, "private_tmp": private_tmp})
    preimport = root and not (mountns or fresh_root) and not _readable_by_others(Path(sys.base_prefix))
    return Isolation(
        root=root,
        drop_uid=root,
        cgroup_pids=_find_cgroup_base("pids", "pids.max") if root else None,
        cgroup_cpu=_find_cgroup_base("cpuacct", "cpuacct.usage") if root else None,
        cgroup_memory=_find_cgroup_base("memory", "memory.limit_in_bytes") if root else None,
        netns=netns,
        userns=userns,
        mountns=mountns,
        preimport=preimport,
        hide=hide if mountns else (),
        private_tmp=private_tmp if mountns else (),
        fresh_root=fresh_root,
        no_new_privs=no_new_privs,
        layout=layout if fresh_root else None,
        missing_runtime=missing,
    )


def _outermost(paths: list[str]) -> list[str]:
    paths = sorted(set(paths))
    return [p for p in paths if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths)]


def _root_layout() -> tuple[RootLayout, tuple[str, ...]]:
    """The fresh root's contents on this machine, and the runtime packages that are not installed."""
    links, binds = [], []
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr"):
        if os.path.islink(top):
            links.append((top, os.readlink(top)))
        elif os.path.isdir(top):
            binds.append(top)
    # The interpreter's own tree (pyenv, conda, a venv's base) when it lives outside /usr.
    binds += [os.path.realpath(p) for p in (sys.base_prefix, sys.prefix)]
    binds.append(os.path.dirname(os.path.realpath(sys.executable)))
    for f in ("/etc/ld.so.cache", "/etc/localtime"):
        if os.path.islink(f):
            links.append((f, os.readlink(f)))
        elif os.path.isfile(f):
            binds.append(f)
    binds = _outermost(binds)
    masks = set(_site_dirs())
    for pattern in ("/usr/lib/python3*/site-packages", "/usr/lib/python3*/dist-packages",
                    "/usr/local/lib/python3*/site-packages", "/usr/local/lib/python3*/dist-packages",
                    f"{sys.base_prefix}/lib/python3*/site-packages", f"{sys.prefix}/lib/python3*/site-packages"):  # fmt: skip
        masks.update(glob.glob(pattern))
    masks = {os.path.realpath(m) for m in masks if os.path.isdir(m)}
    masks = sorted(m for m in masks if any(m.startswith(b.rstrip("/") + "/") for b in binds))
    runtime, missing = [], []
    for name in RUNTIME_PACKAGES:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
            continue
        tops = {str(f).split("/")[0] for f in (dist.files or ()) if not str(f).startswith("..")}
        runtime += [str(dist.locate_file(t)) for t in sorted(tops) if os.path.exists(dist.locate_file(t))]
    nr = _PIVOT_ROOT_NR.get(platform.machine(), 0)
    return RootLayout(tuple(links), tuple(binds), tuple(masks), tuple(runtime), nr), tuple(missing)


def _keep_under(d: str) -> tuple[str, ...]:
    """Interpreter dirs under a dir the older mount-namespace layer covers (a venv under /tmp)."""
    return tuple(_outermost([p for p in _interpreter_dirs() if p.startswith(d + "/")]))


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


_V2_FILES = {"pids.max": "pids.max", "cpuacct.usage": "cpu.stat", "memory.limit_in_bytes": "memory.max"}


def _find_cgroup_base(controller: str, probe_file: str) -> str | None:
    """A cgroup directory we can create per-run children in: cgroup v1 `controller`, else v2."""
    candidates = [(f"/sys/fs/cgroup/{controller}", probe_file)]
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if v2.exists() and (controller not in ("pids", "memory") or controller in v2.read_text().split()):
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


def _probe_ns(cfg_extra: dict, layout: RootLayout | None = None) -> bool:
    """Does the prologue's namespace setup work here? (One throwaway child.)"""
    workdir = tempfile.mkdtemp(prefix="evilmoe-probe-")
    ctl_r, ctl_w = os.pipe()
    try:
        cfg = _child_config(DEFAULT_LIMITS, workdir, uid=None, cgroups=[], iso=None) | cfg_extra
        cfg.setdefault("hide", [])
        cfg.setdefault("private_tmp", [])
        if cfg.get("fresh_root"):
            assert layout is not None
            cfg.update(_fresh_root_config(layout, workdir, ctl_w, ()))
        proc = subprocess.run(
            _command(PROLOGUE + "\nimport os\nprint('ok' if os.getpid() == 2 or not " + repr(bool(cfg.get("fresh_root"))) + " else 'pid')\n", cfg),
            cwd=workdir,
            env=_scrubbed_env(cfg["cwd"]),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            start_new_session=True,
            pass_fds=(ctl_w,),
        )
        return proc.returncode == 0 and proc.stdout.strip() == b"ok"
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        os.close(ctl_r)
        os.close(ctl_w)
        _remove_tree(workdir)


def _fresh_root_config(layout: RootLayout, workdir: str, control_fd: int, collect: tuple[str, ...]) -> dict:
    """The child config of a fresh-root run: `workdir` (an empty host dir) becomes the root's mount point."""
    return {
        "fresh_root": True,
        "root": workdir,
        "cwd": SANDBOX_CWD,
        "links": [list(x) for x in layout.links],
        "binds": list(layout.binds),
        "masks": list(layout.masks),
        "runtime": list(layout.runtime),
        "runtime_dir": RUNTIME_DIR,
        "site_dirs": [RUNTIME_DIR],
        "pivot_root_nr": layout.pivot_root_nr,
        "control_fd": control_fd,
        "collect": list(collect),
    }


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
            private_tmp=[list(t) for t in iso.private_tmp],
            preimport=list(PREIMPORT) if iso.preimport else [],
            no_new_privs=iso.no_new_privs,
        )
    return cfg


def run_python(
    program: str,
    *,
    stdin: bytes | Callable[[int], bytes] = b"",
    limits: Limits = DEFAULT_LIMITS,
    collect_files: tuple[str, ...] = (),
    on_result_line: Callable[[bytes], bool | None] | None = None,
    result_line_limit: Callable[[], int] | None = None,
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
    `limits.result_bytes` are read from it; an unfinished line longer than `result_line_limit()` is
    passed on as it is (so the callback can fail it without waiting for the rest).
    """
    iso = isolation()
    uid = _claim_uid() if iso.drop_uid else None
    workdir = tempfile.mkdtemp(prefix="evilmoe-run-")
    fds: list[int] = []  # every pipe end this call opened, closed at the end
    readers: list[_LineReader] = []
    control_lines: list[bytes] = []
    groups = _RunCgroups()
    started = time.monotonic()
    try:
        groups.create(iso, limits)
        cfg = _child_config(limits, workdir, uid=uid, cgroups=groups.paths(), iso=iso)
        child_fds: list[int] = []
        if on_result_line is not None:
            result_r, result_w = os.pipe()
            fds += [result_r, result_w]
            child_fds.append(result_w)
            cfg["result_fd"] = result_w
            readers.append(_LineReader(result_r, on_result_line, limits.result_bytes, stops_run=True,
                                       line_limit=result_line_limit))
        if iso.fresh_root and iso.layout is not None:
            # The host workdir is only the new root's mount point; the program's cwd is a tmpfs inside.
            control_r, control_w = os.pipe()
            fds += [control_r, control_w]
            child_fds.append(control_w)
            cfg.update(_fresh_root_config(iso.layout, workdir, control_w, collect_files))
            readers.append(_LineReader(control_r, control_lines.append, 1 << 20, stops_run=False))
        else:
            if uid is not None:
                os.chown(workdir, uid, uid)
            os.chmod(workdir, 0o700)
        proc = subprocess.Popen(
            _command(PROLOGUE + "\n" + program, cfg),
            cwd=workdir,
            env=_scrubbed_env(cfg["cwd"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            pass_fds=tuple(child_fds),
        )
        for fd in child_fds:  # the child holds the only write ends now
            os.close(fd)
            fds.remove(fd)
        if callable(stdin):
            stdin = stdin(cfg.get("result_fd", -1))
        if iso.fresh_root and uid is not None:
            # Kill only the program's processes (its uid): the namespace's init then reports and exits.
            def end_program() -> None:
                _kill_uid(uid)
        else:
            def end_program() -> None:
                _kill_everything(proc, groups.pids, uid)
        try:
            out, err, timed_out, overflow, over_budget = _communicate(proc, stdin, limits, started, groups, readers,
                                                                      end_program)
        finally:
            _kill_everything(proc, groups.pids, uid)
        returncode, cpu = _reap(proc)
        files: dict[str, bytes] = {}
        report = _control_report(control_lines)
        if report is not None:  # fresh root: the namespace's init saw the program's own exit status
            returncode = report["returncode"]
            files = report["files"]
        elif not iso.fresh_root:
            files = {name: data for name in collect_files if (data := _read_regular_file(workdir, name)) is not None}
        cpu = max(cpu, groups.cpu_seconds())  # the whole tree's CPU when a cpuacct cgroup exists
        killed_by_us = timed_out or overflow or any(r.stopped for r in readers)
        cpu_limited = over_budget or returncode == -signal.SIGXCPU or (
            returncode == -signal.SIGKILL and not killed_by_us and cpu >= limits.cpu_seconds
        )
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
            stopped_early=any(r.stopped and r.stops_run for r in readers),
        )
    finally:
        for fd in fds:
            os.close(fd)
        groups.remove()
        if uid is not None and not (iso.mountns or iso.fresh_root):
            _sweep_shared_tmp(uid)  # no private /tmp: remove what the uid left in world-writable dirs
        _remove_tree(workdir)
        if uid is not None:
            _release_uid(uid)


def _control_report(lines: list[bytes]) -> dict | None:
    """The fresh root's init report: {"returncode": int, "files": {name: bytes}} (None if absent).

    Only the init (root, outside the program's reach: it closed its copy of the pipe before the
    program started) writes this pipe, so the report is trusted.
    """
    if len(lines) != 1:
        return None
    try:
        raw = json.loads(lines[0])
        return {"returncode": int(raw["returncode"]), "files": {str(k): bytes.fromhex(v) for k, v in raw["files"].items()}}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class _LineReader:
    """The parent's end of a line pipe (results, or the init's report): lines go to a callback as
    they arrive, bounded in bytes."""

    def __init__(self, fd: int, on_line: Callable[[bytes], bool | None], limit: int, *, stops_run: bool,
                 line_limit: Callable[[], int] | None = None):
        self.fd, self.on_line, self.limit, self.stops_run = fd, on_line, limit, stops_run
        self.line_limit = line_limit  # an unfinished line longer than this goes to on_line as it is
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
            if not self.stopped and self.line_limit is not None and len(self.buffer) > self.line_limit():
                if self.on_line(bytes(self.buffer)) is False:  # too long to be right: judge it now
                    self.stopped = True
                self.buffer.clear()


def _communicate(
    proc: subprocess.Popen, stdin: bytes, limits: Limits, started: float, groups: _RunCgroups,
    readers: list[_LineReader], end_program: Callable[[], None],
) -> tuple[bytes, bytes, bool, bool, bool]:
    """Feed stdin and drain stdout/stderr without ever holding more than output_bytes per stream.

    Stops at EOF on every stream, at the wall-clock backstop, when a stream overflows, when the
    process tree used its CPU budget, when a line reader says stop, or shortly after the main child
    exited while a descendant still holds the pipes open.
    Returns (stdout, stderr, timed_out, overflow, over_cpu_budget).
    """
    deadline = started + limits.wall_backstop()
    chunks: dict[int, list[bytes]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    sizes = dict.fromkeys(chunks, 0)
    by_fd = {r.fd: r for r in readers}
    timed_out = overflow = over_budget = stopped = False
    pending = memoryview(stdin)
    exit_grace_until: float | None = None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        for r in readers:
            sel.register(r.fd, selectors.EVENT_READ)
        if pending:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        stdin_fd = proc.stdin.fileno() if not proc.stdin.closed else -1
        while any(fd != stdin_fd for fd in sel.get_map()):
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
                if key.fd == stdin_fd:
                    try:
                        written = os.write(stdin_fd, pending[:65536])
                        pending = pending[written:]
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:  # child closed its stdin: it does not want the rest
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                if key.fd in by_fd:
                    reader = by_fd[key.fd]
                    reader.read()
                    if reader.eof or reader.stopped:
                        sel.unregister(key.fd)
                    stopped = stopped or (reader.stopped and reader.stops_run)
                    continue
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fd)
                    continue
                room = limits.output_bytes - sizes[key.fd]
                chunks[key.fd].append(data[:room])
                sizes[key.fd] += len(data)
                if sizes[key.fd] > limits.output_bytes:
                    overflow = True
            if overflow or stopped:
                break
    if timed_out or overflow or over_budget or stopped:
        end_program()  # then read what the run wrote before its end (and, in a fresh root, the init's report)
        _drain(proc, chunks, sizes, limits.output_bytes, [r for r in readers if not r.stopped])
    for r in readers:
        if not r.stopped:
            r.read()  # whatever arrived between the last poll and the exit
    # Both streams closed but the child may live on (it closed fds 1 and 2 itself): wait for its exit
    # under the same bounds instead of killing it early (its exit status can matter to the grader).
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
    for r in readers:
        if not r.stopped:
            r.read()
    if not proc.stdin.closed:
        proc.stdin.close()
    out = b"".join(chunks[proc.stdout.fileno()])
    err = b"".join(chunks[proc.stderr.fileno()])
    proc.stdout.close()
    proc.stderr.close()
    return out, err, timed_out, overflow, over_budget


def _drain(proc: subprocess.Popen, chunks: dict[int, list[bytes]], sizes: dict[int, int], cap: int,
           readers: list[_LineReader], timeout: float = 1.0) -> None:
    """After the program was ended: read what is left in stdout/stderr (bounded) and the line pipes,
    until every stream is closed or `timeout` passes."""
    deadline = time.monotonic() + timeout
    by_fd = {r.fd: r for r in readers}
    with selectors.DefaultSelector() as sel:
        for fd in (proc.stdout.fileno(), proc.stderr.fileno(), *by_fd):
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map() and (now := time.monotonic()) < deadline:
            for key, _ in sel.select(timeout=deadline - now):
                if key.fd in by_fd:
                    by_fd[key.fd].read()
                    if by_fd[key.fd].eof or by_fd[key.fd].stopped:
                        sel.unregister(key.fd)
                    continue
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fd)
                    continue
                if sizes[key.fd] < cap:
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
    """The per-run cgroups: pids.max (fork bombs), CPU accounting of the whole tree, a memory limit."""

    def __init__(self) -> None:
        self.pids: str | None = None
        self.cpu: str | None = None
        self.memory: str | None = None
        self._cpu_file: str | None = None

    def create(self, iso: Isolation, limits: Limits) -> None:
        name = f"evilmoe-{os.getpid()}-{random.SystemRandom().randrange(1 << 40):x}"
        if iso.cgroup_pids:
            self.pids = os.path.join(iso.cgroup_pids, name)
            os.mkdir(self.pids)
            Path(self.pids, "pids.max").write_text(str(limits.processes))
        if iso.cgroup_cpu:
            self.cpu = os.path.join(iso.cgroup_cpu, name)
            if self.cpu != self.pids:
                os.mkdir(self.cpu)
            v1 = os.path.join(self.cpu, "cpuacct.usage")
            self._cpu_file = v1 if os.path.exists(v1) else os.path.join(self.cpu, "cpu.stat")
        if iso.cgroup_memory:
            self.memory = os.path.join(iso.cgroup_memory, name)
            if self.memory not in (self.pids, self.cpu):
                os.mkdir(self.memory)
            # The whole tree's memory (tmpfs pages included), on top of each process's RLIMIT_AS.
            v1 = Path(self.memory, "memory.limit_in_bytes")
            (v1 if v1.exists() else Path(self.memory, "memory.max")).write_text(str(limits.memory_bytes))

    def paths(self) -> list[str]:
        return sorted({p for p in (self.pids, self.cpu, self.memory) if p})

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
