"""api.cli against a running serve_api, and Debian's rootlessctl as a real client of our API."""

from __future__ import annotations

import argparse
import json
import os
import shutil

import pytest
import trio

from api_testlib import STATS, start_server
from rootlessnet.api.cli import add_parsers
from rootlessnet.api.client import ApiError
from rootlessnet.errors import UserError

ROOTLESSCTL = "/usr/bin/rootlessctl"


@pytest.fixture
async def srv(nursery):
    s = await start_server(nursery)
    yield s
    s.cleanup()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rootlessnet")
    sub = p.add_subparsers(dest="subcommand")
    add_parsers(sub)
    return p


async def cli(argv: list[str], capsys) -> tuple[int, str]:
    args = parser().parse_args(argv)
    code = await trio.to_thread.run_sync(args.func, args)
    return code, capsys.readouterr().out


async def test_ports_add_list_remove(srv, capsys):
    sock = ["--socket", srv.path]
    code, out = await cli(["ports", "add", "127.0.0.1:8080:80/tcp", "8081:80/udp", "[::1]:8082:[::2]:80/tcp6"] + sock, capsys)
    assert (code, out) == (0, "1\n2\n3\n")

    code, out = await cli(["ports", "list"] + sock, capsys)
    assert code == 0
    assert out.splitlines() == [
        "ID    PROTO    PARENTIP     PARENTPORT    CHILDIP    CHILDPORT",
        "1     tcp      127.0.0.1    8080                     80",
        "2     udp                   8081                     80",
        "3     tcp6     ::1          8082          ::2        80",
    ]
    code, out = await cli(["ports", "list", "--json"] + sock, capsys)
    assert [p["id"] for p in json.loads(out)] == [1, 2, 3]

    code, out = await cli(["ports", "add", "--json", "127.0.0.2:9090:90/tcp"] + sock, capsys)
    assert json.loads(out) == {"id": 4, "spec": {"proto": "tcp", "parentIP": "127.0.0.2", "parentPort": 9090,
                                                 "childIP": "", "childPort": 90}}

    code, out = await cli(["ports", "remove", "1", "3"] + sock, capsys)
    assert (code, out) == (0, "1\n3\n")
    assert [st.id for st in srv.ports.list()] == [2, 4]


async def test_ports_errors(srv, capsys):
    sock = ["--socket", srv.path]
    with pytest.raises(UserError, match="missing /PROTO"):
        await cli(["ports", "add", "8080:80"] + sock, capsys)
    with pytest.raises(UserError, match="not supported"):
        await cli(["ports", "add", "8080:80/sctp"] + sock, capsys)
    assert srv.ports.list() == []
    await cli(["ports", "add", "8080:80/tcp"] + sock, capsys)
    with pytest.raises(ApiError, match="conflict with ID 1") as e:
        await cli(["ports", "add", "8081:80/tcp", "127.0.0.1:8080:80/tcp"] + sock, capsys)
    assert e.value.status == 400
    assert capsys.readouterr().out == "2\n"  # ids printed up to the refusal, like rootlessctl
    with pytest.raises(ApiError, match="unknown id 7"):
        await cli(["ports", "remove", "7"] + sock, capsys)
    with pytest.raises(UserError, match="bad port id"):
        await cli(["ports", "remove", "x"] + sock, capsys)
    assert [st.id for st in srv.ports.list()] == [1, 2]


async def test_info_and_stats(srv, capsys):
    code, out = await cli(["info", "--socket", srv.path, "--json"], capsys)
    assert (code, json.loads(out)) == (0, srv.info)
    code, out = await cli(["info", "--socket", srv.path], capsys)
    assert code == 0
    for want in ("0.1.0 (API 1.1.1)", srv.dir, "4242", "slirp4netns", "10.0.2.100", "10.0.2.3", "builtin", "tcp6"):
        assert want in out
    code, out = await cli(["stats", "--socket", srv.path, "--json"], capsys)
    assert json.loads(out) == STATS
    code, out = await cli(["stats", "--socket", srv.path], capsys)
    lines = out.splitlines()
    assert code == 0 and any(ln.split() == ["tcp.active", "2"] for ln in lines)
    assert any(ln.split() == ["frames", "1234"] for ln in lines)


async def test_state_dir_and_env(srv, capsys, monkeypatch):
    code, out = await cli(["info", "--json", "--state-dir", srv.dir], capsys)
    assert json.loads(out)["childPID"] == 4242
    monkeypatch.delenv("ROOTLESSNET_STATE_DIR", raising=False)
    monkeypatch.setenv("ROOTLESSKIT_STATE_DIR", srv.dir)
    code, out = await cli(["ports", "list", "--json"], capsys)
    assert (code, json.loads(out)) == (0, [])
    monkeypatch.setenv("ROOTLESSNET_STATE_DIR", "/nonexistent/rn")
    with pytest.raises(UserError, match="no API socket at /nonexistent/rn/api.sock: is the instance running"):
        await cli(["ports", "list"], capsys)
    monkeypatch.delenv("ROOTLESSNET_STATE_DIR")
    monkeypatch.delenv("ROOTLESSKIT_STATE_DIR")
    with pytest.raises(UserError, match="--state-dir"):
        await cli(["info"], capsys)


def test_ports_without_command(capsys):
    args = parser().parse_args(["ports"])
    assert args.func(args) == 2
    assert "missing command" in capsys.readouterr().err


async def test_main_cli_reports_user_errors(capsys, monkeypatch):
    """Through rootlessnet.cli.main: an API UserError is one line on stderr and exit status 1."""
    from rootlessnet import cli as main_cli

    if "ports" not in main_cli.build_parser()._subparsers._group_actions[0].choices:
        monkeypatch.setattr(main_cli, "PARSERS", [*main_cli.PARSERS, add_parsers])  # not registered (yet)
    code = await trio.to_thread.run_sync(main_cli.main, ["ports", "list", "--socket", "/nonexistent/api.sock"])
    assert code == 1
    assert "no API socket at /nonexistent/api.sock" in capsys.readouterr().err


# -- the real client: Debian's rootlessctl (rootlesskit 1.1.0)


async def rootlessctl(sock: str, *argv: str) -> tuple[int, str, str]:
    r = await trio.run_process([ROOTLESSCTL, "--socket", sock, *argv], capture_stdout=True, capture_stderr=True,
                               check=False, env=dict(os.environ, ROOTLESSKIT_STATE_DIR=""))
    return r.returncode, r.stdout.decode(), r.stderr.decode()


needs_rootlessctl = pytest.mark.skipif(not shutil.which(ROOTLESSCTL), reason="rootlessctl (Debian rootlesskit) is not installed")


@needs_rootlessctl
async def test_rootlessctl_compat(srv):
    with trio.fail_after(30):
        code, out, err = await rootlessctl(srv.path, "list-ports")
        assert code == 0, err
        assert out.split() == ["ID", "PROTO", "PARENTIP", "PARENTPORT", "CHILDIP", "CHILDPORT"]

        code, out, err = await rootlessctl(srv.path, "add-ports", "127.0.0.1:18080:80/tcp")
        assert (code, out) == (0, "1\n"), err
        code, out, err = await rootlessctl(srv.path, "add-ports", "127.0.0.1:18081:10.0.2.100:81/udp", "[::1]:18082:82/tcp6")
        assert (code, out) == (0, "2\n3\n"), err

        code, out, err = await rootlessctl(srv.path, "list-ports")
        assert code == 0, err
        rows = [ln.split() for ln in out.splitlines()]
        assert rows == [["ID", "PROTO", "PARENTIP", "PARENTPORT", "CHILDIP", "CHILDPORT"],
                        ["1", "tcp", "127.0.0.1", "18080", "80"],
                        ["2", "udp", "127.0.0.1", "18081", "10.0.2.100", "81"],
                        ["3", "tcp6", "::1", "18082", "82"]]
        # our list-ports table lines up with rootlessctl's (modulo its trailing blanks)
        assert out.splitlines()[0].rstrip() == "ID    PROTO    PARENTIP     PARENTPORT    CHILDIP       CHILDPORT"

        code, out, err = await rootlessctl(srv.path, "list-ports", "--json")
        assert code == 0, err
        assert [json.loads(ln)["id"] for ln in out.splitlines()] == [1, 2, 3]  # one object per line

        code, out, err = await rootlessctl(srv.path, "add-ports", "127.0.0.1:18080:80/tcp")
        assert code != 0 and "conflict with ID 1" in err

        code, out, err = await rootlessctl(srv.path, "remove-ports", "1")
        assert (code, out) == (0, "1\n"), err
        code, out, err = await rootlessctl(srv.path, "remove-ports", "1")
        assert code != 0 and "unknown id 1" in err
        assert [st.id for st in srv.ports.list()] == [2, 3]

        code, out, err = await rootlessctl(srv.path, "info", "--json")
        assert code == 0, err
        info = json.loads(out)
        assert info["apiVersion"] == "1.1.1" and info["childPID"] == 4242
        assert info["networkDriver"]["childIP"] == "10.0.2.100"
        code, out, err = await rootlessctl(srv.path, "info")
        assert code == 0 and "REST API version: 1.1.1" in out and "Port Driver: builtin" in out


@needs_rootlessctl
async def test_rootlessctl_spec_errors_are_400s(srv):
    """Spec errors rootlessctl does not catch itself come back as our 400 messages."""
    code, out, err = await rootlessctl(srv.path, "add-ports", "0.0.0.0:8080:80/sctp")
    assert code != 0 and "'sctp' is not supported" in err
    code, out, err = await rootlessctl(srv.path, "add-ports", "0.0.0.0:70000:80/tcp")
    assert code != 0 and "out of range" in err
    assert srv.ports.list() == []


@needs_rootlessctl
async def test_rootlessctl_missing_socket(tmp_path):
    code, out, err = await rootlessctl(str(tmp_path / "api.sock"), "list-ports")
    assert code != 0 and err
