"""Target process for scripts/bench (per-hit cost and the in-process baseline).

Runs its timed loops only when told, one command per line on stdin, and
answers on stdout, so the driver can attach pydi, wait for READY, then time:

    run WORKLOAD N     -> "ns TOTAL"   (call the workload's function N times)
    stale-hook NAME    -> "ok"         (in-process helper: hook, gate disarmed)
    stale-unhook       -> "ok"
    quit

WORKLOAD is one of: call3, dict20, line10 (pydi probes them from outside),
inproc-plain, inproc-limited, inproc-every (the in-process baseline of
bench_inproc.py wrapped around call3's function).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def f(a, b, c):
    return a + b + c


def g(d, b, c):
    return b + c


def h(a, b, c):
    x1 = a + 1
    x2 = b + 2
    x3 = c + 3
    x4 = x1 * 2
    x5 = x2 * 2
    x6 = x3 * 2
    x7 = x4 + x5
    return x7 + x6  # BENCH:line10 (the line probe; 10 locals are live here)


DICT20 = {f"key{i:02d}": i for i in range(20)}


def loop(fn, a, c, n):
    clock = time.perf_counter_ns
    start = clock()
    for i in range(n):
        fn(a, i, c)
    return clock() - start


def workloads():
    import bench_inproc

    return {
        "call3": (f, 1, 3),
        "dict20": (g, DICT20, 3),
        "line10": (h, 1, 3),
        "inproc-plain": (f, 1, 3),
        "inproc-limited": (bench_inproc.instrument(f, rate=5.0), 1, 3),
        "inproc-every": (bench_inproc.instrument(f, rate=0), 1, 3),
    }


def main():
    loads = workloads()
    helper = None
    print(f"ready {os.getpid()}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "run":
            fn, a, c = loads[words[1]]
            print(f"ns {loop(fn, a, c, int(words[2]))}", flush=True)
        elif words[0] == "stale-hook":
            # The helper hooks the code but never arms the gate (pydi does):
            # exactly "hook in place, no BPF".
            import _pydi_helper as helper

            helper._start()
            reply = helper.dispatch(
                '{"cmd":"hook","probe_id":"stale","slot":7,"target":"%s",'
                '"events":["entry","return","exception"]}' % words[1])
            print("ok" if '"ok": true' in reply else "error " + reply, flush=True)
        elif words[0] == "stale-unhook":
            reply = helper.dispatch('{"cmd":"unhook","probe_id":"stale"}')
            print("ok" if '"ok": true' in reply else "error " + reply, flush=True)
        elif words[0] == "quit":
            break


if __name__ == "__main__":
    main()
