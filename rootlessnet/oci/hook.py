"""`rootlessnet oci-hook createRuntime|poststop`: CNI for runc containers inside an instance.

runc runs inside the instance (user + mount namespaces) and starts this hook
with an empty environment and the OCI state on stdin. The hook joins the
instance's namespaces (user, mount, and its network namespace — the detached
one with --detach-netns: where `cni0` and the iptables rules live) and:

createRuntime
  - the container's own netns: pins it at `STATE/cni-netns/ID` (so DEL gets a
    live netns even after the container's process is gone), runs the CNI chain
    with ADD (`CNI_NETNS` = the pin) and the port mappings of the annotation
    `rootlessnet/ports` as runtimeConfig `portMappings`, caches the result at
    `STATE/cni-cache/ID.json`, publishes each host port through the API
    (parent port = child port = host port; `portmap` DNATs to the container);
  - a named netns (`rootlessnet netns add`): the network belongs to the netns,
    not to the container: the first container's hook attaches it (CNI
    container id `netns-NAME`, cache `STATE/cni-cache/netns/NAME.json`),
    later ones reuse it; `rootlessnet netns del` detaches it. Each
    container's ports still go through the port plugins (`portmap`) under its
    own id, and are removed at its poststop;
  - the instance's own netns (a spec without a network namespace): no CNI;
    ports are published straight to the container port.
poststop
  - removes the published ports, runs DEL with the cached result (the pinned
    netns when still there, else an empty `CNI_NETNS` as the spec allows),
    unpins, drops the cache. Running it again, or for an unknown container,
    does nothing (exit 0).

Errors go to the log (`STATE/oci-hook.log` by default) and stderr, prefixed
with the container id, and the exit status is 1: `runc create` fails with it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from rootlessnet.errors import UserError
from rootlessnet.oci import cni

ANNOTATION_PORTS = "rootlessnet/ports"
CACHE_D = "cni-cache"
LOG_NAME = "oci-hook.log"
PHASES_ADD = ("createRuntime", "prestart")
PHASES_DEL = ("poststop",)
PROTOS = ("tcp", "udp")


@dataclass(frozen=True)
class PortMapping:
    host_ip: str
    host_port: int
    container_port: int
    proto: str = "tcp"

    def __str__(self) -> str:
        ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{ip}:{self.host_port}:{self.container_port}/{self.proto}"


def _port(text: str, what: str, item: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise UserError(f"{ANNOTATION_PORTS}: bad {what} {text!r} in {item!r}") from None
    if not 1 <= n <= 65535:
        raise UserError(f"{ANNOTATION_PORTS}: {what} {n} out of range (1-65535) in {item!r}")
    return n


def parse_ports(text: str | None, default_host_ip: str = "127.0.0.1") -> list[PortMapping]:
    """`[HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO],...` (IPv6 host IP in brackets; proto tcp|udp, default tcp)."""
    out: list[PortMapping] = []
    seen: set[tuple[str, int]] = set()
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        spec, _, proto = item.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in PROTOS:
            raise UserError(f"{ANNOTATION_PORTS}: unknown protocol {proto!r} in {item!r} (use tcp or udp)")
        host_ip = default_host_ip
        if spec.startswith("["):
            end = spec.find("]")
            if end < 0 or spec[end + 1:end + 2] != ":":
                raise UserError(f"{ANNOTATION_PORTS}: bad IPv6 host address in {item!r} (use [ADDR]:HOSTPORT:CONTAINERPORT)")
            host_ip, spec = spec[1:end], spec[end + 2:]
            parts = spec.split(":")
        else:
            parts = spec.split(":")
            if len(parts) == 3:
                host_ip, parts = parts[0], parts[1:]
        if len(parts) != 2:
            raise UserError(f"{ANNOTATION_PORTS}: bad mapping {item!r} (use [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp], comma-separated)")
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise UserError(f"{ANNOTATION_PORTS}: bad host address {host_ip!r} in {item!r}") from None
        m = PortMapping(host_ip, _port(parts[0], "host port", item), _port(parts[1], "container port", item), proto)
        if (proto, m.host_port) in seen:
            raise UserError(f"{ANNOTATION_PORTS}: host port {m.host_port}/{proto} given twice")
        seen.add((proto, m.host_port))
        out.append(m)
    return out


def api_spec(m: PortMapping, *, loopback_child: bool, child_port: int | None = None) -> dict[str, Any]:
    """The API port spec for a mapping: parent port = child port = host port (nerdctl's path)."""
    v6 = ":" in m.host_ip
    child_ip = ("::1" if v6 else "127.0.0.1") if loopback_child else ""
    return {"proto": m.proto, "parentIP": m.host_ip, "parentPort": m.host_port, "childIP": child_ip,
            "childPort": child_port or m.host_port}


@dataclass
class HookOptions:
    state_dir: str
    conf_dir: str = cni.DEFAULT_CONF_DIR
    cni_path: list[str] = field(default_factory=lambda: list(cni.DEFAULT_CNI_PATH))
    log: str | None = None
    ifname: str = "eth0"


class Logger:
    def __init__(self, path: str | None, prefix: str, stderr: TextIO | None = None):
        self.path = path
        self.prefix = prefix
        self.stderr = stderr or sys.stderr

    def __call__(self, msg: str, *, error: bool = False) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {self.prefix}: {msg}\n"
        if self.path:
            try:
                with open(self.path, "a") as f:
                    f.write(line)
            except OSError:
                pass
        if error:
            self.stderr.write(f"{self.prefix}: {msg}\n")
            self.stderr.flush()


def read_state(text: str) -> dict[str, Any]:
    try:
        state = json.loads(text)
    except ValueError as e:
        raise UserError(f"the OCI state on stdin is not JSON ({e}): this command is an OCI hook, runc runs it") from None
    if not isinstance(state, dict) or not isinstance(state.get("id"), str) or not state["id"]:
        raise UserError("the OCI state on stdin has no container \"id\"")
    if "/" in state["id"] or state["id"] in (".", ".."):
        raise UserError(f"bad container id {state['id']!r}")
    return state


# -- cache files (inside the state dir; the same path inside and outside)

def _cache_path(state_dir: str, cid: str) -> str:
    return os.path.join(state_dir, CACHE_D, f"{cid}.json")


def _netns_cache_path(state_dir: str, name: str) -> str:
    return os.path.join(state_dir, CACHE_D, "netns", f"{name}.json")


def _write_json(path: str, obj: Any) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.rename(tmp, path)


def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the CNI cache {path}: {e}") from None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- ports through the API

def _api(state_dir: str):
    from rootlessnet.api.client import ApiClient

    return ApiClient(os.path.join(state_dir, "api.sock"), timeout=20)


def publish(state_dir: str, mappings: list[PortMapping], *, direct: bool, cache: dict[str, Any], save) -> None:
    if not mappings:
        return
    client = _api(state_dir)
    info = client.info()
    pd = info.get("portDriver")
    if not pd:
        raise UserError(f"the instance in {state_dir} has no port driver (started with --port-driver=none?): "
                        f"cannot publish {ANNOTATION_PORTS}")
    loopback = not pd.get("disallowLoopbackChildIP", False)
    for m in mappings:
        spec = api_spec(m, loopback_child=loopback, child_port=m.container_port if direct else None)
        st = client.add_port(spec)
        cache.setdefault("port_ids", []).append(st["id"])
        save()


def unpublish(state_dir: str, cache: dict[str, Any], log: Logger) -> None:
    ids = cache.get("port_ids") or []
    if not ids:
        return
    from rootlessnet.api.client import ApiError

    try:
        client = _api(state_dir)
    except UserError as e:  # pragma: no cover
        log(f"cannot remove published ports {ids}: {e}")
        return
    for pid in list(ids):
        try:
            client.remove_port(pid)
        except ApiError:
            pass  # already gone: idempotent
        except UserError as e:
            log(f"cannot remove published port {pid}: {e}")
            continue
        ids.remove(pid)


# -- the hook

def _same_ns(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _named_netns_of(state_dir: str, nspath: str) -> str | None:
    from rootlessnet.ns.netns import NETNS_D

    d = os.path.join(state_dir, NETNS_D)
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return None
    for n in names:
        if _same_ns(os.path.join(d, n), nspath):
            return n
    return None


def _enter(state_dir: str) -> None:
    from rootlessnet.ns import nsenter

    pid_fd = nsenter.enter(state_dir, net=True)
    if pid_fd is not None:
        os.close(pid_fd)


def _chain(obj: dict[str, Any]) -> cni.Chain:
    return cni.Chain(cni.NetConfList.from_json(obj["netconf"]), obj["cni_path"])


def attach(opts: HookOptions, state: dict[str, Any], log: Logger) -> None:
    """createRuntime, already inside the instance's namespaces."""
    from rootlessnet.ns import netns as nn
    from rootlessnet.ns import statedir as sd

    cid = state["id"]
    pid = state.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        raise UserError("the OCI state has no container \"pid\" (is this hook registered as createRuntime?)")
    mappings = parse_ports((state.get("annotations") or {}).get(ANNOTATION_PORTS))
    cpath = f"/proc/{pid}/ns/net"
    if not os.path.exists(cpath):
        raise UserError(f"container process {pid} is not visible here ({cpath} missing): run runc inside the instance "
                        f"(rootlessnet nsenter), in the same PID namespace")
    cache_file = _cache_path(opts.state_dir, cid)
    if os.path.exists(cache_file):
        raise UserError(f"container {cid} is already attached ({cache_file} exists): was its poststop hook skipped? "
                        f"run `rootlessnet oci-hook poststop` with its state to clean up")
    cache: dict[str, Any] = {"version": 1, "id": cid, "ifname": opts.ifname,
                             "ports": [str(m) for m in mappings], "port_ids": []}

    def save() -> None:
        _write_json(cache_file, cache)

    child_pid = sd.read_child_pid(opts.state_dir)
    if _same_ns(cpath, "/proc/self/ns/net") or _same_ns(cpath, f"/proc/{child_pid}/ns/net"):
        cache["mode"] = "shared"
        save()
        log("the container shares the instance's network namespace: no CNI; ports go straight to the container ports")
        publish(opts.state_dir, mappings, direct=True, cache=cache, save=save)
        return

    netlist = cni.load_conf_dir(opts.conf_dir)
    cache.update(netconf=netlist.to_json(), cni_path=opts.cni_path)
    chain = cni.Chain(netlist, opts.cni_path)
    rc = cni.port_mappings_runtime_config(mappings)
    cache["runtime_config"] = rc
    name = _named_netns_of(opts.state_dir, cpath)
    if name is not None:
        cache.update(mode="named", netns=name, port_plugins=False)
        save()
        att = ensure_named_attachment(opts, name, netlist, log)
        if mappings:
            cache["port_plugins"] = True
            save()
            chain.add(cid, nn.pin_path(opts.state_dir, name), opts.ifname, rc, prev_result=att["result"],
                      only_caps="portMappings")
        publish(opts.state_dir, mappings, direct=False, cache=cache, save=save)
        log(f"joined named netns {name} ({_addresses(att['result'])}); ports: {', '.join(map(str, mappings)) or 'none'}")
        return

    pin = os.path.join(opts.state_dir, nn.CNI_NETNS_D, cid)
    cache.update(mode="own", pin=pin, result=None)
    save()
    nn.pin_existing(cpath, pin)
    cache["result"] = chain.add(cid, pin, opts.ifname, rc)
    save()
    publish(opts.state_dir, mappings, direct=False, cache=cache, save=save)
    log(f"attached to {netlist.name} ({_addresses(cache['result'])}); ports: {', '.join(map(str, mappings)) or 'none'}")


def _addresses(result: dict[str, Any] | None) -> str:
    ips = [ip.get("address", "?") for ip in (result or {}).get("ips") or []]
    return ", ".join(ips) or "no address"


def ensure_named_attachment(opts: HookOptions, name: str, netlist: cni.NetConfList, log: Logger) -> dict[str, Any]:
    from rootlessnet.ns import netns as nn

    path = _netns_cache_path(opts.state_dir, name)
    att = _read_json(path)
    if att is not None and att.get("result") is not None:
        return att
    att = {"version": 1, "netns": name, "cid": f"netns-{name}", "ifname": opts.ifname,
           "netconf": netlist.to_json(), "cni_path": opts.cni_path, "result": None}
    _write_json(path, att)
    chain = cni.Chain(netlist, opts.cni_path)
    try:
        att["result"] = chain.add(att["cid"], nn.pin_path(opts.state_dir, name), opts.ifname, {"portMappings": []})
    except BaseException:
        try:
            chain.delete(att["cid"], nn.pin_path(opts.state_dir, name), opts.ifname, {"portMappings": []})
        except cni.CniError:
            pass
        _remove(path)
        raise
    _write_json(path, att)
    log(f"attached named netns {name} to {netlist.name} ({_addresses(att['result'])})")
    return att


def detach(opts: HookOptions, cid: str, log: Logger) -> bool:
    """poststop (and ADD rollback), inside the instance's namespaces. False when nothing was attached."""
    from rootlessnet.ns import netns as nn

    cache_file = _cache_path(opts.state_dir, cid)
    cache = _read_json(cache_file)
    if cache is None:
        return False
    unpublish(opts.state_dir, cache, log)
    _write_json(cache_file, cache)
    errors: list[str] = []
    mode = cache.get("mode")
    if mode == "own" and cache.get("netconf"):
        pin = cache.get("pin") or ""
        netns = pin if pin and nn.is_pinned(pin) else ""
        try:
            _chain(cache).delete(cid, netns, cache.get("ifname", "eth0"), cache.get("runtime_config"),
                                 prev_result=cache.get("result"))
        except cni.CniError as e:
            errors.append(str(e))
        if pin:
            nn.unpin(pin)
    elif mode == "named" and cache.get("port_plugins"):
        att = _read_json(_netns_cache_path(opts.state_dir, cache["netns"]))
        if att is not None:
            pin = nn.pin_path(opts.state_dir, cache["netns"])
            try:
                _chain(cache).delete(cid, pin if nn.is_pinned(pin) else "", cache.get("ifname", "eth0"),
                                     cache.get("runtime_config"), prev_result=att.get("result"), only_caps="portMappings")
            except cni.CniError as e:
                errors.append(str(e))
    if errors:
        raise UserError("; ".join(errors) + f" (cache kept at {cache_file}: run poststop again to retry)")
    _remove(cache_file)
    return True


def detach_named_netns(state_dir: str, name: str) -> None:
    """CNI DEL of a named netns' attachment (before `rootlessnet netns del` unpins it)."""
    from rootlessnet.ns import netns as nn

    state_dir = os.path.abspath(state_dir)
    path = _netns_cache_path(state_dir, name)
    if not os.path.exists(path):
        return

    def _del() -> None:
        att = _read_json(path)
        if att is None:
            return
        pin = nn.pin_path(state_dir, name)
        _chain(att).delete(att["cid"], pin if nn.is_pinned(pin) else "", att.get("ifname", "eth0"),
                           {"portMappings": []}, prev_result=att.get("result"))
        _remove(path)

    _in_instance_net(state_dir, _del)


def _in_instance_net(state_dir: str, fn) -> Any:
    from rootlessnet.ns import netns as nn
    from rootlessnet.ns import statedir as sd

    pid = sd.read_child_pid(state_dir)
    main = os.path.join(state_dir, sd.NETNS)
    return nn.in_instance(state_dir, fn, netns_path=main if os.path.exists(main) else f"/proc/{pid}/ns/net")


def run_hook(phase: str, opts: HookOptions, stdin: TextIO, stderr: TextIO | None = None) -> int:
    stderr = stderr or sys.stderr
    opts.state_dir = os.path.abspath(opts.state_dir)
    log_path = opts.log or os.path.join(opts.state_dir, LOG_NAME)
    cid = "?"
    log = Logger(log_path, f"rootlessnet oci-hook {phase} [?]", stderr)
    try:
        state = read_state(stdin.read())
        cid = state["id"]
        log.prefix = f"rootlessnet oci-hook {phase} [{cid}]"
        _enter(opts.state_dir)
        if phase in PHASES_ADD:
            try:
                attach(opts, state, log)
            except BaseException:
                try:  # undo what was done, keep the first error
                    detach(opts, cid, log)
                except BaseException as e2:  # noqa: BLE001
                    log(f"cleanup after the failed ADD failed too: {e2}")
                raise
        elif phase in PHASES_DEL:
            if not detach(opts, cid, log):
                log("nothing attached (already cleaned up)")
            else:
                log("detached")
        else:
            raise UserError(f"unknown hook phase {phase!r}: use createRuntime or poststop")
        return 0
    except UserError as e:
        log(str(e), error=True)
        return 1
    except Exception as e:  # noqa: BLE001 - a hook must say why, never just die
        import traceback

        log(f"internal error: {type(e).__name__}: {e}\n{traceback.format_exc()}", error=True)
        return 1


# -- install into a bundle's config.json

def _python_env() -> list[str]:
    """PYTHONPATH for the hook when this rootlessnet is not importable from a bare interpreter."""
    import subprocess

    import rootlessnet

    here = os.path.dirname(os.path.dirname(os.path.abspath(rootlessnet.__file__)))
    try:
        p = subprocess.run([sys.executable, "-c", "import rootlessnet, os; print(os.path.abspath(rootlessnet.__file__))"],
                           env={}, capture_output=True, text=True, timeout=30, cwd="/")
        if p.returncode == 0 and os.path.dirname(os.path.dirname(p.stdout.strip())) == here:
            return []
    except (OSError, subprocess.TimeoutExpired):
        pass
    return [f"PYTHONPATH={here}"]


def hook_args(opts: HookOptions, phase: str) -> list[str]:
    args = [sys.executable, "-m", "rootlessnet", "oci-hook", "--state-dir", opts.state_dir]
    if opts.conf_dir != cni.DEFAULT_CONF_DIR:
        args += ["--cni-conf-dir", opts.conf_dir]
    if list(opts.cni_path) != list(cni.DEFAULT_CNI_PATH):
        args += ["--cni-path", ":".join(opts.cni_path)]
    if opts.log:
        args += ["--log", opts.log]
    return args + [phase]


def _is_ours(h: dict[str, Any]) -> bool:
    a = h.get("args") or []
    return "oci-hook" in a and "rootlessnet" in a


def install(spec: dict[str, Any], opts: HookOptions, *, ports: str | None = None, netns_path: str | None = None,
            timeout: int = 120) -> dict[str, Any]:
    """Add (or replace) the rootlessnet createRuntime + poststop hooks in an OCI spec."""
    env = [f"PATH={cni.PLUGIN_PATH}", *_python_env()]
    hooks = spec.setdefault("hooks", {})
    for phase in ("createRuntime", "poststop"):
        entries = [h for h in hooks.get(phase) or [] if not _is_ours(h)]
        entries.append({"path": sys.executable, "args": hook_args(opts, phase), "env": env, "timeout": timeout})
        hooks[phase] = entries
    linux = spec.setdefault("linux", {})
    nss = linux.setdefault("namespaces", [])
    net = next((n for n in nss if n.get("type") == "network"), None)
    if net is None:
        net = {"type": "network"}
        nss.append(net)
    if netns_path:
        net["path"] = netns_path
    if ports is not None:
        parse_ports(ports)  # fail early on a bad value
        spec.setdefault("annotations", {})[ANNOTATION_PORTS] = ports
    return spec
