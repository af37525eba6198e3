"""An idle target: prints "ready", exits when stdin closes."""
import sys

print("ready", flush=True)
sys.stdin.read()
