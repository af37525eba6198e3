"""A single-threaded process busy in Python, holding the GIL: no thread to
borrow, so pydi must queue a pending call. It proves it keeps making
progress by printing its step counter on stdout about every 50 ms (the test
reads it); it prints "ready" first. Stop it with a signal."""
import time

PERIOD = 0.05


def step(n):
    return (n * 7 + 3) % 1000003


def main():
    print("ready", flush=True)
    n = 0
    value = 0
    next_report = time.monotonic() + PERIOD
    while True:
        value = step(value)
        n += 1
        if n & 0x3ff == 0 and time.monotonic() >= next_report:
            print(n, flush=True)
            next_report += PERIOD


if __name__ == "__main__":
    main()
