"""oci.cni: run a CNI plugin chain (CNI spec 0.4.0 / 1.0.0, as libcni does).

    netlist = load_conf_dir("/etc/cni/net.d")            # first .conflist/.conf/.json, sorted by name
    chain = Chain(netlist, ["/usr/lib/cni", "/opt/cni/bin"])
    result = chain.add("ctr1", "/proc/1234/ns/net", "eth0", {"portMappings": [...]})
    chain.delete("ctr1", "", "eth0", {"portMappings": [...]}, prev_result=result)

ADD runs the plugins in order, each getting the previous one's result as
`prevResult`; DEL runs them in reverse with the cached ADD result (every
plugin is tried; the first error is raised afterwards). `runtimeConfig` is
given to a plugin only for the capabilities it declares (`"capabilities":
{"portMappings": true}`), as libcni does. Plugins get a fixed PATH (they exec
iptables and friends; OCI hooks start with an empty environment).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any, Iterable

from rootlessnet.errors import UserError

DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_CNI_PATH = ("/usr/lib/cni", "/opt/cni/bin")
PLUGIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONF_EXTENSIONS = (".conflist", ".conf", ".json")
PLUGIN_TIMEOUT = 60.0


class CniError(UserError):
    """A CNI failure; the message names the plugin and says what it reported."""


@dataclass
class NetConfList:
    name: str
    cni_version: str
    plugins: list[dict[str, Any]]
    path: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "cniVersion": self.cni_version, "plugins": self.plugins, "path": self.path}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "NetConfList":
        return cls(name=obj["name"], cni_version=obj["cniVersion"], plugins=obj["plugins"], path=obj.get("path", ""), raw=obj)


def parse_conf(data: dict[str, Any], path: str = "") -> NetConfList:
    """A parsed .conflist (or a single-plugin .conf, wrapped as a list of one)."""
    where = path or "network configuration"
    if not isinstance(data, dict):
        raise CniError(f"{where}: not a JSON object")
    if "plugins" in data:
        plugins = data["plugins"]
        if not isinstance(plugins, list) or not plugins or not all(isinstance(p, dict) for p in plugins):
            raise CniError(f"{where}: \"plugins\" must be a non-empty list of objects")
    elif "type" in data:
        plugins = [{k: v for k, v in data.items() if k not in ("name", "cniVersion")}]
    else:
        raise CniError(f"{where}: neither \"plugins\" (a .conflist) nor \"type\" (a .conf)")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise CniError(f"{where}: missing \"name\"")
    version = data.get("cniVersion") or "0.4.0"
    for p in plugins:
        if not isinstance(p.get("type"), str) or not p["type"] or "/" in p["type"]:
            raise CniError(f"{where}: every plugin needs a \"type\" (a plugin file name)")
    return NetConfList(name=name, cni_version=str(version), plugins=plugins, path=path, raw=data)


def load_conf_dir(conf_dir: str) -> NetConfList:
    """The first network configuration of `conf_dir` in file-name order."""
    try:
        names = sorted(n for n in os.listdir(conf_dir) if n.endswith(CONF_EXTENSIONS))
    except FileNotFoundError:
        raise CniError(f"no CNI configuration directory {conf_dir} (create it with a .conflist, or give --cni-conf-dir)") from None
    except OSError as e:
        raise CniError(f"cannot read CNI configuration directory {conf_dir}: {e.strerror}") from None
    if not names:
        raise CniError(f"no CNI network configuration (*.conflist, *.conf, *.json) in {conf_dir}")
    path = os.path.join(conf_dir, names[0])
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise CniError(f"cannot read {path}: {e}") from None
    return parse_conf(data, path)


def find_plugin(kind: str, paths: Iterable[str]) -> str:
    paths = list(paths)
    for d in paths:
        p = os.path.join(d, kind)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise CniError(f"CNI plugin {kind!r} not found in {':'.join(paths)} "
                   f"(Debian: apt-get install containernetworking-plugins; or give --cni-path)")


def plugin_stdin(netlist: NetConfList, plugin: dict[str, Any], prev_result: dict[str, Any] | None,
                 runtime_config: dict[str, Any] | None) -> dict[str, Any]:
    """The network configuration one plugin of the chain reads on stdin."""
    conf = copy.deepcopy(plugin)
    conf["name"] = netlist.name
    conf["cniVersion"] = netlist.cni_version
    caps = conf.get("capabilities") or {}
    rc = {k: v for k, v in (runtime_config or {}).items() if caps.get(k)}
    if rc:
        conf["runtimeConfig"] = rc
    else:
        conf.pop("runtimeConfig", None)
    if prev_result is not None:
        conf["prevResult"] = prev_result
    return conf


def _version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (0,)


class Chain:
    def __init__(self, netlist: NetConfList, cni_path: Iterable[str], *, timeout: float = PLUGIN_TIMEOUT,
                 env_path: str = PLUGIN_PATH):
        self.netlist = netlist
        self.cni_path = list(cni_path)
        self.timeout = timeout
        self.env_path = env_path

    def _plugins(self, only_caps: str | None) -> list[dict[str, Any]]:
        if only_caps is None:
            return list(self.netlist.plugins)
        return [p for p in self.netlist.plugins if (p.get("capabilities") or {}).get(only_caps)]

    def _env(self, command: str, container_id: str, netns: str, ifname: str) -> dict[str, str]:
        return {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
                "CNI_IFNAME": ifname, "CNI_ARGS": "", "CNI_PATH": ":".join(self.cni_path),
                "PATH": self.env_path}

    def exec_plugin(self, plugin: dict[str, Any], env: dict[str, str], conf: dict[str, Any]) -> dict[str, Any] | None:
        kind = plugin["type"]
        path = find_plugin(kind, self.cni_path)
        try:
            p = subprocess.run([path], input=json.dumps(conf).encode(), env=env, capture_output=True,
                               timeout=self.timeout, close_fds=True)
        except subprocess.TimeoutExpired:
            raise CniError(f"CNI plugin {kind} ({env['CNI_COMMAND']}) did not finish within {self.timeout:g} s") from None
        except OSError as e:
            raise CniError(f"cannot run CNI plugin {path}: {e.strerror}") from None
        out = p.stdout.decode("utf-8", "replace").strip()
        if p.returncode != 0:
            msg = out
            try:
                obj = json.loads(out)
                msg = obj.get("msg") or out
                if obj.get("details"):
                    msg += f" ({obj['details']})"
            except ValueError:
                pass
            err = p.stderr.decode("utf-8", "replace").strip()
            msg = msg or err or f"exit status {p.returncode}"
            raise CniError(f"CNI plugin {kind} {env['CNI_COMMAND']} failed: {msg}")
        if not out:
            return None
        try:
            return json.loads(out)
        except ValueError:
            raise CniError(f"CNI plugin {kind} {env['CNI_COMMAND']} printed non-JSON: {out[:200]!r}") from None

    def add(self, container_id: str, netns: str, ifname: str, runtime_config: dict[str, Any] | None = None,
            *, prev_result: dict[str, Any] | None = None, only_caps: str | None = None) -> dict[str, Any] | None:
        """ADD through the chain; returns the last plugin's result."""
        env = self._env("ADD", container_id, netns, ifname)
        result = prev_result
        for plugin in self._plugins(only_caps):
            conf = plugin_stdin(self.netlist, plugin, result, runtime_config)
            out = self.exec_plugin(plugin, env, conf)
            if out is not None:
                result = out
        return result

    def delete(self, container_id: str, netns: str, ifname: str, runtime_config: dict[str, Any] | None = None,
               *, prev_result: dict[str, Any] | None = None, only_caps: str | None = None) -> None:
        """DEL through the chain in reverse; every plugin runs, the first error is raised after."""
        env = self._env("DEL", container_id, netns, ifname)
        if _version_tuple(self.netlist.cni_version) < (0, 4, 0):
            prev_result = None  # before 0.4.0, DEL gets no prevResult
        first: CniError | None = None
        for plugin in reversed(self._plugins(only_caps)):
            conf = plugin_stdin(self.netlist, plugin, prev_result, runtime_config)
            try:
                self.exec_plugin(plugin, env, conf)
            except CniError as e:
                first = first or e
        if first is not None:
            raise first


def port_mappings_runtime_config(mappings: Iterable[Any]) -> dict[str, Any]:
    """runtimeConfig for portmap: {"portMappings": [{hostPort, containerPort, protocol}]}."""
    return {"portMappings": [{"hostPort": m.host_port, "containerPort": m.container_port, "protocol": m.proto}
                             for m in mappings]}
