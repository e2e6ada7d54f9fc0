"""Sequence arithmetic, Segment, rst_for, and the purity of the stack package."""

import ast
import pathlib

from hypothesis import given
from hypothesis import strategies as st

import rootlessnet.stack.tcp as tcp_pkg
from rootlessnet.stack.tcp import seq
from rootlessnet.stack.tcp.connection import rst_for
from rootlessnet.stack.tcp.segment import Control, Segment

u32 = st.integers(0, 2**32 - 1)
delta = st.integers(1, 2**31 - 1)


@given(u32, delta)
def test_order_across_wrap(a, d):
    b = seq.add(a, d)
    assert seq.lt(a, b) and seq.le(a, b) and seq.gt(b, a) and seq.ge(b, a)
    assert not seq.lt(b, a) and not seq.gt(a, b)
    assert seq.sub(b, a) == d and seq.sub(a, b) == -d
    assert seq.le(a, a) and seq.ge(a, a) and not seq.lt(a, a)


@given(u32, st.integers(0, 2**30), st.integers(0, 2**30))
def test_in_window(start, size, off):
    assert seq.in_window(seq.add(start, off), start, size) == (off < size)


def test_seg_len_counts_syn_and_fin():
    assert Segment(1, control=Control.SYN).seg_len == 1
    assert Segment(1, 2, Control.FIN, payload=b"abc").seg_len == 4
    assert Segment(1, 2, Control.PSH, payload=b"abc").seg_len == 3
    assert Segment(1, 2, Control.RST).seg_len == 0


def test_rst_for_closed_port():
    # RFC 9293 §3.10.7.1
    assert rst_for(Segment(7, None, Control.RST)) is None
    r = rst_for(Segment(100, None, Control.SYN))
    assert (r.seq, r.ack, r.control) == (0, 101, Control.RST)
    r = rst_for(Segment(100, 555, Control.NONE, payload=b"xy"))
    assert (r.seq, r.ack, r.control) == (555, None, Control.RST)
    r = rst_for(Segment(2**32 - 1, None, Control.FIN))
    assert r.ack == 0


FORBIDDEN = {"trio", "socket", "os", "time", "select", "threading", "random", "asyncio"}


def test_stack_tcp_is_pure():
    root = pathlib.Path(tcp_pkg.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for n in names:
                assert n.split(".")[0] not in FORBIDDEN, f"{path.name} imports {n}"
