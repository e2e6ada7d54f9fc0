"""Named network namespaces inside a running instance: `rootlessnet netns add|del|list`.

A named netns is pinned by a bind mount of its nsfs file on `STATE/netns.d/NAME`,
made inside the instance's mount namespace (so it needs no root and no
/var/run/netns). From outside that mount namespace the pin is reached as
`/proc/CHILD_PID/root/STATE/netns.d/NAME`; inside (rootlessnet nsenter, runc
started there) as `STATE/netns.d/NAME`. A pinned netns lives until `del` or
until the instance stops, whatever processes join and leave it: an OCI spec
that joins it by path keeps working after the container that first used it is
gone.

The OCI hook pins each container's own netns at `STATE/cni-netns/ID` for the
container's life (so CNI DEL always gets a live netns); `list` shows those too.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from typing import Any, Callable

from rootlessnet.errors import UserError
from rootlessnet.ns import nsenter
from rootlessnet.ns import statedir as sd
from rootlessnet.ns import syscalls as sc

NETNS_D = "netns.d"
CNI_NETNS_D = "cni-netns"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise UserError(f"bad netns name {name!r}: use letters, digits, '_', '.', '-' (at most 63, not starting with '.' or '-')")
    return name


def pin_path(state_dir: str, name: str) -> str:
    """Where the named netns is pinned (inside the instance's mount namespace)."""
    return os.path.join(os.path.abspath(state_dir), NETNS_D, name)


# -- running code inside the instance (forked child, result back as JSON)

def in_instance(state_dir: str, fn: Callable[[], Any], *, netns_path: str | None = None, timeout: float = 60.0) -> Any:
    """Run `fn` in a forked child that joined the instance's user + mount
    namespaces (and `netns_path`, a path as seen there, when given); return
    its JSON-able result. A UserError in the child is raised here."""
    sd.read_child_pid(state_dir)  # a clear error when the instance is not running
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        out: dict[str, Any]
        try:
            early = None
            if netns_path is not None and netns_path.startswith("/proc/"):
                early = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)  # a host-side path: open it before entering
            pid_fd = nsenter.enter(state_dir, net=False)
            if pid_fd is not None:
                os.close(pid_fd)
            if early is not None:
                sc.setns(early, sc.CLONE_NEWNET)
            elif netns_path is not None:
                setns_path(netns_path)
            out = {"ok": fn()}
        except UserError as e:
            out = {"error": str(e), "code": e.exit_code}
        except BaseException as e:  # noqa: BLE001
            out = {"error": f"{type(e).__name__}: {e}", "code": 1, "trace": traceback.format_exc()}
        try:
            data = json.dumps(out).encode()
            while data:
                data = data[os.write(w, data):]
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as f:
        while True:
            b = f.read(65536)
            if not b:
                break
            chunks.append(b)
    _, status = os.waitpid(pid, 0)
    try:
        out = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        out = {}
    if "ok" in out:
        return out["ok"]
    if "error" in out:
        if out.get("trace") and os.environ.get("ROOTLESSNET_DEBUG"):
            print(out["trace"], file=sys.stderr)
        err = UserError(out["error"])
        err.exit_code = out.get("code", 1)
        raise err
    raise UserError(f"the helper inside the instance died (status {os.waitstatus_to_exitcode(status)})")


def setns_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise UserError(f"cannot open network namespace {path}: {e.strerror}") from None
    try:
        sc.setns(fd, sc.CLONE_NEWNET)
    except OSError as e:
        raise UserError(f"cannot join network namespace {path}: {e.strerror} (not a pinned netns?)") from None
    finally:
        os.close(fd)


def is_pinned(path: str) -> bool:
    """True when `path` (seen from the current mount ns) is a netns bind mount."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    try:
        return st.st_dev == os.stat("/proc/self/ns/net").st_dev and os.path.ismount(path)
    except OSError:
        return False


def pin_new_netns(path: str) -> None:
    """Inside the instance's mount ns: a new netns (lo up) bind-mounted on `path`."""
    from rootlessnet.ns.netdev import set_link_up

    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "w"):
        pass
    pid = os.fork()
    if pid == 0:  # pragma: no cover - pinning helper
        code = 0
        try:
            sc.unshare(sc.CLONE_NEWNET)
            set_link_up("lo")
            sc.mount("/proc/self/ns/net", path, None, sc.MS_BIND)
        except BaseException as e:  # noqa: BLE001
            os.write(2, f"rootlessnet netns: cannot create the network namespace: {e}\n".encode())
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise UserError(f"cannot create a network namespace at {path}")


def pin_existing(src: str, path: str) -> None:
    """Inside the instance's mount ns: bind-mount the netns file `src` on `path`."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "w"):
        pass
    try:
        sc.mount(src, path, None, sc.MS_BIND)
    except OSError as e:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise UserError(f"cannot pin network namespace {src} at {path}: {e.strerror}") from None


def unpin(path: str) -> bool:
    """Inside the instance's mount ns: unmount and remove a pin; False if absent."""
    if not os.path.lexists(path):
        return False
    for _ in range(8):  # stacked mounts (a pin made twice): take them all off
        try:
            sc.umount(path, sc.MNT_DETACH)
        except OSError:
            break
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise UserError(f"cannot remove {path}: {e.strerror}") from None
    return True


# -- add / del

def add(state_dir: str, name: str) -> str:
    check_name(name)
    path = pin_path(state_dir, name)

    def _add() -> str:
        if os.path.lexists(path):
            raise UserError(f"a network namespace named {name!r} already exists in {state_dir}")
        pin_new_netns(path)
        return path

    return in_instance(state_dir, _add)


def check_exists(state_dir: str, name: str) -> str:
    """The pin of the named netns; a UserError when there is none."""
    check_name(name)
    path = pin_path(state_dir, name)
    if not os.path.lexists(path):
        raise UserError(f"no network namespace named {name!r} in {state_dir} (see `rootlessnet netns list`)")
    return path


def delete(state_dir: str, name: str) -> None:
    """Unpin the named netns. Whatever is attached to it (the OCI hook's CNI network) must be detached first:
    `rootlessnet netns del` does that (oci/cli.py), while the netns is still alive."""
    path = check_exists(state_dir, name)
    in_instance(state_dir, lambda: unpin(path))


# -- list

def _dump_links() -> dict[str, Any]:
    from pyroute2 import IPRoute

    links: dict[int, dict[str, Any]] = {}
    with IPRoute() as ipr:
        for l in ipr.get_links():
            info = l.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info else None
            links[l["index"]] = {
                "index": l["index"], "name": l.get_attr("IFLA_IFNAME"), "kind": kind or "",
                "state": (l.get_attr("IFLA_OPERSTATE") or "").upper(), "up": bool(l["flags"] & 1),
                "mtu": l.get_attr("IFLA_MTU"), "mac": l.get_attr("IFLA_ADDRESS") or "",
                "link": l.get_attr("IFLA_LINK"), "link_netnsid": l.get_attr("IFLA_LINK_NETNSID"),
                "master_index": l.get_attr("IFLA_MASTER"), "addresses": [],
            }
        for a in ipr.get_addr():
            l = links.get(a["index"])
            if l is not None:
                addr = a.get_attr("IFA_ADDRESS")
                if addr:
                    l["addresses"].append(f"{addr}/{a['prefixlen']}")
    ino = os.stat("/proc/thread-self/ns/net").st_ino
    return {"inode": ino, "links": [links[i] for i in sorted(links)]}


def namespaces(state_dir: str) -> list[dict[str, str]]:
    """The instance's namespaces: main (detached or own), named, containers' (pinned by the hook)."""
    state_dir = os.path.abspath(state_dir)
    pid = sd.read_child_pid(state_dir)
    out = []
    main = os.path.join(state_dir, sd.NETNS)
    out.append({"name": "main", "kind": "instance", "path": main if os.path.exists(main) else f"/proc/{pid}/ns/net"})
    for kind, sub in (("named", NETNS_D), ("container", CNI_NETNS_D)):
        d = os.path.join(state_dir, sub)
        try:
            names = sorted(os.listdir(d))
        except OSError:
            names = []
        for n in names:
            if n.endswith(".tmp"):
                continue
            out.append({"name": n if kind == "named" else f"container:{n}", "kind": kind, "path": os.path.join(d, n)})
    return out


def inspect(state_dir: str) -> list[dict[str, Any]]:
    """Per namespace: interfaces, addresses, masters and veth peers across namespaces."""
    result = []
    for ns in namespaces(state_dir):
        try:
            dump = in_instance(state_dir, _dump_links, netns_path=ns["path"])
        except UserError as e:
            result.append({**ns, "error": str(e), "interfaces": []})
            continue
        result.append({**ns, "inode": dump["inode"], "interfaces": dump["links"]})
    resolve_peers(result)
    return result


def resolve_peers(nss: list[dict[str, Any]]) -> None:
    """Fill `master` and `peer` of each interface (pure: works on `inspect` data).

    A veth's IFLA_LINK is its peer's ifindex, in the netns named by
    IFLA_LINK_NETNSID (an id local to the netns that reports it) or in the same
    netns when absent. The peer netns is the one where an interface with that
    index points back at ours; when several namespaces could match, the one
    that fits every interface reporting the same netnsid wins.
    """
    for ns in nss:
        by_index = {l["index"]: l for l in ns["interfaces"]}
        for l in ns["interfaces"]:
            m = by_index.get(l.get("master_index"))
            l["master"] = m["name"] if m else None
            l["peer"] = None
    for ns in nss:
        groups: dict[int, list[dict[str, Any]]] = {}
        for l in ns["interfaces"]:
            if l.get("link") is None or l["kind"] not in ("veth", ""):
                continue
            if l.get("link_netnsid") is None:
                peer = next((p for p in ns["interfaces"] if p["index"] == l["link"] and p is not l), None)
                if peer is not None:
                    l["peer"] = {"netns": ns["name"], "name": peer["name"], "index": peer["index"], "master": peer.get("master")}
                continue
            groups.setdefault(l["link_netnsid"], []).append(l)
        for nsid, ls in groups.items():
            best = None
            for other in nss:
                if other is ns:
                    continue
                idx = {p["index"]: p for p in other["interfaces"]}
                hits = [(l, idx.get(l["link"])) for l in ls]
                score = sum(1 for l, p in hits if p is not None and p.get("link") == l["index"] and p.get("link_netnsid") is not None)
                if score and (best is None or score > best[0]):
                    best = (score, other, hits)
            for l in ls:
                l["peer"] = {"netns": None, "netnsid": nsid, "name": None, "index": l["link"], "master": None}
            if best is not None:
                _, other, hits = best
                for l, p in hits:
                    if p is not None and p.get("link") == l["index"]:
                        l["peer"] = {"netns": other["name"], "name": p["name"], "index": p["index"], "master": p.get("master")}


def format_table(nss: list[dict[str, Any]]) -> str:
    lines = []
    for ns in nss:
        lines.append(f"{ns['name']}  ({ns['kind']}: {ns['path']})")
        if ns.get("error"):
            lines.append(f"  error: {ns['error']}")
            continue
        for l in ns["interfaces"]:
            name = l["name"] + (f"@if{l['link']}" if l.get("link") is not None and l["kind"] in ("veth", "") else "")
            parts = [f"  {name:<18} {l['kind'] or '-':<7} {l['state'] or '-':<8}"]
            parts.append(" ".join(l["addresses"]) or "-")
            if l.get("master"):
                parts.append(f"master {l['master']}")
            p = l.get("peer")
            if p:
                where = p["netns"] or f"netnsid {p.get('netnsid')} (not in this instance's list)"
                peer = f"{p['name'] or 'if' + str(p['index'])} in {where}"
                if p.get("master"):
                    peer += f" (master {p['master']})"
                parts.append(f"peer {peer}")
            lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
