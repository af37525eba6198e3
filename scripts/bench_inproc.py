"""In-process capture baseline for scripts/bench — written for this benchmark.

This is NOT ADOT's code. It does per hit what ADOT's in-process debugger does
(a Python function wrapper; a token-bucket rate limiter; on a captured call,
recursive serialization of arguments, return value and stack into
CapturedValue-like dicts with the same limits — depth 3, 20 elements or
fields, strings 255 — and a snapshot dict in the ADOT snapshot model), so
that pydi can be compared with that way of working on the same machine and
the same Python. Export is excluded: snapshots go to a bounded deque.
"""
import collections
import itertools
import sys
import threading
import time
import uuid

MAX_DEPTH = 3
MAX_COLLECTION = 20
MAX_FIELDS = 20
MAX_STRING = 255
MAX_FRAMES = 20

_SCALARS = (int, float, bool, complex)
_SEQUENCES = (list, tuple, set, frozenset)


def serialize(value, depth=0):
    """One CapturedValue-like dict for value, recursing within the limits."""
    kind = type(value)
    name = kind.__qualname__
    if value is None:
        return {"type": name, "is_null": True}
    if kind in _SCALARS:
        return {"type": name, "value": repr(value)}
    if kind is str or kind is bytes or kind is bytearray:
        text = value if kind is str else repr(value)
        if len(text) > MAX_STRING:
            return {"type": name, "value": text[:MAX_STRING], "truncated": True,
                    "size": len(value)}
        return {"type": name, "value": text}
    if depth >= MAX_DEPTH:
        return {"type": name, "not_captured_reason": "depth"}
    if kind is dict:
        entries = [{"key": serialize(k, depth + 1), "value": serialize(v, depth + 1)}
                   for k, v in itertools.islice(value.items(), MAX_COLLECTION)]
        out = {"type": name, "entries": entries, "size": len(value)}
        if len(value) > MAX_COLLECTION:
            out["not_captured_reason"] = "collectionSize"
        return out
    if kind in _SEQUENCES:
        elements = [serialize(v, depth + 1)
                    for v in itertools.islice(value, MAX_COLLECTION)]
        out = {"type": name, "elements": elements, "size": len(value)}
        if len(value) > MAX_COLLECTION:
            out["not_captured_reason"] = "collectionSize"
        return out
    attrs = getattr(value, "__dict__", None)
    if type(attrs) is not dict:
        return {"type": name, "value": object.__repr__(value)[:MAX_STRING]}
    fields = {k: serialize(v, depth + 1)
              for k, v in itertools.islice(attrs.items(), MAX_FIELDS)}
    out = {"type": name, "fields": fields}
    if len(attrs) > MAX_FIELDS:
        out["not_captured_reason"] = "fieldCount"
    return out


def stack(frame):
    frames = []
    while frame is not None and len(frames) < MAX_FRAMES:
        code = frame.f_code
        frames.append({"function": code.co_qualname, "file_path": code.co_filename,
                       "line_number": frame.f_lineno})
        frame = frame.f_back
    return frames


class TokenBucket:
    """rate snapshots/s with a second's worth of burst; rate 0 = unlimited."""

    def __init__(self, rate):
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def take(self):
        if not self.rate:
            return True
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1.0:
                return False
            self.tokens -= 1.0
            return True


class Probe:
    def __init__(self, fn, rate, max_hits):
        code = fn.__code__
        self.id = str(uuid.uuid4())
        self.names = code.co_varnames[:code.co_argcount]
        self.location = {"code_unit": fn.__module__, "class_name": "",
                         "method_name": code.co_qualname,
                         "line_number": code.co_firstlineno,
                         "file_path": code.co_filename, "language": "python"}
        self.bucket = TokenBucket(rate)
        self.max_hits = max_hits
        self.hits = 0
        self.active = True
        self.sink = collections.deque(maxlen=1000)  # export excluded


def instrument(fn, rate=5.0, max_hits=0):
    """Wrap fn the way an in-process debugger does; rate 0 = every call."""
    probe = Probe(fn, rate, max_hits)

    def wrapper(*args, **kwargs):
        if not probe.active or not probe.bucket.take():
            return fn(*args, **kwargs)
        probe.hits += 1
        if probe.max_hits and probe.hits >= probe.max_hits:
            probe.active = False
        start = time.time_ns()
        arguments = {name: serialize(value)
                     for name, value in zip(probe.names, args)}
        for name, value in kwargs.items():
            arguments[name] = serialize(value)
        result = fn(*args, **kwargs)
        end = time.time_ns()
        thread = threading.current_thread()
        probe.sink.append({
            "id": str(uuid.uuid4()),
            "timestamp": start // 1000000,
            "duration": (end - start) // 1000000,
            "instrumentation_type": "BREAKPOINT",
            "instrumentation": {"location": probe.location},
            "thread": {"id": thread.ident, "name": thread.name},
            "stack": stack(sys._getframe(1)),
            "captures": {
                "entry": {"arguments": arguments},
                "return": {"arguments": arguments,
                           "return_value": serialize(result)},
            },
        })
        return result

    wrapper.probe = probe
    return wrapper
