#!/usr/bin/env python3
"""Sums a LibTorch profiler trace (Chrome JSON, as LMGRID_PROFILE=ops:PATH or BENCH_SSD_TRACE
write it) per operator: self time (an operator's duration less that of the operators it called,
on the same thread), calls, and share of all self time. Prints a markdown table, largest first.

    tools/bench/trace_ops.py TRACE.json [--top 25]
"""
import json
import sys
from collections import defaultdict


def main():
    args = sys.argv[1:]
    top = 25
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 1:
        sys.exit("usage: trace_ops.py TRACE.json [--top N]")
    with open(args[0]) as f:
        text = f.read().rstrip().rstrip(",")
    data = json.loads(text if text.endswith("]") or text.endswith("}") else text + "]")
    events = data["traceEvents"] if isinstance(data, dict) else data
    by_tid = defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            by_tid[e.get("tid")].append((float(e["ts"]), float(e["dur"]), e["name"]))
    self_us, calls = defaultdict(float), defaultdict(int)
    for evs in by_tid.values():
        evs.sort(key=lambda t: (t[0], -t[1]))
        stack = []  # open events: [end, name, child time]
        def close(upto):
            while stack and stack[-1][0] <= upto:
                end, name, child, dur = stack.pop()
                self_us[name] += dur - child
                if stack:
                    stack[-1][2] += dur
        for ts, dur, name in evs:
            close(ts)
            calls[name] += 1
            stack.append([ts + dur, name, 0.0, dur])
        close(float("inf"))
    total = sum(self_us.values())
    print(f"| operator | self ms | calls | share |\n|---|---:|---:|---:|")
    for name, us in sorted(self_us.items(), key=lambda kv: -kv[1])[:top]:
        print(f"| {name} | {us / 1e3:.1f} | {calls[name]} | {100 * us / total:.1f}% |")
    print(f"| all | {total / 1e3:.1f} | {sum(calls.values())} | 100% |")


if __name__ == "__main__":
    main()
