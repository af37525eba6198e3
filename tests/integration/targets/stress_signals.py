"""Parked in read() on stdin, but woken by SIGALRM 1000 times a second (as
under a signal-driven profiler): a look at its main thread may catch it
awake. Prints "ready"; answers each stdin line with the number of signals
handled so far; exits when stdin closes."""
import signal
import sys

handled = 0


def on_alarm(signum, frame):
    global handled
    handled += 1


def main():
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    print("ready", flush=True)
    for _ in sys.stdin:
        print(handled, flush=True)
    signal.setitimer(signal.ITIMER_REAL, 0)


if __name__ == "__main__":
    main()
