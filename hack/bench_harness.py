"""The test harness's timings (issue 12): `hack/bench harness [--rounds N] [--json FILE] [--markdown]`.

Run by hack/bench (which, as root, copies the tree and re-runs as the
unprivileged user) with the python of the test venv and this tree first on
sys.path. Measures, in this one process, as a test suite would see them:

  run()         sb.run(["true"]): from the call to the CompletedProcess, median and p90
  popen()       sb.popen(["true"]) then wait(): the same through Popen
  start         Sandbox().start(): from the call until it is ready (child_pid written), median;
                the first start of the process (which also starts the launcher zygote) apart
  stop          sb.stop(): until the launcher has exited, everything inside is killed and
                the sandbox's directory is removed
  network       Network(["a", "b", "c"]).start(): until ready, median; and its stop
  host run()    net.host("a").run(["true"])

Every sandbox is started and stopped here; nothing outlives the script.
Targets (issue 12): run() median <= 10 ms, start <= 150 ms, stop <= 30 ms,
3-host network start <= 250 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TREE)

TARGETS = {"run() of true, median": 10.0, "Sandbox() until ready, median": 150.0, "Sandbox() stop, median": 30.0,
           "Network of 3 hosts until ready, median": 250.0}


def ms(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s) * 1000, s[min(len(s) - 1, int(len(s) * 0.9))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description="the test harness's timings")
    ap.add_argument("--rounds", type=int, default=20, help="sandboxes and networks to start (default 20)")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if not 3 <= args.rounds <= 200:
        ap.error("--rounds: 3 to 200")
    from rootlessnet import Network, Sandbox
    from rootlessnet.harness.env import environment_problem

    problem = environment_problem()
    if problem:
        sys.exit(f"hack/bench harness: sandboxes cannot run here: {problem}")
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    first = Sandbox().start()
    first_start = time.perf_counter() - t0
    first.stop()
    starts, stops, runs, popens = [], [], [], []
    for i in range(args.rounds):
        t = time.perf_counter()
        sb = Sandbox().start()
        starts.append(time.perf_counter() - t)
        for _ in range(10):
            t = time.perf_counter()
            sb.run(["true"])
            runs.append(time.perf_counter() - t)
            t = time.perf_counter()
            sb.popen(["true"]).wait()
            popens.append(time.perf_counter() - t)
        t = time.perf_counter()
        sb.stop()
        stops.append(time.perf_counter() - t)
    net_starts, net_stops, host_runs = [], [], []
    for i in range(max(3, args.rounds // 2)):
        t = time.perf_counter()
        net = Network(["a", "b", "c"]).start()
        net_starts.append(time.perf_counter() - t)
        for _ in range(5):
            t = time.perf_counter()
            net.host("a").run(["true"])
            host_runs.append(time.perf_counter() - t)
        t = time.perf_counter()
        net.stop()
        net_stops.append(time.perf_counter() - t)
    load1 = os.getloadavg()
    rows = [
        ("run() of true, median", ms(runs), len(runs)),
        ("popen() of true + wait(), median", ms(popens), len(popens)),
        ("Sandbox() until ready, median", ms(starts), len(starts)),
        ("Sandbox() stop, median", ms(stops), len(stops)),
        ("Network of 3 hosts until ready, median", ms(net_starts), len(net_starts)),
        ("Network of 3 hosts stop, median", ms(net_stops), len(net_stops)),
        ("host.run() of true in a network, median", ms(host_runs), len(host_runs)),
        ("first Sandbox() of the process (starts the zygote)", (first_start * 1000, first_start * 1000), 1),
    ]
    table = [["operation", "median (ms)", "p90 (ms)", "samples", "target", "verdict"]]
    for name, (med, p90), n in rows:
        target = TARGETS.get(name)
        table.append([name, f"{med:.1f}", f"{p90:.1f}", str(n), f"<= {target:g} ms" if target else "–",
                      ("met" if med <= target else "missed") if target else "–"])
    if args.markdown:
        out = ["| " + " | ".join(table[0]) + " |", "|" + "---|" + "--:|" * (len(table[0]) - 1)]
        out += ["| " + " | ".join(r) + " |" for r in table[1:]]
    else:
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        out = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in table]
    print("\n".join(out))
    print(f"\n({os.cpu_count()} CPUs, {os.uname().release}, load average {load0[0]:.2f} at the start, "
          f"{load1[0]:.2f} at the end; Python {sys.version.split()[0]})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": {name: {"median_ms": med, "p90_ms": p90, "samples": n} for name, (med, p90), n in rows},
                       "load": [load0[0], load1[0]]}, f, indent=1)


if __name__ == "__main__":
    main()
