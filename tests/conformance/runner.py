"""Run scenarios against both DUTs, compare their logs, print the table.

Each scenario runs on Linux and on the engine at the same time (two
threads), with the same ports and the same frames; independent scenarios run
a few at a time (``jobs``), those marked ``solo`` alone at the end. The
verdict per scenario:

* ``match``       both logs are equal;
* ``deliberate``  they differ only in the entries the scenario names, and it says why;
* ``DIFFERS``     any other difference: the engine does not behave as Linux;
* ``ERROR``       the bench failed on Linux (the oracle itself): a bench bug.
"""

from __future__ import annotations

import itertools
import random
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tests.conformance.bench import Run
from tests.conformance.dut import DutError, EngineDut, LinuxDut
from tests.conformance.scenarios import Scenario, load

OK_VERDICTS = ("match", "deliberate")


@dataclass
class Result:
    scenario: Scenario
    linux: list[tuple[str, str]]
    engine: list[tuple[str, str]]
    linux_error: str | None = None
    engine_error: str | None = None
    seconds: float = 0.0
    diffs: list[tuple[str, str, str]] = field(default_factory=list)  # (entry, linux, engine)
    verdict: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict in OK_VERDICTS


def _keyed(log: list[tuple[str, str]]) -> dict[str, str]:
    """Entries keyed by label, repeated labels numbered (label, label#2, ...)."""
    seen: dict[str, int] = {}
    out: dict[str, str] = {}
    for label, value in log:
        seen[label] = seen.get(label, 0) + 1
        out[label if seen[label] == 1 else f"{label}#{seen[label]}"] = value
    return out


def compare(sc: Scenario, res: Result) -> None:
    a, b = _keyed(res.linux), _keyed(res.engine)
    keys = list(a) + [k for k in b if k not in a]
    res.diffs = [(k, a.get(k, "(absent)"), b.get(k, "(absent)")) for k in keys if a.get(k) != b.get(k)]
    if res.linux_error is not None:
        res.verdict = "ERROR"
    elif not res.diffs:
        res.verdict = "match"
    elif sc.differs and all(k.split("#")[0] in sc.differs for k, _, _ in res.diffs):
        res.verdict = "deliberate"
    else:
        res.verdict = "DIFFERS"


class Runner:
    def __init__(self, jobs: int = 3, progress=None):
        self.jobs = jobs
        self.progress = progress
        self.linux = LinuxDut()
        self.engine = EngineDut()
        self._ports = itertools.count(random.Random().randrange(20000, 40000, 1000))
        self._lock = threading.Lock()

    def __enter__(self) -> Runner:
        self.linux.start()
        try:
            try:
                self.engine.start()
            except DutError as e:
                # Seen twice in ~50 runs on a shared machine (the instance's control channel
                # broke while it started); a start-up failure is not a conformance result.
                print(f"hack/conformance: {e}; starting it again", file=sys.stderr, flush=True)
                self.engine.stop()
                self.engine = EngineDut()
                self.engine.start()
        except BaseException:
            self.linux.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.engine.stop()
        self.linux.stop()

    def _bench_port(self) -> int:
        with self._lock:
            return next(self._ports)

    def run_one(self, sc: Scenario) -> Result:
        # The engine's application port is a real host port: take a free one and keep it bound;
        # the Linux DUT's namespace is private, so it uses the same number.
        pre = socket.socket()
        pre.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        pre.bind(("127.0.0.1", 0))
        dport = pre.getsockname()[1]
        bport = self._bench_port()
        runs = {"linux": Run(self.linux, sc.name, dport, bport, budget=sc.budget),
                "engine": Run(self.engine, sc.name, dport, bport, pre_sock=pre, budget=sc.budget)}
        errors: dict[str, str | None] = {"linux": None, "engine": None}

        def play(which: str) -> None:
            run = runs[which]
            try:
                sc.fn(run)
            except Exception as e:  # noqa: BLE001 - a failed run is a result
                errors[which] = f"{type(e).__name__}: {e}"
                run.note("error", f"{type(e).__name__}: {e}")
                if which == "linux":
                    errors[which] += "\n" + traceback.format_exc()
            finally:
                run.finish()

        t0 = time.time()
        threads = [threading.Thread(target=play, args=(w,), name=f"{sc.name}:{w}", daemon=True) for w in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(sc.budget + 15)
            if t.is_alive():
                w = t.name.rsplit(":", 1)[1]
                errors[w] = errors[w] or "hung past its time budget"
                runs[w].note("error", "hung past its time budget")
        res = Result(sc, list(runs["linux"].log), list(runs["engine"].log), errors["linux"], errors["engine"],
                     time.time() - t0)
        compare(sc, res)
        if self.progress:
            self.progress(res)
        return res

    def run(self, scenarios: list[Scenario]) -> list[Result]:
        shared = [s for s in scenarios if not s.solo]
        solo = [s for s in scenarios if s.solo]
        results: dict[str, Result] = {}
        with ThreadPoolExecutor(max(1, self.jobs)) as ex:
            for r in ex.map(self.run_one, shared):
                results[r.scenario.name] = r
        for s in solo:
            results[s.name] = self.run_one(s)
        return [results[s.name] for s in scenarios]


def select(names: list[str] | None = None, keyword: str | None = None) -> list[Scenario]:
    all_ = load()
    if names:
        missing = [n for n in names if n not in all_]
        if missing:
            raise KeyError(f"unknown scenario(s): {', '.join(missing)} (see --list)")
        chosen = [all_[n] for n in names]
    else:
        chosen = list(all_.values())
    if keyword:
        chosen = [s for s in chosen if keyword in s.name]
    return chosen


def _cell(text: str, width: int) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(results: list[Result], width: int = 60) -> str:
    rows = [("scenario", "linux", "rootlessnet", "verdict")]
    for r in results:
        if r.diffs:
            k, lv, ev = r.diffs[0]
            more = f" (+{len(r.diffs) - 1})" if len(r.diffs) > 1 else ""
            linux, engine = f"{k}: {lv}", f"{k}: {ev}{more}"
        else:
            linux = engine = f"{len(r.linux)} entries equal"
        verdict = r.verdict
        if r.verdict == "deliberate":
            verdict += f": {r.scenario.reason}"
        rows.append((r.scenario.name, _cell(linux, width), _cell(engine, width), verdict))
    w = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append(f"| {row[0]:<{w[0]}} | {row[1]:<{w[1]}} | {row[2]:<{w[2]}} | {row[3]}")
        if i == 0:
            lines.append(f"|-{'-' * w[0]}-|-{'-' * w[1]}-|-{'-' * w[2]}-|-{'-' * 7}")
    return "\n".join(lines)


def details(r: Result) -> str:
    out = [f"== {r.scenario.name} [{r.verdict}] {r.scenario.doc}"]
    if r.linux_error:
        out.append(f"   linux run failed: {r.linux_error}")
    if r.engine_error:
        out.append(f"   rootlessnet run failed: {r.engine_error}")
    a, b = _keyed(r.linux), _keyed(r.engine)
    for k in list(a) + [k for k in b if k not in a]:
        mark = " " if a.get(k) == b.get(k) else "*"
        out.append(f" {mark} {k:<28} linux: {a.get(k, '(absent)'):<44} rootlessnet: {b.get(k, '(absent)')}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="hack/conformance", description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="scenarios to run (default: all)")
    ap.add_argument("-k", dest="keyword", help="only scenarios whose name contains this")
    ap.add_argument("-j", "--jobs", type=int, default=3, help="scenarios run at the same time (default 3)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="both logs of every scenario that is not a match (failures always get them)")
    ap.add_argument("--all-logs", action="store_true", help="both logs of every scenario")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = ap.parse_args(argv)
    try:
        chosen = select(args.names, args.keyword)
    except KeyError as e:
        print(f"hack/conformance: {e.args[0]}", file=sys.stderr)
        return 2
    if args.list:
        for s in chosen:
            extra = f"  [differs on purpose: {s.reason}]" if s.reason else ""
            print(f"{s.name:<36} {s.doc}{extra}")
        return 0
    if not chosen:
        print("hack/conformance: no scenario selected", file=sys.stderr)
        return 2
    t0 = time.time()
    done = [0]

    def progress(r: Result) -> None:
        done[0] += 1
        print(f"[{done[0]:>2}/{len(chosen)}] {r.scenario.name:<36} {r.verdict:<10} {r.seconds:5.1f} s",
              file=sys.stderr, flush=True)

    try:
        with Runner(args.jobs, progress) as runner:
            results = runner.run(chosen)
            drops = {"linux": runner.linux.port.drops(), "rootlessnet": runner.engine.port.drops()}
    except Exception as e:  # noqa: BLE001 - one line for set-up failures
        print(f"hack/conformance: {e}", file=sys.stderr)
        return 2
    print(table(results))
    for r in results:
        if args.all_logs or (args.verbose and r.verdict != "match") or not r.ok:
            print(details(r))
    bad = [r for r in results if not r.ok]
    counts = {v: sum(r.verdict == v for r in results) for v in ("match", "deliberate", "DIFFERS", "ERROR")}
    print(f"\n{len(results)} scenarios in {time.time() - t0:.0f} s: "
          + ", ".join(f"{n} {v}" for v, n in counts.items()) + f"; bench frames dropped {drops}")
    for r in bad:
        if r.verdict == "ERROR":
            print(f"ERROR {r.scenario.name}: {r.linux_error}", file=sys.stderr)
    return 1 if bad else 0
