#!/usr/bin/env python3
"""The timelines' memory over long runs, before and after a change of their retention (issue 19).

A 10-minute run of ``bench/lean.py`` cannot see it: a timeline fills with time, one point per
reading, and an idle cgroup is read fully every 30 s. This feeds each checkout's own
``TimelineRing`` (record/timeline.py) the readings N cgroups would have given over HOURS of
simulated time, at the sampler's cadences, in a child process of its own per checkout and case,
and reports what the rings hold: points per cgroup, the anonymous memory they added to the process
(RssAnon of /proc/self/status, before and after), and the CPU of one ``add`` (the sampler makes
one per reading). The values are a real reading's columns (every field set: the worst case for
size); memory does not depend on them.

Run (no root, a few minutes, one core):
    python3 bench/timeline_retention.py --before /work/ci/before [--after .] [--hours 12]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (label, cgroups, seconds between readings): the sampler's cadences (record/sampler.py): an idle
# cgroup's full reading every 30 s, one below a quarter of its limit that moves every 10 s, one
# below half every 5 s, one near its limit every second (the timeline's spacing) or faster.
CASES = (
    ("500 idle (30 s)", 500, 30),
    ("2000 idle (30 s)", 2000, 30),
    ("500 moving (10 s)", 500, 10),
    ("50 near the limit (1 s)", 50, 1),
)

CHILD = r"""
import json, sys, time
from oomscope.record.timeline import FIELDS, TimelineRing

def rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024

cgroups, every_s, hours = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
values = {f: float(i * 1048576 + 4096) for i, f in enumerate(FIELDS)}
before = rss_anon()
rings = [TimelineRing(600, 1.0) for _ in range(cgroups)]
steps = int(hours * 3600 / every_s)
cpu = time.process_time()
for step in range(steps):
    t = step * every_s * 1_000_000_000
    for ring in rings:
        ring.add(t, values)
cpu = time.process_time() - cpu
after = rss_anon()
pts = rings[0].points(steps * every_s * 1_000_000_000)
print(json.dumps({"anon": after - before, "points": len(rings[0]), "adds": steps * cgroups, "cpu_s": cpu,
                  "span_h": -pts[0].t_ms / 3.6e6 if pts else 0}))
"""


def run(checkout: str, cgroups: int, every_s: int, hours: float) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout))
    out = subprocess.run([sys.executable, "-c", CHILD, str(cgroups), str(every_s), str(hours)],
                         env=env, cwd="/", capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"{checkout}: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="another checkout of oomscope (the flat ring)")
    ap.add_argument("--after", default=HERE)
    ap.add_argument("--hours", type=float, default=12.0)
    args = ap.parse_args()
    print("| cgroups (reading every) | hours | recorder | points per cgroup | span kept | anonymous MiB added | µs per add |")
    print("|---|---|---|---|---|---|---|")
    for label, cgroups, every_s in CASES:
        for name, checkout in (("before", args.before), ("after", args.after)):
            r = run(checkout, cgroups, every_s, args.hours)
            print(f"| {label} | {args.hours:g} | {name} | {r['points']} | {r['span_h']:.1f} h | "
                  f"{r['anon'] / 2**20:.1f} | {r['cpu_s'] / r['adds'] * 1e6:.1f} |", flush=True)


if __name__ == "__main__":
    main()
