"""The engine's process confines itself: no_new_privs, Landlock, seccomp (rootlessnet/ns/confine.py).

The mechanics run in forked children of the test (confinement is for life);
the policy runs in real instances, whose launcher is inspected from outside
(/proc/PID/status, GET /v1/info) and probed from inside through the
ROOTLESSNET_SANDBOX_PROBE hook. Every other CLI-started instance of the suite
runs confined too: --sandbox=auto is the default of `rootlessnet run`.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rootlessnet.ns import confine as cf
from tests.integration.conftest import one_line_error, requires_userns, rn, rn_popen, wait_for
from tests.integration.test_slirp4netns import ECHO_CLIENT, api_call, free_port, needs_tools
from tests.integration.test_slirp4netns import servers, slirps, target  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration]

ARCH = cf.native_arch()
ABI, _WHY = cf.landlock_abi()
needs_kernel = pytest.mark.skipif(ARCH is None or ABI < 1,
                                  reason=f"needs x86_64/aarch64 and Landlock: {_WHY or 'no seccomp table'}")


def status(pid: int | str = "self") -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def in_child(fn, timeout: float = 30) -> dict:
    """Fork; the child runs fn() (and may confine itself), sends back its JSON result and exits."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            try:
                data = json.dumps(fn()).encode()
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                data = json.dumps({"exception": f"{type(e).__name__}: {e}"}).encode()
            os.write(w, data)
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    assert data, "the child sent nothing"
    out = json.loads(data)
    assert "exception" not in out, out["exception"]
    return out


def err(fn) -> str:
    """'ok' or the errno name of what fn raised."""
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, str(e.errno))


def _write(path: Path) -> None:
    with open(path, "w") as f:
        f.write("x")


# -- the mechanics, in forked children ---------------------------------------------------------

@needs_kernel
def test_confined_child_writes_only_its_state_dir_and_cannot_exec(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    outside = tmp_path / "outside"
    outside.write_text("keep")
    pcap = tmp_path / "cap.pcap"
    pcap.write_text("")

    def body():
        rep = cf.confine(cf.Policy(writable_dirs=[str(state)], writable_files=[str(pcap)],
                                   remove_dirs_in=[str(tmp_path)], landlock="true", seccomp="true"))
        res = {"report": rep.as_dict(), "summary": rep.summary()}
        # allowed: everything beneath the state dir, the pcap file, reading anywhere, sockets
        res["state"] = err(lambda: (_write(state / "a"), os.rename(state / "a", state / "b"), os.mkdir(state / "d"),
                                    os.symlink("b", state / "l"), os.unlink(state / "l"), os.rmdir(state / "d"),
                                    os.unlink(state / "b")))
        res["pcap"] = err(lambda: _write(pcap))
        res["read"] = err(lambda: open("/etc/hostname").read())
        res["listen"] = err(lambda: socket.create_server(("127.0.0.1", 0)).close())
        res["thread"] = err(lambda: [t.start() or t.join() for t in [threading.Thread(target=lambda: None)]])
        # refused: writing, creating, removing, renaming, linking outside; exec anywhere
        res["create"] = err(lambda: _write(tmp_path / "new"))
        res["overwrite"] = err(lambda: _write(outside))
        res["truncate"] = err(lambda: os.truncate(outside, 0))
        res["unlink"] = err(lambda: os.unlink(outside))
        res["mkdir"] = err(lambda: os.mkdir(tmp_path / "newdir"))
        res["rename_out"] = err(lambda: os.rename(pcap, state / "moved"))
        res["link_out"] = err(lambda: os.link(outside, state / "linked"))
        res["chmod"] = err(lambda: os.chmod(outside, 0o666))
        res["exec"] = err(lambda: os.execv("/bin/true", ["true"]))
        res["status"] = status()
        # and last, as at exit: the state dir itself goes (rmdir in its parent only)
        res["rmdir_state"] = err(lambda: os.rmdir(state))
        return res

    res = in_child(body)
    assert res["report"]["landlock"] == "on" and res["report"]["seccomp"] == "on", res["report"]
    assert res["report"]["landlockABI"] == ABI and res["report"]["noNewPrivs"]
    for key in ("state", "pcap", "read", "listen", "thread", "rmdir_state"):
        assert res[key] == "ok", (key, res[key])
    for key in ("create", "overwrite", "truncate", "unlink", "mkdir"):
        assert res[key] == "EACCES", (key, res[key])  # Landlock
    assert res["rename_out"] in ("EXDEV", "EACCES") and res["link_out"] in ("EXDEV", "EACCES")
    assert res["chmod"] == "EPERM" and res["exec"] == "EPERM"  # seccomp
    assert res["status"]["NoNewPrivs"] == "1" and res["status"]["Seccomp"] == "2"
    assert outside.read_text() == "keep" and pcap.read_text() == "x" and not (tmp_path / "new").exists()
    assert not state.exists()


@needs_kernel
def test_landlock_alone_refuses_exec(tmp_path):
    def body():
        rep = cf.confine(cf.Policy(writable_dirs=[str(tmp_path)], landlock="true", seccomp="false"))
        return {"seccomp": rep.seccomp, "exec": err(lambda: os.execv("/bin/true", ["true"])),
                "write": err(lambda: _write(tmp_path / "in")), "Seccomp": status()["Seccomp"]}

    res = in_child(body)
    assert res == {"seccomp": "off", "exec": "EACCES", "write": "ok", "Seccomp": "0"}


# Calls whose answer without the filter is not EPERM for an unprivileged user (the kernel
# checks their arguments first): the filter is what refuses them in a confined child.
# Those the kernel refuses an unprivileged caller anyway (mount, pivot_root, fsopen,
# userfaultfd by default, ...) are checked on the program itself, below.
BATTERY = {
    "execve": lambda: cf.call("execve", b"/nonexistent", None, None),
    "execveat": lambda: cf.call("execveat", -1, b"", None, None, 0),
    "unshare": lambda: cf.call("unshare", 0x10000000),  # CLONE_NEWUSER: allowed unconfined
    "setns": lambda: cf.call("setns", -1, 0),
    "chroot": lambda: cf.call("chroot", b"/nonexistent"),
    "ptrace": lambda: cf.call("ptrace", 0x4206, 0, 0, 0),  # PTRACE_SEIZE of pid 0
    "process_vm_readv": lambda: cf.call("process_vm_readv", 0, None, 0, None, 0, 0),
    "keyctl": lambda: cf.call("keyctl", 0x7FFFFFFF),
    "add_key": lambda: cf.call("add_key", None, None, None, 0, 0),
    "request_key": lambda: cf.call("request_key", None, None, None, 0),
    "kcmp": lambda: cf.call("kcmp", 0, 0, 99, 0, 0),
    "pidfd_getfd": lambda: cf.call("pidfd_getfd", -1, 0, 0),
    "fchmodat": lambda: cf.call("fchmodat", -100, b"/nonexistent", 0o644, 0),
    "fchownat": lambda: cf.call("fchownat", -100, b"/nonexistent", 0, 0, 0),
    "utimensat": lambda: cf.call("utimensat", -1, None, None, 0x7FFF),
    "fsetxattr": lambda: cf.call("fsetxattr", -1, b"user.x", b"", 0, 0),
    "name_to_handle_at": lambda: cf.call("name_to_handle_at", -1, b"/nonexistent", None, None, 0),
}


@needs_kernel
def test_seccomp_filter_answers_eperm_where_the_kernel_would_not(tmp_path):
    def run_battery(confine: bool):
        def body():
            if confine:
                cf.confine(cf.Policy(landlock="false", seccomp="true"))
            # first: after the battery's unshare(CLONE_NEWUSER) our ids are unmapped
            out = {"clone_newuser": err(lambda: _clone_and_exit(0x10000000)), "fork": err(lambda: _clone_and_exit(0))}
            out.update({name: err(fn) for name, fn in BATTERY.items()})
            if ARCH == "x86_64":  # an x32 getpid: ENOSYS where x32 is off, a pid where it is on
                out["x32"] = err(lambda: _raw(0x40000000 | 39))
            return out
        return in_child(body)

    free, confined = run_battery(False), run_battery(True)
    for name, answer in free.items():
        if name != "fork":
            assert answer != "EPERM", f"{name} is refused even without the filter: the test proves nothing"
        assert confined[name] == ("ok" if name == "fork" else "EPERM"), (name, confined[name])


def _raw(nr: int) -> None:
    r = cf._syscall(nr)
    if r < 0:
        raise OSError(-r, os.strerror(-r))


def _clone_and_exit(flags: int) -> None:
    """clone(flags|SIGCHLD) as fork: the new process exits at once; raises OSError if refused."""
    nr = cf.SYSCALLS[ARCH]["clone"]
    pid = cf._syscall(nr, flags | signal.SIGCHLD, 0, 0, 0, 0)
    if pid == 0:  # pragma: no cover - the clone
        os._exit(0)
    if pid < 0:
        raise OSError(-pid, os.strerror(-pid))
    os.waitpid(pid, 0)


@needs_kernel
def test_threads_the_seccomp_filter_reaches_and_landlock_may_not(tmp_path):
    def body():
        stop = threading.Event()
        t = threading.Thread(target=stop.wait, args=(30,))
        t.start()
        try:
            out = {}
            try:
                cf.confine(cf.Policy(writable_dirs=[str(tmp_path)], landlock="true", seccomp="false"))
                out["strict"] = "applied"
            except cf.ConfineError as e:
                out["strict"] = str(e)
            rep = cf.confine(cf.Policy(writable_dirs=[str(tmp_path)], landlock="auto", seccomp="true"))
            out["threads"] = rep.landlock_threads
            out["notes"] = rep.notes
            out["other_seccomp"] = status(f"{os.getpid()}/task/{t.native_id}")["Seccomp"]
            return out
        finally:
            stop.set()
            t.join()

    res = in_child(body)
    assert res["other_seccomp"] == "2"  # TSYNC
    if ABI >= 8:  # LANDLOCK_RESTRICT_SELF_TSYNC
        assert res["strict"] == "applied" and res["threads"] == "all"
    else:
        assert "restricts only the calling thread" in res["strict"] and "1 other thread" in res["strict"]
        assert res["threads"] == "this thread" and "1 other thread(s) stay unrestricted" in res["notes"][0]


def test_modes_and_errors(tmp_path):
    missing = str(tmp_path / "missing")

    def body():
        out = {}
        try:
            cf.confine(cf.Policy(writable_dirs=[missing], landlock="true", seccomp="false"))
            out["strict"] = "applied"
        except cf.ConfineError as e:
            out["strict"] = str(e)
        rep = cf.confine(cf.Policy(writable_dirs=[missing], landlock="auto", seccomp="false"))
        out["auto"] = rep.as_dict()
        out["write"] = err(lambda: _write(tmp_path / "still-writable"))
        out["none"] = cf.confine(cf.Policy(landlock="false", seccomp="false")).summary()
        return out

    res = in_child(body)
    if ABI >= 1:
        assert res["strict"] == f"filesystem confinement: {missing}: No such file or directory"
        assert res["auto"]["landlock"] == "skipped" and missing in res["auto"]["notes"][0]
    else:
        assert res["strict"].startswith("filesystem confinement: ") and res["auto"]["landlock"] == "skipped"
    assert res["auto"]["noNewPrivs"] and res["write"] == "ok" and res["none"] == "not confined"
    with pytest.raises(ValueError, match="use one of auto, true, false"):
        cf.confine(cf.Policy(landlock="yes"))


def test_landlock_rights_follow_the_abi():
    assert cf.handled_rights(0) == 0
    assert cf.handled_rights(1) & cf.FS_REFER == 0 and cf.handled_rights(1) & cf.FS_EXECUTE
    assert cf.handled_rights(2) & cf.FS_REFER and not cf.handled_rights(2) & cf.FS_TRUNCATE
    assert cf.handled_rights(4) & cf.FS_TRUNCATE and not cf.handled_rights(4) & cf.FS_IOCTL_DEV
    for abi in range(1, 10):  # reading is never handled: Python imports lazily
        assert not cf.handled_rights(abi) & (cf.FS_READ_FILE | cf.FS_READ_DIR)


# -- the filter program, on a BPF interpreter (both architectures, foreign ABIs) ----------------

AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_ARM = 0x40000028
ALLOWED = {"x86_64": {"read": 0, "write": 1, "epoll_wait": 232, "splice": 275, "sendmsg": 46, "getpid": 39},
           "aarch64": {"read": 63, "write": 64, "epoll_pwait": 22, "splice": 76, "sendmsg": 211, "getpid": 172}}


def bpf_run(program, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Run a classic-BPF seccomp program on one struct seccomp_data; its return value."""
    import struct

    args = tuple(args) + (0,) * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, arch, 0, *args)
    acc, pc = 0, 0
    for _ in range(len(program) + 1):
        code, jt, jf, k = program[pc]
        if code == cf.BPF_LD_W_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code == cf.BPF_RET_K:
            return k
        elif code in (cf.BPF_JEQ_K, cf.BPF_JGE_K, cf.BPF_JSET_K):
            hit = {cf.BPF_JEQ_K: acc == k, cf.BPF_JGE_K: acc >= k, cf.BPF_JSET_K: bool(acc & k)}[code]
            pc += 1 + (jt if hit else jf)
        else:
            raise AssertionError(f"unexpected BPF op {code:#x}")
    raise AssertionError("the program did not return")


EPERM = cf.SECCOMP_RET_ERRNO | errno.EPERM


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_filter_program(arch):
    prog = cf.seccomp_program(arch)
    me = cf.AUDIT_ARCH[arch]
    table = cf.SYSCALLS[arch]
    denied = cf.denied_syscalls(arch)
    for required in ("mount", "umount2", "ptrace", "bpf", "keyctl", "add_key", "request_key", "init_module",
                     "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
                     "pivot_root", "chroot", "setns", "unshare", "execve", "execveat", "process_vm_readv",
                     "process_vm_writev", "perf_event_open", "userfaultfd", "open_by_handle_at", "io_uring_setup"):
        assert required in denied, required
    for name, nr in denied.items():
        assert bpf_run(prog, nr, me) == EPERM, name
    for name, nr in ALLOWED[arch].items():
        assert nr not in denied.values()
        assert bpf_run(prog, nr, me) == cf.SECCOMP_RET_ALLOW, name
        for foreign in (AUDIT_ARCH_I386, AUDIT_ARCH_ARM, cf.AUDIT_ARCH["aarch64" if arch == "x86_64" else "x86_64"]):
            assert bpf_run(prog, nr, foreign) == EPERM  # other numbering: refuse everything
    thread_flags = 0x003D0F00  # what glibc's pthread_create passes
    assert bpf_run(prog, table["clone"], me, (thread_flags,)) == cf.SECCOMP_RET_ALLOW
    assert bpf_run(prog, table["clone"], me, (0x01200011,)) == cf.SECCOMP_RET_ALLOW  # fork
    for ns in (0x10000000, 0x40000000, 0x00020000, 0x80):
        assert bpf_run(prog, table["clone"], me, (ns | 0x11,)) == EPERM
    assert bpf_run(prog, table["clone3"], me) == cf.SECCOMP_RET_ERRNO | errno.ENOSYS  # glibc falls back to clone
    assert bpf_run(prog, table["ioctl"], me, (1, cf.TIOCSTI)) == EPERM
    assert bpf_run(prog, table["ioctl"], me, (1, 0x541B)) == cf.SECCOMP_RET_ALLOW  # FIONREAD
    if arch == "x86_64":
        assert bpf_run(prog, 0x40000000 | 39, me) == EPERM  # x32
        assert bpf_run(prog, 0x40000000 | 0x200, me) == EPERM


# -- real instances ----------------------------------------------------------------------------

def launcher_of(child_pid: int) -> int:
    with open(f"/proc/{child_pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


class Running:
    """`rootlessnet run FLAGS -- sh -c COMMAND` in tmp_path, then waiting (bounded) for a release file."""

    def __init__(self, tmp_path: Path, *flags: str, command: str = "true", env: dict | None = None,
                 state: bool = True):
        self.dir = tmp_path
        self.state = tmp_path / "state" if state else None
        script = f"cd {tmp_path}; {command}\ni=0; while [ ! -e release ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done"
        where = ["--state-dir", str(self.state)] if state else []
        self.proc = rn_popen("run", *where, *flags, "--", "sh", "-c", script, env=env)
        self.launcher = self.proc.pid
        if state:
            wait_for(lambda: (self.state / "child_pid").exists() or self.proc.poll() is not None, timeout=60,
                     what="child_pid")
            assert self.proc.poll() is None, self.proc.communicate()[1]

    def release(self) -> tuple[int, str]:
        (self.dir / "release").touch()
        try:
            _out, err_text = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err_text = self.proc.communicate(timeout=30)
        return self.proc.returncode, err_text


def _read(p: Path) -> str:
    try:
        return p.read_text()
    except OSError:
        return ""


@requires_userns
@needs_kernel
def test_sandbox_true_confines_the_running_launcher(tmp_path):
    empty = tmp_path / "empty-program"
    empty.write_text("")
    empty.chmod(0o755)
    outside = tmp_path / "written-by-the-launcher"
    pcap = tmp_path / "cap.pcap"
    env = {**os.environ, "ROOTLESSNET_SANDBOX_PROBE": json.dumps({"write": str(outside), "exec": str(empty)})}
    inst = Running(tmp_path, "--sandbox=true", f"--pcap={pcap}", "--outbound=none", env=env,
                   command="busybox ping -c 1 -W 5 10.0.2.2 > ping.tmp 2>&1; echo $? >> ping.tmp; mv ping.tmp ping.out")
    state = inst.state
    try:
        assert launcher_of(int((state / "child_pid").read_text())) == inst.launcher
        st = status(inst.launcher)
        assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2" and st["Seccomp_filters"] == "1"
        # tried by the launcher itself, after it confined itself
        probed = json.loads((state / "sandbox-probe.json").read_text())
        assert probed == {"write": "EACCES", "mkdir": "EACCES", "exec": "EPERM", "unshare": "EPERM"}
        assert not outside.exists()
        info = json.loads(rn("info", "--json", "--state-dir", str(state), check=True).stdout)["sandbox"]
        assert (info["noNewPrivs"], info["landlock"], info["landlockABI"], info["seccomp"], info["seccompArch"]) == (
            True, "on", ABI, "on", ARCH)
        assert info["landlockThreads"] == "all" and info["notes"] == []
        assert "execve" in info["denied"] and "mount" in info["denied"] and "write_file" in info["handled"]
        writable = [w.split(":")[0] for w in info["writable"]]
        assert writable[0] == str(state) and str(pcap) in writable  # (and the internal-error log, if set)
        line = [l for l in rn("info", "--state-dir", str(state), check=True).stdout.splitlines() if "Sandbox" in l]
        assert line and line[0].split(None, 1)[1] == f"no_new_privs, Landlock ABI {ABI}, seccomp"
        # the engine still works: the guest pings its gateway; the frames reach the pcap file
        wait_for(lambda: (tmp_path / "ping.out").exists(), timeout=30, what="ping")
    finally:
        rc, err_text = inst.release()
    assert rc == 0, err_text
    assert _read(tmp_path / "ping.out").splitlines()[-1] == "0", _read(tmp_path / "ping.out")
    assert pcap.stat().st_size > 24  # the pcap header and frames, written while confined
    assert sorted(os.listdir(state)) == ["lock"]  # the confined launcher cleaned its state dir


@requires_userns
def test_auto_is_the_default_and_false_turns_it_off(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    port = free_port()  # a published port too: set-up must leave no thread behind
    on = Running(tmp_path / "a", "-p", f"127.0.0.1:{port}:80/tcp")
    off = Running(tmp_path / "b", "--sandbox=false")
    try:
        s_on, s_off = status(on.launcher), status(off.launcher)
        info_on, info_off = (json.loads(rn("info", "--json", "--state-dir", str(i.state), check=True).stdout)["sandbox"]
                             for i in (on, off))
        tasks = os.listdir(f"/proc/{on.launcher}/task")
        threads = len(tasks)
        per_thread = [status(f"{on.launcher}/task/{t}") for t in tasks]
    finally:
        results = [on.release(), off.release()]
    assert all(rc == 0 for rc, _ in results), results
    assert s_off["NoNewPrivs"] == "0" and s_off["Seccomp"] == "0"
    assert (info_off["noNewPrivs"], info_off["landlock"], info_off["seccomp"]) == (False, "off", "off")
    assert s_on["NoNewPrivs"] == "1" and info_on["noNewPrivs"]
    if ARCH is not None:
        assert s_on["Seccomp"] == "2" and info_on["seccomp"] == "on"
    if ABI >= 1:
        assert info_on["landlock"] == "on" and info_on["landlockThreads"] == "all" and info_on["notes"] == []
    # trio's thread and the datapath's, which starts after confinement and so inherits all of it
    assert threads == 2
    assert all(t["NoNewPrivs"] == "1" for t in per_thread)
    if ARCH is not None:
        assert all(t["Seccomp"] == "2" for t in per_thread)


@requires_userns
@needs_kernel
def test_rootlesskit_flags_pick_the_parts(tmp_path):
    inst = Running(tmp_path, "--slirp4netns-sandbox=false", "--slirp4netns-seccomp=true")
    try:
        st = status(inst.launcher)
        info = json.loads(rn("info", "--json", "--state-dir", str(inst.state), check=True).stdout)["sandbox"]
    finally:
        rc, err_text = inst.release()
    assert rc == 0, err_text
    assert st["Seccomp"] == "2" and (info["landlock"], info["seccomp"]) == ("off", "on")


@requires_userns
@needs_kernel
def test_temporary_state_dir_is_removed_by_the_confined_launcher(tmp_path):
    run = tmp_path / "xdg"
    run.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(run)}
    r = rn("run", "--sandbox=true", "--", "sh", "-c", "echo $ROOTLESSKIT_STATE_DIR", env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(f"{run}/rootlessnet-")
    assert os.listdir(run) == []


@requires_userns
def test_bad_values_are_one_line():
    for flags, value in ((["--sandbox=maybe"], "'maybe'"), (["--slirp4netns-seccomp", "on"], "'on'")):
        r = rn("run", *flags, "--", "true")
        line = one_line_error(r.stderr)
        assert r.returncode == 2 and f"unknown --{flags[0][2:].split('=')[0]} {value}: use one of auto, true, false" in line, line


def test_in_process_users_are_not_confined_unless_asked():
    from rootlessnet.instance import RunOptions

    assert RunOptions(["x"]).sandbox_modes() == ("false", "false")  # tests, the harness's trio API
    assert RunOptions(["x"], own_process=True).sandbox_modes() == ("auto", "auto")  # the CLI
    assert RunOptions(["x"], sandbox="true").sandbox_modes() == ("true", "true")
    assert RunOptions(["x"], sandbox_seccomp="true", own_process=True).sandbox_modes() == ("auto", "true")
    assert RunOptions(["x"], sandbox="false", sandbox_fs="true", own_process=True).sandbox_modes() == ("false", "false")


@requires_userns
def test_open_instance_leaves_the_calling_process_alone():
    import trio

    from rootlessnet.instance import RunOptions, open_instance

    async def main():
        async with open_instance(RunOptions(["true"], quiet=True, dns_upstream="127.0.0.1:9")) as inst:
            here = status()
            await inst.wait()
        return here, inst.info["sandbox"]

    here, info = trio.run(main)
    assert here["NoNewPrivs"] == "0" and here["Seccomp"] == "0"
    assert (info["noNewPrivs"], info["landlock"], info["seccomp"]) == (False, "off", "off")


@requires_userns
def test_harness_sandboxes_run_confined():
    from rootlessnet import Sandbox

    with Sandbox() as sb:
        launcher = launcher_of(int(Path(sb.state_dir, "child_pid").read_text()))
        st = status(launcher)
        sb.run(["true"], check=True)
    assert st["NoNewPrivs"] == "1"
    if ARCH is not None:
        assert st["Seccomp"] == "2"


@requires_userns
@needs_kernel
@needs_tools
def test_slirp4netns_front_end_confines_itself(tmp_path, target, servers, slirps, monkeypatch):
    sock = tmp_path / "s4.sock"
    s = slirps("--enable-sandbox", "--enable-seccomp", "--disable-dns", "-c", "--api-socket", str(sock),
               str(target.pid))
    assert s.ready == b"1", s.proc.communicate(timeout=10) if s.proc.poll() is not None else ""
    st = status(s.proc.pid)
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2"
    assert api_call(str(sock), {"execute": "list_hostfwd"}) == {"entries": []}
    r = target.run(sys.executable, "-c", textwrap.dedent(ECHO_CLIENT), "10.0.2.2", str(servers.echo_port))
    assert r.stdout.strip() == "hello through the engine", r  # the confined engine relays
    s.close_exit_fd()
    rc, _out, err_text = s.wait()
    assert rc == 0 and "Traceback" not in err_text, err_text
    assert not sock.exists()  # unlinked at exit: its directory allows that much
    # without the flags it confines itself too (auto); ROOTLESSNET_SANDBOX=false leaves it alone
    auto = slirps("--disable-dns", str(target.pid), "tap1")
    monkeypatch.setenv("ROOTLESSNET_SANDBOX", "false")
    plain = slirps("--disable-dns", str(target.pid), "tap2")
    assert auto.ready == b"1" and plain.ready == b"1"
    assert status(auto.proc.pid)["Seccomp"] == "2" and status(plain.proc.pid)["NoNewPrivs"] == "0"
    monkeypatch.setenv("ROOTLESSNET_SANDBOX", "maybe")
    bad = subprocess.run([sys.executable, "-m", "rootlessnet.compat.slirp4netns", str(target.pid)], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode != 0 and "ROOTLESSNET_SANDBOX='maybe': use auto, true or false" in one_line_error(bad.stderr)
