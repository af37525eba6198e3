"""Target process for scripts/bench items 4-7 (time to READY, agent footprint,
pipeline throughput, scale).

    OTEL_SERVICE_NAME=NAME /usr/bin/python3 scripts/bench_app.py [--functions N] [--busy | --busy-thread]

Defines N functions f0000 ... f{N-1} (3 arguments, a + b + c) in __main__,
plus hot(a, b, c), so that N probes can each have their own code. Prints
"ready PID" and then, unless busy, answers one command per line on stdin:

    run NAME N         -> "ns TOTAL cpu ONCPU"  call NAME N times in a tight
                          loop: wall and the thread's on-CPU time
    paced NAME RATE S  -> "ns TOTAL"  call NAME RATE times a second for S seconds
    pace K R           -> "ok"        from now on call f0000 ... f{K-1} R times a
                                      second each (0 stops), between commands
    hooked NAME        -> "hooked 1"  NAME's __code__ is not the one it was defined
                                      with (3.11: pydi's hook is in place), else 0
    quit

The main thread waits for commands in select() (a syscall pydi may borrow
the thread from). --busy: the only thread spins in Python calling hot()
forever and reads no commands (pydi must inject by a pending call).
--busy-thread: a second thread spins in Python; the main thread reads
commands (pydi borrows the main thread, then waits for the GIL).
"""
import os
import select
import sys
import threading
import time

FUNCTIONS = 50


def hot(a, b, c):
    return a + b + c


def define(n):
    # One real code object per function; the file name is this file so
    # snapshots point somewhere (the lines do not exist: only names matter).
    src = "".join(f"def f{i:04d}(a, b, c):\n    return a + b + c\n" for i in range(n))
    exec(compile(src, __file__, "exec"), globals())
    return [globals()[f"f{i:04d}"] for i in range(n)]


def spin():
    i = 0
    while True:
        hot(1, i, 3)
        i += 1


def tight(fn, n):
    """Wall and on-CPU ns of n calls of fn."""
    clock = time.perf_counter_ns
    cpu = time.thread_time_ns
    start, start_cpu = clock(), cpu()
    for i in range(n):
        fn(1, i, 3)
    return clock() - start, cpu() - start_cpu


def paced(fn, rate, seconds):
    """Call fn rate times a second for seconds: batches of at most 1,000
    calls, a 1 ms sleep whenever the calls are ahead of the schedule (a rate
    above what the process can do is a tight loop)."""
    clock = time.perf_counter_ns
    start = clock()
    end = start + int(seconds * 1e9)
    done = 0
    while True:
        now = clock()
        if now >= end:
            break
        due = int((now - start) * rate / 1e9)
        if done >= due:
            time.sleep(0.001)
            continue
        for i in range(done, min(due, done + 1000)):
            fn(1, i, 3)
        done = min(due, done + 1000)
    return clock() - start, done


def main():
    args = sys.argv[1:]
    n = FUNCTIONS
    if "--functions" in args:
        n = int(args[args.index("--functions") + 1])
    funcs = define(n)
    original = {fn.__name__: fn.__code__ for fn in funcs + [hot]}
    print(f"ready {os.getpid()}", flush=True)
    if "--busy" in args:
        spin()
    if "--busy-thread" in args:
        threading.Thread(target=spin, daemon=True).start()
    stdin = sys.stdin.fileno()
    buf = b""
    pace_k, pace_rate, next_tick, i = 0, 0.0, 0.0, 0
    while True:
        timeout = None
        if pace_rate:
            timeout = max(0.0, next_tick - time.monotonic())
        ready, _, _ = select.select([stdin], [], [], timeout)
        if pace_rate and time.monotonic() >= next_tick:
            for fn in funcs[:pace_k]:
                fn(1, i, 3)
            i += 1
            next_tick += 1.0 / pace_rate
        if not ready:
            continue
        chunk = os.read(stdin, 4096)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            words = line.decode().split()
            if not words:
                continue
            if words[0] == "run":
                fn = globals()[words[1]]
                wall, on_cpu = tight(fn, int(words[2]))
                print(f"ns {wall} cpu {on_cpu}", flush=True)
            elif words[0] == "paced":
                ns, done = paced(globals()[words[1]], float(words[2]), float(words[3]))
                print(f"ns {ns} calls {done}", flush=True)
            elif words[0] == "pace":
                pace_k, pace_rate = int(words[1]), float(words[2])
                next_tick = time.monotonic()
                print("ok", flush=True)
            elif words[0] == "hooked":
                fn = globals()[words[1]]
                print(f"hooked {int(fn.__code__ is not original[words[1]])}", flush=True)
            elif words[0] == "quit":
                return
            else:
                print(f"error {words[0]}?", flush=True)


if __name__ == "__main__":
    main()
