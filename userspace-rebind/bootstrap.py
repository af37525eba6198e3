# SPDX-License-Identifier: MIT
"""pydi helper bootstrap: command dispatch and target resolution.

The helper (_pydi_helper, C) exec's this source into a fresh module named
_pydi_boot -- it is never imported from a file -- and then calls
dispatch(command_json) -> reply_json for each command the agent sends.

This runs inside someone else's service, possibly on a thread that holds
import locks, so it keeps a strict discipline:
- dispatch never raises, never prints, never uses logging;
- it never calls application code: objects are inspected the way
  inspect.getattr_static does, through raw __dict__s read with the C-level
  descriptors of builtin types -- never getattr, isinstance, repr or str on
  an application object, so no __getattr__, property, descriptor or
  metaclass hook can run;
- it imports nothing the process has not loaded, except side-effect-free
  stdlib modules it needs (json, opcode, gc, os.path; for hooking also dis
  and _weakref), and those lazily;
- it never imports a target: a module that is not in sys.modules is
  FILE_NOT_FOUND.

Resolution hands back code objects, not names: the hooking code works on
code (3.11 bytecode rewrite + __code__ swap, 3.12+ sys.monitoring local
events), so every reference to a function -- aliases, closures, route
tables -- fires.
"""
import sys

HELPER_VERSION = "0.1.0"

# Hooks installed by later commands: key -> object with revert().
# revert-all reverts and empties it.
HOOKS = {}

# The _pydi_helper extension module. The C side sets it, possibly before this
# source runs, so it is not overwritten here.
if "_native" not in globals():
    _native = None

_MISSING = object()

# Code objects whose lines belong to the enclosing function for line probes:
# a line inside one of these, with no code in the enclosing function itself,
# resolves to the nested code. A line in any other nested code (a nested def
# or class) is that code's, and must be probed through its own qualname.
_ANONYMOUS_CODE_NAMES = frozenset(
    ("<lambda>", "<genexpr>", "<listcomp>", "<setcomp>", "<dictcomp>"))

# Nested codes that run only when a definition is made or introspected (3.12
# type parameters, 3.14 lazy annotations): never a line probe's home.
_DEFINITION_TIME_CODE_NAMES = frozenset(("__annotate__", "<annotate>"))

_CO_OPTIMIZED = 0x1
_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ASYNC_GENERATOR = 0x200

# A walk of a module's namespace for file:LINE targets stops after this many
# objects; the gc scan that follows catches what it missed.
_WALK_BUDGET = 200000


class _Fail(Exception):
    """A resolution error, reported as ok:false with an ErrorCause."""

    def __init__(self, cause, message):
        Exception.__init__(self, message)
        self.cause = cause
        self.message = message


def _stdlib(name):
    """A side-effect-free stdlib module: the loaded one if any."""
    module = sys.modules.get(name)
    if module is None:
        __import__(name)
        module = sys.modules[name]
    return module


# -- builtin types, and C-level accessors that never run application code --

def _sample_function():
    pass


class _Sample:
    def method(self):
        pass


_FunctionType = type(_sample_function)
_CodeType = type(_sample_function.__code__)
_MethodType = type(_Sample().method)
_ModuleType = type(sys)
_MappingProxyType = type(type.__dict__)
_GetSetDescriptorType = type(_FunctionType.__dict__["__code__"])
_MemberDescriptorType = type(_FunctionType.__dict__["__globals__"])
_BUILTIN_CALLABLE_TYPES = (
    type(len),                                  # builtin_function_or_method
    type((0).__add__),                          # method-wrapper
    type(object.__dict__["__init__"]),          # wrapper_descriptor
    type(str.__dict__["join"]),                 # method_descriptor
    type(dict.__dict__["fromkeys"]),            # classmethod_descriptor
)
del _Sample


def _make_cell_type():
    value = None

    def reader():
        return value
    return type(reader.__closure__[0])


_CellType = _make_cell_type()
del _make_cell_type

_type_dict = type.__dict__["__dict__"].__get__
_type_mro = type.__dict__["__mro__"].__get__
_type_qualname = type.__dict__["__qualname__"].__get__
_type_module = type.__dict__["__module__"].__get__
_func_code = _FunctionType.__dict__["__code__"].__get__
_func_dict = _FunctionType.__dict__["__dict__"].__get__
_func_qualname = _FunctionType.__dict__["__qualname__"].__get__
_func_module = _FunctionType.__dict__["__module__"].__get__
_func_closure = _FunctionType.__dict__["__closure__"].__get__
_method_func = _MethodType.__dict__["__func__"].__get__
_staticmethod_func = staticmethod.__dict__["__func__"].__get__
_classmethod_func = classmethod.__dict__["__func__"].__get__
_property_accessors = tuple(property.__dict__[name].__get__
                            for name in ("fget", "fset", "fdel"))
_cell_contents = _CellType.__dict__["cell_contents"].__get__
_module_dict = _ModuleType.__dict__["__dict__"].__get__
_type_flags = type.__dict__["__flags__"].__get__
_object_getattribute = object.__getattribute__
_C_DESCRIPTOR_TYPES = (_GetSetDescriptorType, _MemberDescriptorType)

# Py_TPFLAGS_MANAGED_DICT (3.11+): an instance keeps its attributes in inline
# values until something asks for its __dict__. On 3.11 and 3.12 that moves
# them into a new dict for good, and every later attribute access on the
# object takes the interpreter's slower path: a FastAPI app whose route
# objects pydi had read this way served 3 % fewer requests.
_TPFLAGS_MANAGED_DICT = 1 << 4


def _items(mapping):
    """(key, value) pairs of a real dict or a class's mappingproxy."""
    t = type(mapping)
    if t is _MappingProxyType:
        return list(mapping.items())
    if t is dict or issubclass(t, dict):
        return list(dict.items(mapping))
    return []


def _raw_get(mapping, name):
    """mapping[name] without hashing or comparing any non-str key (whose
    __eq__ could be application code)."""
    if mapping is None:
        return _MISSING
    for key, value in _items(mapping):
        if type(key) is str and key == name:
            return value
    return _MISSING


def _mro(cls):
    try:
        mro = _type_mro(cls)
    except Exception:
        return ()
    return mro if type(mro) is tuple else ()


def _class_dict(cls):
    try:
        return _type_dict(cls)
    except Exception:
        return None


def _class_lookup(cls, name):
    """The raw attribute of a class, from its MRO's dicts."""
    for base in _mro(cls):
        value = _raw_get(_class_dict(base), name)
        if value is not _MISSING:
            return value
    return _MISSING


def _is_class(obj):
    return issubclass(type(obj), type)


def _instance_dict(obj):
    """obj.__dict__, read only through a C-level descriptor: a __dict__
    provided by a property or a Python descriptor is not read."""
    t = type(obj)
    if t is _FunctionType:
        return _func_dict(obj)
    if t is _ModuleType:
        return _module_dict(obj)
    descriptor = _class_lookup(t, "__dict__")
    if type(descriptor) not in _C_DESCRIPTOR_TYPES:
        return None
    try:
        value = descriptor.__get__(obj, t)
    except Exception:
        return None
    return value if issubclass(type(value), dict) else None


def _managed_dict(t):
    """Instances of t keep inline values until asked for their __dict__."""
    return bool(_type_flags(t) & _TPFLAGS_MANAGED_DICT)


_NOT_LOOKED_UP = object()


def _own_attr(obj, name, class_value=_NOT_LOOKED_UP):
    """obj's own attribute `name` (an entry of its __dict__), or _MISSING.
    An instance whose __dict__ does not exist yet keeps it that way: it is
    read the way the app's own `obj.name` reads it. class_value: what the
    caller's _class_lookup(type(obj), name) already found."""
    t = type(obj)
    if not _managed_dict(t):
        return _raw_get(_instance_dict(obj), name)
    if class_value is _NOT_LOOKED_UP:
        class_value = _class_lookup(t, name)
    if (class_value is not _MISSING
            and _class_lookup(type(class_value), "__get__") is not _MISSING):
        # Without an own entry, object.__getattribute__ would call this
        # descriptor (perhaps app code): read the __dict__ instead.
        return _raw_get(_instance_dict(obj), name)
    try:
        value = _object_getattribute(obj, name)
    except Exception:
        return _MISSING
    return _MISSING if value is class_value else value


def _is_data_descriptor(value):
    t = type(value)
    return (_class_lookup(t, "__set__") is not _MISSING
            or _class_lookup(t, "__delete__") is not _MISSING)


def _lookup(obj, name):
    """getattr(obj, name) done statically: (raw value, how found), how being
    module | class | metaclass | instance | type; (_MISSING, None)."""
    t = type(obj)
    if issubclass(t, type):
        value = _class_lookup(obj, name)
        if value is not _MISSING:
            return value, "class"
        value = _class_lookup(t, name)
        if value is not _MISSING:
            return value, "metaclass"
        return _MISSING, None
    if issubclass(t, _ModuleType):
        value = _raw_get(_instance_dict(obj), name)
        return (value, "module") if value is not _MISSING else (_MISSING, None)
    class_value = _class_lookup(t, name)
    if class_value is not _MISSING and _is_data_descriptor(class_value):
        return class_value, "type"
    value = _own_attr(obj, name, class_value)
    if value is not _MISSING:
        return value, "instance"
    if class_value is not _MISSING:
        return class_value, "type"
    return _MISSING, None


def _type_label(t):
    """'module.Qualname' of a type, read from its C slots."""
    try:
        qualname = _type_qualname(t)
    except Exception:
        qualname = None
    try:
        module = _type_module(t)
    except Exception:
        module = None
    if type(qualname) is not str:
        qualname = "?"
    if type(module) is str and module != "builtins":
        return module + "." + qualname
    return qualname


def _str_or_none(value):
    return value if type(value) is str else None


# -- functools objects, found only if functools is loaded --

def _functools_type(name):
    """functools.<name> if functools (or _functools) is loaded and it is a
    plain class."""
    for module_name in ("functools", "_functools"):
        module = sys.modules.get(module_name)
        if module is None:
            continue
        value = _raw_get(_instance_dict(module), name)
        if value is not _MISSING and type(value) is type:
            return value
    return None


def _partial_func(obj):
    """.func of a functools.partial / partialmethod, or _MISSING."""
    t = type(obj)
    for name in ("partial", "partialmethod"):
        ptype = _functools_type(name)
        if ptype is None or not issubclass(t, ptype):
            continue
        descriptor = _class_lookup(ptype, "func")
        if type(descriptor) in _C_DESCRIPTOR_TYPES:
            try:
                return descriptor.__get__(obj, t)
            except Exception:
                return _MISSING
        return _own_attr(obj, "func")
    return _MISSING


def _cached_property_func(obj):
    """.func of a functools.cached_property, or _MISSING."""
    ptype = _functools_type("cached_property")
    if ptype is None or not issubclass(type(obj), ptype):
        return _MISSING
    return _own_attr(obj, "func")


def _wrapped_of(obj):
    """obj.__wrapped__ (set by functools.wraps) from its own __dict__."""
    if issubclass(type(obj), (staticmethod, classmethod)):
        return _MISSING
    return _own_attr(obj, "__wrapped__")


# -- code objects and their lines --

_OPCODES = None


def _opcodes():
    """(CACHE, RESUME, opcodes that never start a line event)."""
    global _OPCODES
    if _OPCODES is None:
        opmap = _stdlib("opcode").opmap
        names = ["RESUME"]
        if sys.version_info >= (3, 12):
            # sys.monitoring never puts a LINE event on these
            # (instrumentation.c initialize_lines).
            names += ["END_FOR", "END_SEND", "END_ASYNC_FOR", "POP_ITER"]
        _OPCODES = (opmap.get("CACHE", 0), opmap["RESUME"],
                    frozenset(opmap[n] for n in names if n in opmap))
    return _OPCODES


def executable_lines(code):
    """Lines of code where a line event fires when they run (3.11 settrace
    'line', 3.12+ sys.monitoring LINE), lines of nested codes excluded.

    Every instruction up to and including the first RESUME is prologue
    (COPY_FREE_VARS, MAKE_CELL, RETURN_GENERATOR + POP_TOP, RESUME): CPython
    traces nothing before _co_firsttraceable, and RESUME reports a call, not
    a line. So the def line of a function (and the first decorator line,
    which is co_firstlineno of a decorated function) is not executable
    unless real code shares it, as in `def f(): return 1`. RESUME after a
    yield/await and, from 3.12, END_FOR/END_SEND/END_ASYNC_FOR/POP_ITER
    never start a line either.
    """
    cache, resume, no_line = _opcodes()
    raw = code.co_code
    first = -2
    for offset in range(0, len(raw), 2):
        if raw[offset] == resume:
            first = offset
            break
    lines = set()
    for start, end, line in code.co_lines():
        if line is None or line in lines:
            continue
        for offset in range(max(start, first + 2), end, 2):
            op = raw[offset]
            if op != cache and op not in no_line:
                lines.add(line)
                break
    return lines


def _code_lines(code):
    """Every line with any instruction (for spans, not for probing)."""
    return set(line for _, _, line in code.co_lines() if line is not None)


def _code_kind(code):
    flags = code.co_flags
    if flags & _CO_ASYNC_GENERATOR:
        return "async_generator"
    if flags & _CO_COROUTINE:
        return "coroutine_function"
    if flags & _CO_GENERATOR:
        return "generator"
    return "function"


def _nested_codes(code):
    """[(nested code, the code whose co_consts holds it)], depth first."""
    found = []
    seen = {id(code)}
    stack = [code]
    while stack:
        parent = stack.pop()
        for const in parent.co_consts:
            if type(const) is _CodeType and id(const) not in seen:
                seen.add(id(const))
                found.append((const, parent))
                stack.append(const)
    return found


def _is_anonymous(code):
    return code.co_name in _ANONYMOUS_CODE_NAMES


def _is_definition_time(code):
    name = code.co_name
    return (name in _DEFINITION_TIME_CODE_NAMES
            or name.startswith("<generic parameters of"))


class _Lines:
    """Executable lines per code object, computed once per command."""

    def __init__(self):
        self.executable = {}
        self.spans = {}

    def of(self, code):
        lines = self.executable.get(id(code))
        if lines is None:
            lines = self.executable[id(code)] = executable_lines(code)
        return lines

    def span(self, code, nested=()):
        """(first, last) line of code and the given nested codes."""
        key = (id(code), len(nested))
        span = self.spans.get(key)
        if span is None:
            lines = _code_lines(code)
            for child in nested:
                lines |= _code_lines(child)
            lines.add(code.co_firstlineno)
            span = self.spans[key] = (min(lines), max(lines))
        return span


def _ranges(lines, limit=12):
    """'8-10, 14' for [8, 9, 10, 14]."""
    lines = sorted(lines)
    parts = []
    start = prev = None
    for line in lines:
        if prev is not None and line == prev + 1:
            prev = line
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = line
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    if len(parts) > limit:
        parts = parts[:limit] + ["..."]
    return ", ".join(parts)


def _nearest(lines, line):
    before = [l for l in lines if l < line]
    after = [l for l in lines if l > line]
    near = []
    if before:
        near.append(str(max(before)))
    if after:
        near.append(str(min(after)))
    return ", ".join(near) if near else "none"


def _where_code_is(lines, line):
    """'lines 8-10, 14 have code); nearest: 10, 14' (closes a parenthesis
    the caller opened)."""
    if not lines:
        return "no line has code)"
    have = "line {} has" if len(lines) == 1 else "lines {} have"
    return (have.format(_ranges(lines)) + " code); nearest: "
            + _nearest(lines, line))


def _a(word):
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


# -- source text, only to word messages --

_SOURCE_CACHE = [None, None]    # [(filename, mtime, size), lines]


def _source_lines(filename):
    """The lines of a source file (read once while it is unchanged), or
    None."""
    try:
        if type(filename) is not str:
            return None
        st = _stdlib("os").stat(filename)
        key = (filename, st.st_mtime_ns, st.st_size)
        if _SOURCE_CACHE[0] != key:
            with open(filename, "rb") as f:
                data = f.read(16 << 20)
            _SOURCE_CACHE[1] = data.decode("utf-8", "replace").splitlines()
            _SOURCE_CACHE[0] = key
        return _SOURCE_CACHE[1]
    except Exception:
        return None


def _source_line(filename, line):
    """The text of a line of a file ('' past its end), or None."""
    lines = _source_lines(filename)
    if lines is None:
        return None
    if 1 <= line <= len(lines):
        return lines[line - 1]
    return ""


def _source_line_count(filename):
    lines = _source_lines(filename)
    return None if lines is None else len(lines)


def _describe_line(filename, line, header):
    """Why a line has no code: 'a blank line', 'the def line', ..."""
    text = _source_line(filename, line)
    if text is None:
        return None
    stripped = text.strip()
    if not stripped:
        return "a blank line"
    if stripped.startswith("#"):
        return "a comment"
    if stripped.startswith("@"):
        return "a decorator line, which runs at definition, not per call"
    if stripped.startswith(("def ", "async def ")):
        return "the def line, which runs at definition, not per call"
    if header:
        return "part of the signature or docstring"
    if stripped.startswith(("'''", '"""', "'", '"')):
        return "part of a string or docstring"
    return "a line without bytecode (continuation, else:, a constant)"


# -- the target's module --

def _os_path():
    return _stdlib("os.path")


def _absolute(filename):
    path = _os_path()
    try:
        if not path.isabs(filename):
            filename = path.join(_stdlib("os").getcwd(), filename)
    except Exception:
        pass
    return path.normpath(filename)


def _module_file(module):
    return _str_or_none(_raw_get(_instance_dict(module), "__file__"))


def _main_module_name(main):
    """The name __main__ runs as: __spec__.name (python -m) or the stem of
    __file__ (python app.py); None for -c, stdin, the REPL."""
    namespace = _instance_dict(main)
    spec = _raw_get(namespace, "__spec__")
    if spec is not _MISSING and spec is not None:
        name = _own_attr(spec, "name")
        if type(name) is str and name:
            return name
    filename = _str_or_none(_raw_get(namespace, "__file__"))
    if filename:
        path = _os_path()
        return path.splitext(path.basename(filename))[0] or None
    return None


def _canonical_name(key, module):
    if key == "__main__":
        return _main_module_name(module) or "__main__"
    return key


def _close_names(name, names, limit=5):
    names = [n for n in names if type(n) is str]
    if not name.startswith("__"):
        names = [n for n in names if not n.startswith("__")]
    difflib = sys.modules.get("difflib")
    if difflib is not None:
        try:
            close = difflib.get_close_matches(name, names, n=limit, cutoff=0.6)
            if close:
                return close
        except Exception:
            pass
    lowered = name.lower()
    prefix = lowered[:3]
    close = sorted(n for n in set(names)
                   if n.lower().startswith(prefix) or lowered in n.lower())
    return close[:limit]


def _find_modules(name):
    """[(sys.modules key, module)] the target's module name denotes.

    `python app.py` runs app as __main__: `app` finds it. If app is ALSO
    imported (a second copy, e.g. by a server's import string) and both have
    the same file, both are returned and resolution hooks the code of both
    copies: which one serves requests cannot be known statically, and
    neither is ever imported by pydi."""
    modules = sys.modules
    direct = dict.get(modules, name)
    main = dict.get(modules, "__main__")
    found = []
    if direct is not None:
        found.append((name, direct))
    if (name != "__main__" and main is not None and main is not direct
            and _main_module_name(main) == name):
        if direct is None:
            found.append(("__main__", main))
        else:
            main_file = _module_file(main)
            direct_file = _module_file(direct)
            if (main_file and direct_file
                    and _absolute(main_file) == _absolute(direct_file)):
                found.append(("__main__", main))
    if found:
        return found
    message = (f"module {name!r} is not loaded in this process; pydi never "
               f"imports anything, it resolves only modules the service "
               f"has already imported")
    close = _close_names(name, list(dict.keys(modules)), limit=3)
    if main is not None:
        main_name = _main_module_name(main)
        if main_name:
            close = [n for n in close if n != main_name]
            message += f" (__main__ runs as {main_name!r})"
    if close:
        message += "; loaded modules with close names: " + ", ".join(close)
    raise _Fail("FILE_NOT_FOUND", message)


# -- what a name denotes --

def _kind_of(obj, how):
    """The kind of the object a qualname names (None: not callable)."""
    t = type(obj)
    if t is _FunctionType:
        if how in ("class", "type"):
            return "method"
        return _code_kind(_func_code(obj))
    if t is _MethodType:
        return "method"
    if issubclass(t, staticmethod):
        return "staticmethod"
    if issubclass(t, classmethod):
        return "classmethod"
    if _partial_func(obj) is not _MISSING:
        return "partial"
    if (issubclass(t, property)
            or _cached_property_func(obj) is not _MISSING):
        return "property"
    if t in _BUILTIN_CALLABLE_TYPES:
        return "builtin"
    if issubclass(t, type):
        return "class"
    if issubclass(t, _ModuleType):
        return "module"
    call = _class_lookup(t, "__call__")
    if call is _MISSING:
        return None
    if type(call) is _FunctionType or issubclass(
            type(call), (staticmethod, classmethod)):
        return "callable_instance"
    return "builtin"


def _codes_of(obj, follow_wrapped):
    """(code objects, wrapped_available, why codeless) of a callable:
    bound methods, static/class methods, partials (.func), properties
    (accessors) and callable instances (type(x).__call__) unwrapped;
    __wrapped__ followed only if asked."""
    wrapped_available = False
    for _ in range(64):
        if follow_wrapped:
            wrapped = _wrapped_of(obj)
            if wrapped is not _MISSING:
                obj = wrapped
                continue
        t = type(obj)
        if t is _FunctionType:
            if _wrapped_of(obj) is not _MISSING:
                wrapped_available = True
            return [_func_code(obj)], wrapped_available, None
        if t is _CodeType:
            return [obj], wrapped_available, None
        if t is _MethodType:
            obj = _method_func(obj)
            continue
        if issubclass(t, staticmethod):
            obj = _staticmethod_func(obj)
            continue
        if issubclass(t, classmethod):
            obj = _classmethod_func(obj)
            continue
        func = _partial_func(obj)
        if func is _MISSING:
            func = _cached_property_func(obj)
        if func is not _MISSING:
            obj = func
            continue
        if issubclass(t, property):
            codes = []
            for accessor in _property_accessors:
                value = accessor(obj)
                if value is not None:
                    sub, available, _ = _codes_of(value, follow_wrapped)
                    codes += sub
                    wrapped_available = wrapped_available or available
            return (codes, wrapped_available,
                    None if codes else "a property without Python accessors")
        if t in _BUILTIN_CALLABLE_TYPES:
            return [], wrapped_available, f"a builtin ({_type_label(t)})"
        if issubclass(t, type):
            return [], wrapped_available, f"a class ({_type_label(obj)})"
        if issubclass(t, _ModuleType):
            return [], wrapped_available, "a module"
        call = _class_lookup(t, "__call__")
        if call is _MISSING:
            return [], wrapped_available, f"not callable ({_type_label(t)})"
        if type(call) is _FunctionType or issubclass(
                type(call), (staticmethod, classmethod)):
            obj = call
            continue
        if _wrapped_of(obj) is not _MISSING:
            wrapped_available = True
        return ([], wrapped_available,
                f"a callable {_type_label(t)} instance without a Python "
                f"__call__")
    return [], wrapped_available, "a chain of wrappers too deep to follow"


def _container_label(obj, key, label, done):
    """'module resolve_app (sys.modules["__main__"])', 'class app.Handler'."""
    if not done:
        if key == label:
            return f"module {label}"
        return f"module {label} (sys.modules[{key!r}])"
    name = label + "." + ".".join(done)
    if _is_class(obj):
        return f"class {name}"
    return f"{name} ({_type_label(type(obj))})"


def _names_of(obj):
    t = type(obj)
    names = set()
    if issubclass(t, type):
        for base in _mro(obj):
            if base is not object:
                names.update(k for k, _ in _items(_class_dict(base)))
        return names
    if not _managed_dict(t):
        # Listing a managed-dict instance's own names would create its
        # __dict__ (see _own_attr): its close names come from its class.
        names.update(k for k, _ in _items(_instance_dict(obj)))
    if not issubclass(t, _ModuleType):
        for base in _mro(t):
            if base is not object:
                names.update(k for k, _ in _items(_class_dict(base)))
    return names


def _not_found(obj, part, key, label, done):
    container = _container_label(obj, key, label, done)
    message = f"{part!r} not found in {container}"
    close = _close_names(part, _names_of(obj))
    if close:
        message += "; close names: " + ", ".join(close)
    # A dynamic attribute pydi will not compute: it would be app code.
    hook = _MISSING
    if issubclass(type(obj), _ModuleType):
        hook = _raw_get(_instance_dict(obj), "__getattr__")
        where = "the module defines"
        if hook is _MISSING:
            hook = _class_lookup(type(obj), "__getattr__")
            where = "its module class defines"
    elif _is_class(obj):
        hook = _class_lookup(type(obj), "__getattr__")
        where = "its metaclass defines"
    else:
        hook = _class_lookup(type(obj), "__getattr__")
        where = "its class defines"
    if hook is not _MISSING and hook is not None:
        message += (f" ({where} __getattr__, which pydi never calls: only "
                    f"names that exist statically can be probed)")
    return _Fail("METHOD_NOT_FOUND", message)


class _Found:
    """What one qualname resolved to in one module copy."""

    def __init__(self, key, kind, codes, wrapped_available=False,
                 codeless=None, parents=None):
        self.key = key
        self.kind = kind
        self.codes = codes              # [code]
        self.wrapped_available = wrapped_available
        self.codeless = codeless        # why there is no code, or None
        self.parents = parents or {}    # id(code) -> enclosing code


def _walk(module, key, label, parts, follow_wrapped, line, lines):
    obj, how = module, "module"
    done = []
    for index, part in enumerate(parts):
        if part == "<locals>":
            return _walk_locals(obj, key, label, parts, index, line, lines)
        value, found_how = _lookup(obj, part)
        if value is _MISSING:
            raise _not_found(obj, part, key, label, done)
        obj, how = value, found_how
        done.append(part)
    name = label + ":" + ".".join(parts)
    kind = _kind_of(obj, how)
    if kind in (None, "class", "module"):
        what = {"class": "a class", "module": "a module"}.get(
            kind, _a(_type_label(type(obj))) + ", not callable")
        hint = ""
        if kind == "class":
            hint = (f"; name one of its methods, e.g. "
                    f"{'.'.join(parts)}.__init__")
        raise _Fail("METHOD_NOT_FOUND", f"{name} is {what}{hint}")
    codes, wrapped_available, codeless = _codes_of(obj, follow_wrapped)
    return _Found(key, kind, codes, wrapped_available, codeless)


def _walk_locals(obj, key, label, parts, index, line, lines):
    """`outer.<locals>.inner`: found through code objects, since inner may
    not exist as a function yet (we hook code). Searched in the named
    function's code and, failing that, in what it wraps (__wrapped__)."""
    name = label + ":" + ".".join(parts)
    rest = ".".join(parts[index + 1:])
    if index == 0 or not rest:
        raise _Fail("METHOD_NOT_FOUND", f"{name}: <locals> must sit between "
                    f"a function and a nested name")
    roots = []
    for follow in (False, True):
        for code in _codes_of(obj, follow)[0]:
            if all(code is not r for r in roots):
                roots.append(code)
    if not roots:
        raise _Fail("METHOD_NOT_FOUND",
                    f"{label}:{'.'.join(parts[:index])} has no Python code "
                    f"to hold nested functions")
    for root in roots:
        wanted = root.co_qualname + ".<locals>." + rest
        nested = _nested_codes(root)
        parents = {id(c): p for c, p in nested}
        matches = [c for c, _ in nested if c.co_qualname == wanted]
        if not matches:
            continue
        if len(matches) > 1 and line is not None:
            # A line picks one of several same-named definitions.
            holding = []
            for code in matches:
                family = [c for c, _ in _nested_codes(code)]
                first, last = lines.span(code, family)
                if first <= line <= last:
                    holding.append(code)
            if len(holding) == 1:
                matches = holding
        if len(matches) > 1:
            firsts = ", ".join(str(c.co_firstlineno) for c in matches)
            raise _Fail("OVERLOADED_METHODS",
                        f"{name} names {len(matches)} functions (defined at "
                        f"lines {firsts} of {matches[0].co_filename}); probe "
                        f"a line inside the one you mean")
        code = matches[0]
        return _Found(key, _code_kind(code), [code], parents=parents)
    roots_text = ", ".join(r.co_qualname for r in roots)
    close = set()
    for root in roots:
        prefix = root.co_qualname + ".<locals>."
        close.update(c.co_qualname[len(prefix):]
                     for c, _ in _nested_codes(root)
                     if c.co_qualname.startswith(prefix))
    message = f"{rest!r} not found among the nested code of {roots_text}"
    close = _close_names(rest, close)
    if close:
        message += "; nested names: " + ", ".join(close)
    raise _Fail("METHOD_NOT_FOUND", message)


# -- lines --

def _line_in_family(root, line, lines, module_label, label):
    """The code(s) holding an executable `line` in root's function: root
    itself, else a lambda/genexpr/comprehension nested in it. Raises
    LINE_NOT_EXECUTABLE (naming the nested def for a line inside one)."""
    nested = _nested_codes(root)
    parents = {id(c): p for c, p in nested}
    codes = [root] + [c for c, _ in nested if not _is_definition_time(c)]
    candidates = [c for c in codes if line in lines.of(c)]
    candidate_ids = set(id(c) for c in candidates)

    def path(code):
        """Codes from code up to (not including) root."""
        chain = []
        while code is not None and code is not root:
            chain.append(code)
            code = parents.get(id(code))
        return chain

    chosen = [c for c in candidates
              if not any(id(a) in candidate_ids for a in path(c)[1:])]
    # Lines of root's own function: root and its anonymous nested codes.
    own = set(lines.of(root))
    for code in codes[1:]:
        if all(_is_anonymous(c) for c in path(code)):
            own |= lines.of(code)
    in_function = [c for c in chosen
                   if all(_is_anonymous(a) for a in path(c))]
    if in_function:
        return in_function, parents
    # The line has code only in a nested def (or none at all): name it.
    # The innermost named code on the way up is the function to probe.
    named_holders = [[a for a in path(c) if not _is_anonymous(a)][0]
                     for c in chosen]
    if not named_holders:
        for code in codes[1:]:
            chain = path(code)
            if _is_anonymous(code) or any(not _is_anonymous(c)
                                          for c in chain[1:]):
                continue
            family = [c for c, _ in _nested_codes(code)]
            first, last = lines.span(code, family)
            if first <= line <= last:
                named_holders.append(code)
    if named_holders:
        inner = named_holders[0]
        inner_lines = set(lines.of(inner))
        for child, _ in _nested_codes(inner):
            if _is_anonymous(child):
                inner_lines |= lines.of(child)
        qualname = inner.co_qualname
        what = "function" if inner.co_flags & _CO_OPTIMIZED else "class"
        if line in inner_lines:
            advice = f"probe {module_label}:{qualname}@{line}"
        else:
            advice = (f"it has no code there either (lines "
                      f"{_ranges(inner_lines)} have code in it)")
        raise _Fail("LINE_NOT_EXECUTABLE",
                    f"line {line} is inside the nested {what} "
                    f"{module_label}.{qualname}, not in {label}: {advice} "
                    f"(lines {_ranges(own)} have code in {label}); nearest: "
                    f"{_nearest(own, line)}")
    first, last = lines.span(root, [c for c, _ in nested])
    if line < first or line > last:
        raise _Fail("LINE_NOT_EXECUTABLE",
                    f"line {line} is outside {label} (lines {first}-{last}; "
                    f"{_where_code_is(own, line)}")
    header = bool(own) and line < min(own)
    why = _describe_line(root.co_filename, line, header)
    why = f": {why}" if why else ""
    raise _Fail("LINE_NOT_EXECUTABLE",
                f"line {line} has no code in {label}{why} "
                f"({_where_code_is(own, line)}")


# -- replies --

def _functions_for(codes):
    """id(code) -> [function objects whose __code__ is that code]. May be
    empty: a nested function that has not been created yet."""
    result = dict((id(c), []) for c in codes)
    if not codes:
        return result
    wanted = dict((id(c), c) for c in codes)
    referrers = _stdlib("gc").get_referrers(*codes)
    try:
        for ref in referrers:
            if type(ref) is _FunctionType:
                code = _func_code(ref)
                if wanted.get(id(code)) is code:
                    result[id(code)].append({
                        "id": id(ref),
                        "qualname": _str_or_none(_func_qualname(ref)),
                        "module": _str_or_none(_func_module(ref)),
                    })
    finally:
        del referrers
    return result


def _code_entries(codes, parents, roles, lines):
    functions = _functions_for(codes)
    entries = []
    for code in codes:
        parent = parents.get(id(code))
        entries.append({
            "code_id": id(code),
            "qualname": code.co_qualname,
            "name": code.co_name,
            "file": code.co_filename,
            "first_line": code.co_firstlineno,
            "lines": sorted(lines.of(code)),
            "code_kind": _code_kind(code),
            "role": roles.get(id(code), "target"),
            "parent_code_id": id(parent) if parent is not None else None,
            "functions": functions[id(code)],
            "_code": code,      # for hook; _resolve strips private keys
        })
    return entries


def _unique(codes):
    seen = set()
    out = []
    for code in codes:
        if id(code) not in seen:
            seen.add(id(code))
            out.append(code)
    return out


# -- resolve --

def _parse_line(text, target):
    text = text.strip()
    if not text.isdigit() or int(text) < 1:
        raise _Fail("RUNTIME_ERROR", f"bad target {target!r}: {text!r} is "
                    f"not a line number")
    return int(text)


_TARGET_FORMS = ("expected module:qualname, module:qualname@LINE or "
                 "path/file.py:LINE")


def _parse_target(target):
    if type(target) is not str or not target.strip():
        raise _Fail("RUNTIME_ERROR", "bad command: 'target' must be a "
                    "non-empty string; " + _TARGET_FORMS)
    target = target.strip()
    head, sep, tail = target.rpartition(":")
    if sep and (head.endswith(".py") or "/" in head):
        tail = tail.strip()
        if not tail.isdigit():
            raise _Fail("RUNTIME_ERROR", f"bad target {target!r}: a file "
                        f"target takes a line number after ':'; to name a "
                        f"function use module:qualname")
        return "file", head, None, _parse_line(tail, target)
    module, sep, rest = target.partition(":")
    module = module.strip()
    if not sep or not module or not rest.strip():
        raise _Fail("RUNTIME_ERROR", f"bad target {target!r}: {_TARGET_FORMS}")
    qualname, at, line_text = rest.partition("@")
    qualname = qualname.strip()
    line = _parse_line(line_text, target) if at else None
    if not qualname or any(not p for p in qualname.split(".")):
        raise _Fail("RUNTIME_ERROR", f"bad target {target!r}: empty name in "
                    f"qualname {qualname!r}")
    return "qualname", module, qualname, line


def _resolve(command):
    resolved = _resolve_objects(command)
    reply = _public(resolved)
    _add_routes(reply, resolved)
    return reply


def _public(reply):
    """A resolve reply without the private keys that carry objects."""
    reply = dict((k, v) for k, v in reply.items() if k[:1] != "_")
    if "codes" in reply:
        reply["codes"] = [dict((k, v) for k, v in entry.items()
                               if k[:1] != "_") for entry in reply["codes"]]
    return reply


def _resolve_objects(command):
    """The resolve reply, its code entries carrying "_code" (the object) and
    the reply "_parents" (id(code) -> enclosing code, whole families)."""
    target = command.get("target")
    form, where, qualname, line = _parse_target(target)
    follow_wrapped = command.get("follow_wrapped") is True
    if form == "file":
        return _resolve_file(target.strip(), where, line)
    return _resolve_qualname(target.strip(), where, qualname, line,
                             follow_wrapped)


def _resolve_qualname(target, module_name, qualname, line, follow_wrapped):
    lines = _Lines()
    modules = _find_modules(module_name)
    parts = qualname.split(".")
    found = []
    failure = None
    for key, module in modules:
        try:
            found.append(_walk(module, key, module_name, parts,
                               follow_wrapped, line, lines))
        except _Fail as fail:
            if failure is None:
                failure = fail
    if not found:
        raise failure
    first = found[0]
    label = module_name + "." + qualname
    codes = _unique(c for f in found for c in f.codes)
    parents = {}
    for f in found:
        parents.update(f.parents)
    roles = {}
    reply = {
        "ok": True,
        "target": target,
        "module": _canonical_name(first.key,
                                  dict.get(sys.modules, first.key)),
        "module_object": first.key,
        "module_objects": [f.key for f in found],
        "object": qualname,
        "kind": first.kind,
        "line": line,
        "line_code_id": None,
        "line_code_ids": [],
    }
    if not codes:
        why = first.codeless or "without Python code"
        hint = ""
        if first.wrapped_available:
            hint = ("; it wraps a Python function (__wrapped__): resolve "
                    "with follow_wrapped to probe that")
        if line is not None:
            raise _Fail("LINE_NOT_EXECUTABLE",
                        f"{module_name}:{qualname} is {why}: it has no Python "
                        f"code, so no line of it can be probed{hint}")
        reply["hookable"] = False
        reply["message"] = (f"{module_name}:{qualname} is {why}: it has no "
                            f"Python code to hook{hint}")
    else:
        reply["hookable"] = True
    if any(f.wrapped_available for f in found) and not follow_wrapped:
        reply["wrapped_available"] = True
    line_codes = []
    if line is not None:
        # The line must be in at least one of the codes (a property's
        # accessors are several codes; two module copies hold it twice).
        failure = None
        for code in codes:
            code_label = label
            if code.co_qualname != qualname:
                code_label = f"{label} (whose code is {code.co_qualname})"
            try:
                chosen, family_parents = _line_in_family(
                    code, line, lines, module_name, code_label)
            except _Fail as fail:
                if failure is None:
                    failure = fail
                continue
            for child in chosen:
                if id(child) not in parents and child is not code:
                    parents[id(child)] = family_parents.get(id(child))
                line_codes.append(child)
            # The rest of the family, for hooking's enclosing-code chain.
            for key, parent in family_parents.items():
                parents.setdefault(key, parent)
        if not line_codes:
            if first.wrapped_available and not follow_wrapped:
                failure.message += ("; it wraps a Python function "
                                    "(__wrapped__): resolve with "
                                    "follow_wrapped to probe its lines")
            raise failure
        line_codes = _unique(line_codes)
        for child in line_codes:
            roles[id(child)] = "target" if any(
                child is c for c in codes) else "line"
        reply["line_code_ids"] = [id(c) for c in line_codes]
        reply["line_code_id"] = id(line_codes[0])
    all_codes = _unique(list(codes) + line_codes)
    reply["codes"] = _code_entries(all_codes, parents, roles, lines)
    reply["_parents"] = parents
    return reply


def _modules_with_file(path):
    """[(key, module, absolute file)] of loaded modules whose __file__ is
    path (absolute) or ends with it on a path-component boundary."""
    os_path = _os_path()
    wanted = os_path.normpath(path)
    wanted_absolute = _absolute(wanted)
    matches = []
    same_base = []
    base = os_path.basename(wanted)
    for key, module in list(dict.items(sys.modules)):
        if module is None:
            continue
        filename = _module_file(module)
        if not filename:
            continue
        full = _absolute(filename)
        if (full == wanted_absolute
                or (not os_path.isabs(wanted)
                    and full.endswith(os_path.sep + wanted))):
            matches.append((key, module, full))
        elif os_path.basename(full) == base:
            same_base.append(full)
    files = sorted(set(m[2] for m in matches))
    if len(files) > 1:
        exact = [m for m in matches if m[2] == wanted_absolute]
        if exact:
            return exact
        raise _Fail("FILE_NOT_FOUND",
                    f"{path!r} is ambiguous: {len(files)} loaded modules "
                    f"match ({', '.join(files[:5])}); give more of the path")
    if not matches:
        message = (f"no loaded module has the file {path!r}; pydi never "
                   f"imports anything, it resolves only modules the service "
                   f"has already imported")
        if same_base:
            message += ("; loaded files with that name: "
                        + ", ".join(sorted(set(same_base))[:3]))
        raise _Fail("FILE_NOT_FOUND", message)
    return matches


class _FileCodes:
    """Code objects of one source file, reachable from live objects."""

    def __init__(self, files):
        self.files = files          # absolute filenames
        self.absolute = {}          # co_filename -> absolute
        self.roots = []             # [code]
        self.origin = {}            # id(code) -> sys.modules key
        self.parents = {}           # id(code) -> enclosing code
        self.codes = []
        self.ids = set()

    def in_file(self, code):
        name = code.co_filename
        full = self.absolute.get(name)
        if full is None:
            full = self.absolute[name] = _absolute(name)
        return full in self.files

    def add_root(self, code, key):
        if id(code) not in self.ids and self.in_file(code):
            self.ids.add(id(code))
            self.codes.append(code)
            self.origin[id(code)] = key
            for child, parent in _nested_codes(code):
                self.parents[id(child)] = parent
                if id(child) not in self.ids:
                    self.ids.add(id(child))
                    self.codes.append(child)
                    self.origin[id(child)] = key

    def walk_module(self, key, module):
        """Functions, classes (nested too), their methods and descriptors,
        and what functions wrap or close over, from the module's namespace.
        Instances and other modules are not entered."""
        stack = [v for _, v in _items(_instance_dict(module))]
        seen = set()
        budget = _WALK_BUDGET
        while stack and budget > 0:
            budget -= 1
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            t = type(obj)
            if t is _FunctionType:
                self.add_root(_func_code(obj), key)
                wrapped = _wrapped_of(obj)
                if wrapped is not _MISSING:
                    stack.append(wrapped)
                closure = _func_closure(obj)
                if type(closure) is tuple:
                    for cell in closure:
                        try:
                            stack.append(_cell_contents(cell))
                        except Exception:
                            pass
            elif t is _MethodType:
                stack.append(_method_func(obj))
            elif issubclass(t, staticmethod):
                stack.append(_staticmethod_func(obj))
            elif issubclass(t, classmethod):
                stack.append(_classmethod_func(obj))
            elif issubclass(t, property):
                stack.extend(a(obj) for a in _property_accessors)
            elif issubclass(t, type):
                stack.extend(v for _, v in _items(_class_dict(obj)))
            else:
                func = _partial_func(obj)
                if func is _MISSING:
                    func = _cached_property_func(obj)
                if func is not _MISSING:
                    stack.append(func)
                elif (not issubclass(t, _ModuleType)
                      and _class_lookup(t, "__call__") is not _MISSING):
                    # A callable wrapper object (functools.lru_cache): what
                    # it wraps. Other instances are not entered (reading
                    # their __dict__ would materialize it).
                    wrapped = _wrapped_of(obj)
                    if wrapped is not _MISSING:
                        stack.append(wrapped)

    def scan_gc(self, key):
        """Every live function of the file (defined in closures, registries,
        anywhere): the slow path, for lines the namespace walk missed."""
        for obj in _stdlib("gc").get_objects():
            if type(obj) is _FunctionType:
                self.add_root(_func_code(obj), key)


def _named_owner(code, parents):
    while _is_anonymous(code):
        parent = parents.get(id(code))
        if parent is None:
            break
        code = parent
    return code


def _resolve_file(target, path, line):
    lines = _Lines()
    matches = _modules_with_file(path)
    filename = matches[0][2]
    keys = [m[0] for m in matches]
    found = _FileCodes(set(m[2] for m in matches))
    for key, module, _ in matches:
        found.walk_module(key, module)

    def holds(code):
        first, last = lines.span(code)
        return (first <= line <= last and not _is_definition_time(code)
                and line in lines.of(code))

    def candidates():
        held = [c for c in found.codes if holds(c)]
        ids = set(id(c) for c in held)
        chosen = []
        for code in held:
            parent = found.parents.get(id(code))
            nested_in_candidate = False
            while parent is not None:
                if id(parent) in ids:
                    nested_in_candidate = True
                    break
                parent = found.parents.get(id(parent))
            if not nested_in_candidate:
                chosen.append(code)
        return chosen

    chosen = candidates()
    if not chosen:
        found.scan_gc(keys[0])
        chosen = candidates()
    if not chosen:
        raise _Fail("LINE_NOT_EXECUTABLE",
                    _explain_file_line(filename, line, found, lines))
    owner = _named_owner(chosen[0], found.parents)
    origin = found.origin.get(id(chosen[0]), keys[0])
    roles = dict((id(c), "line") for c in chosen)
    reply = {
        "ok": True,
        "target": target,
        "module": _canonical_name(origin, dict.get(sys.modules, origin)),
        "module_object": origin,
        "module_objects": keys,
        "object": owner.co_qualname,
        "kind": _code_kind(owner),
        "line": line,
        "line_code_id": id(chosen[0]),
        "line_code_ids": [id(c) for c in chosen],
        "hookable": True,
        "codes": _code_entries(chosen, found.parents, roles, lines),
        "_parents": found.parents,
    }
    if _runs_once(owner, found.parents):
        # Only a module body that is still running has live module code: a
        # script's __main__ blocked or looping at module level.
        reply["kind"] = ("module" if owner.co_name == "<module>"
                         else "class_body")
        reply["warning"] = (
            f"line {line} is module-level code ({owner.co_qualname}) of a "
            f"module body that is still running: the probe fires only if the "
            f"line runs again (a loop at module level); lines already passed "
            f"never run again")
    return reply


def _runs_once(code, parents):
    """Module code, or a class body directly in module code (or in such a
    class body): it runs when the module body runs, once."""
    while not code.co_flags & _CO_OPTIMIZED:
        if code.co_name == "<module>":
            return True
        code = parents.get(id(code))
        if code is None:
            return False
    return False


# The nearest-lines list of a file:LINE error covers this many lines either
# side (a whole big file would cost seconds of bytecode scanning).
_NEAR_WINDOW = 200


def _explain_file_line(filename, line, found, lines):
    executable = set()
    low, high = line - _NEAR_WINDOW, line + _NEAR_WINDOW
    for code in found.codes:
        first, last = lines.span(code)
        if last >= low and first <= high and not _is_definition_time(code):
            executable |= lines.of(code)
    if not executable:
        for code in found.codes:
            if not _is_definition_time(code):
                executable |= lines.of(code)
    where = _where_code_is(executable, line)
    count = _source_line_count(filename)
    if count is not None and line > count:
        return (f"line {line} is past the end of {filename} ({count} lines; "
                f"{where}")
    # The innermost live code whose span holds the line.
    holder = None
    for code in found.codes:
        if _is_anonymous(code) or _is_definition_time(code):
            continue
        first, last = lines.span(code, [c for c, _ in _nested_codes(code)])
        if first <= line <= last:
            if holder is None or first >= holder[1]:
                holder = (code, first)
    if holder is not None:
        code = holder[0]
        own = lines.of(code)
        header = bool(own) and line < min(own)
        why = _describe_line(filename, line, header)
        why = f": {why}" if why else ""
        return (f"line {line} has no code in {code.co_qualname} of "
                f"{filename}{why} ({where}")
    text = _source_line(filename, line)
    if text is not None and text.strip() and not text.strip().startswith("#"):
        enclosing = _enclosing_def(filename, line)
        if enclosing is not None:
            return (f"line {line} of {filename} is in {enclosing}, which the "
                    f"running process has not defined (no live function or "
                    f"code object: a branch not taken at import, or "
                    f"deleted) ({where}")
        return (f"line {line} of {filename} runs only at import (module "
                f"level or a class body), never again ({where}")
    why = _describe_line(filename, line, False)
    why = f": {why}" if why else ""
    return f"line {line} of {filename} has no code{why} ({where}"


def _enclosing_def(filename, line):
    """'def name' if the nearest less-indented statement above the line is
    a def (text heuristic, for the message only), else None."""
    text = _source_line(filename, line)
    if text is None:
        return None
    indent = len(text) - len(text.lstrip())
    for number in range(line - 1, 0, -1):
        above = _source_line(filename, number)
        if above is None:
            return None
        stripped = above.strip()
        if not stripped or stripped.startswith("#"):
            continue
        above_indent = len(above) - len(above.lstrip())
        if above_indent < indent:
            if stripped.startswith(("def ", "async def ")):
                name = stripped.split("def ", 1)[1].split("(", 1)[0].strip()
                return f"function {name!r}"
            if stripped.startswith("class "):
                return None
            indent = above_indent
        if above_indent == 0:
            return None
    return None


# -- framework routes --
#
# Which routes of the live web frameworks reach a probed code object. The
# route tables are read where the frameworks keep them (Starlette/FastAPI
# app.router.routes, aiohttp app._router._resources, Flask url_map._rules +
# view_functions, Django ROOT_URLCONF's urlpatterns), with the same static
# discipline as resolution: raw __dict__s, slots through their C member
# descriptors, C-level iteration only; no property, __getattr__, __iter__ or
# framework function of Python code ever runs. Apps are found among live
# objects (gc referrers of the framework's app classes, which holds every
# instance of a Python class), so an app built in main() and handed to a
# server is found as well as a module-level one. A framework not in
# sys.modules is not looked at.
#
# Rebinding: none is needed in these frameworks. pydi hooks code objects and
# swaps __code__ on every function sharing the code (3.11; on 3.12+ the
# events sit on the code itself), so every reference a framework captured --
# route.endpoint, the request_response closure in route.app, aiohttp's
# _handler and its @wraps handler_wrapper, FastAPI Dependant.call, partials,
# bound methods, callable instances (type(x).__call__), Flask/Django as_view
# closures that look methods up on the class per request, Starlette
# per-route middleware that calls the endpoint -- runs the hooked code. What
# cannot be reached is a route holding ANOTHER code object that claims to be
# the probed function (same __module__ and __qualname__): a copy a decorator
# recompiled, a function redefined or a module reloaded after the route
# captured it. Rebinding the route to the probed function would change what
# the service runs, so that is an ERROR naming the route, never a silent
# READY.

_ROUTE_DEPTH = 12           # Mount / sub-app / include / Depends nesting
_ROUTE_BUDGET = 50000       # route-table objects one walk visits at most
_ROUTE_SEQ_MAX = 10000      # items read from one route-table container
_HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options",
                 "trace", "connect")


def _attr(obj, name):
    """obj.name read statically: an instance __dict__ entry, a slot (C
    member/getset descriptor of the type), or a plain class attribute;
    _MISSING for a property or any other Python descriptor."""
    value, how = _lookup(obj, name)
    if value is _MISSING:
        return _MISSING
    if how == "type":
        t = type(value)
        if t in _C_DESCRIPTOR_TYPES:
            try:
                return value.__get__(obj, type(obj))
            except Exception:
                return _MISSING
        if t is not _FunctionType and (
                _class_lookup(t, "__get__") is not _MISSING
                and not issubclass(t, (staticmethod, classmethod))):
            return _MISSING
    return value


def _seq(value):
    """The items of a route-table container, without running Python code:
    list/tuple/set/dict values through their C methods, and any other type
    only if its __iter__ is C (e.g. aiohttp's FrozenList)."""
    if value is _MISSING or value is None:
        return []
    t = type(value)
    try:
        for base, it in ((list, list.__iter__), (tuple, tuple.__iter__),
                         (set, set.__iter__), (frozenset, frozenset.__iter__)):
            if issubclass(t, base):
                items = []
                for item in it(value):
                    items.append(item)
                    if len(items) >= _ROUTE_SEQ_MAX:
                        break
                return items
        if issubclass(t, dict):
            return [v for _, v in _items(value)][:_ROUTE_SEQ_MAX]
        items = _attr(value, "_items")      # pure-Python FrozenList
        if type(items) is list:
            return items[:_ROUTE_SEQ_MAX]
        if type(_class_lookup(t, "__iter__")) in _BUILTIN_CALLABLE_TYPES:
            items = []
            for item in value:
                items.append(item)
                if len(items) >= _ROUTE_SEQ_MAX:
                    break
            return items
    except Exception:
        pass
    return []


def _str_items(value):
    return [v for v in _seq(value) if type(v) is str]


def _loaded_class(module_name, name):
    module = dict.get(sys.modules, module_name)
    if module is None:
        return None
    value = _raw_get(_instance_dict(module), name)
    return value if value is not _MISSING and _is_class(value) else None


def _is_instance(obj, cls):
    return cls is not None and issubclass(type(obj), cls)


def _subclasses(cls):
    """cls and its subclasses, through type's own C method."""
    out, todo = [], [cls]
    while todo and len(out) < 1000:
        c = todo.pop()
        if any(c is o for o in out):
            continue
        out.append(c)
        try:
            todo.extend(type.__dict__["__subclasses__"](c))
        except Exception:
            pass
    return out


def _live_instances(classes):
    """Live instances of classes (and their subclasses): objects of a
    Python class reference their type, so gc finds them as referrers."""
    wanted = []
    for cls in classes:
        if cls is not None:
            wanted += _subclasses(cls)
    if not wanted:
        return []
    ids = set(id(c) for c in wanted)
    referrers = _stdlib("gc").get_referrers(*wanted)
    try:
        return [r for r in referrers if id(type(r)) in ids
                and any(type(r) is c for c in wanted)]
    finally:
        del referrers


def _label(obj):
    """A short name for a callable in a route table: qualname of a function
    or class, partial(...), 'T instance'."""
    t = type(obj)
    if t is _FunctionType:
        return _str_or_none(_func_qualname(obj)) or "?"
    if t is _MethodType:
        return _label(_method_func(obj))
    if issubclass(t, type):
        return _str_or_none(_type_qualname(obj)) or "?"
    func = _partial_func(obj)
    if func is not _MISSING:
        return f"partial({_label(func)})"
    if issubclass(t, (staticmethod, classmethod)):
        return _label(_codes_target(obj))
    return f"{_str_or_none(_type_qualname(t)) or '?'} instance"


def _codes_target(obj):
    if issubclass(type(obj), staticmethod):
        return _staticmethod_func(obj)
    if issubclass(type(obj), classmethod):
        return _classmethod_func(obj)
    return obj


def _function_of(obj):
    """The Python function calling obj runs first (bound methods,
    static/class methods, partials and callable instances unwrapped)."""
    for _ in range(32):
        t = type(obj)
        if t is _FunctionType:
            return obj
        if t is _MethodType:
            obj = _method_func(obj)
        elif issubclass(t, (staticmethod, classmethod)):
            obj = _codes_target(obj)
        elif _partial_func(obj) is not _MISSING:
            obj = _partial_func(obj)
        elif issubclass(t, type) or t in _BUILTIN_CALLABLE_TYPES:
            return None
        else:
            call = _class_lookup(t, "__call__")
            if call is _MISSING or not (type(call) is _FunctionType or
                                        issubclass(type(call),
                                                   (staticmethod,
                                                    classmethod))):
                return None
            obj = call
    return None


def _reach(obj):
    """[(code, function, wrapper labels)]: the code calling obj runs --
    its own, then through __wrapped__ what it wraps (a functools.wraps
    wrapper, lru_cache, aiohttp's handler_wrapper calls what it wraps)."""
    out, wrappers = [], []
    for _ in range(16):
        func = _function_of(obj)
        codes = _codes_of(obj, False)[0] if func is None else [
            _func_code(func)]
        for code in codes:
            out.append((code, func, list(wrappers)))
        holder = func if func is not None else obj
        wrapped = _wrapped_of(holder)
        if wrapped is _MISSING or wrapped is None or wrapped is holder:
            break
        wrappers.append(_label(holder))
        obj = wrapped
    return out


class _Site:
    """One callable a framework runs for a route."""
    __slots__ = ("framework", "methods", "path", "role", "via", "obj")

    def __init__(self, framework, methods, path, role, via, obj):
        self.framework = framework
        self.methods = methods
        self.path = path
        self.role = role
        self.via = via
        self.obj = obj


def _methods_text(methods):
    return ",".join(methods) if methods else "*"


def _join_path(prefix, path):
    if type(path) is not str:
        path = ""
    if not prefix or prefix == "/":
        return path if path.startswith("/") else "/" + path
    return prefix.rstrip("/") + ("/" + path.lstrip("/") if path else "")


class _RouteWalk:
    def __init__(self):
        self.sites = []
        self.budget = _ROUTE_BUDGET
        self.truncated = False
        self.errors = []
        self.nested = set()     # id of apps reached inside another app

    def spend(self):
        self.budget -= 1
        if self.budget < 0:
            self.truncated = True
            return False
        return True

    def site(self, framework, methods, path, role, via, obj):
        if obj is _MISSING or obj is None:
            return
        methods = sorted(set(m for m in methods if type(m) is str))
        self.sites.append(_Site(framework, methods or ["*"], path, role, via,
                                obj))

    def guarded(self, what, walker, *args):
        try:
            walker(self, *args)
        except Exception as exc:
            self.errors.append(f"{what}: {_exception_text(exc)}")


def _class_methods(cls, methods, head_falls_back_to_get):
    """[(HTTP methods, function)] a class-based view runs: the attribute
    named after each method (lower case), looked up on the class as the
    framework's per-request getattr(self, method) does; HEAD served by get
    where the framework falls back to it."""
    found = {}
    order = []
    for method in methods:
        name = method.lower()
        func = _class_lookup(cls, name)
        if func is _MISSING and method == "HEAD" and head_falls_back_to_get:
            name = "get"
            func = _class_lookup(cls, name)
        if func is _MISSING or func is None:
            continue
        key = id(func)
        if key not in found:
            found[key] = (name, [], func)
            order.append(key)
        found[key][1].append(method)
    return [(found[k][0], found[k][1], found[k][2]) for k in order]


def _all_methods_of(cls):
    return [m.upper() for m in _HTTP_METHODS
            if _class_lookup(cls, m) not in (_MISSING, None)]


# Starlette / FastAPI

def _starlette_middleware_site(walk, framework, methods, path, mw, via):
    """Sites of a Middleware(cls, ...) entry: the class's dispatch /
    __call__ / __init__, and functions passed to it (@app.middleware's
    dispatch=func)."""
    cls = _attr(mw, "cls")
    if not _is_class(cls):
        return
    name = _str_or_none(_type_qualname(cls)) or "?"
    for attr in ("dispatch", "__call__", "__init__"):
        func = _class_lookup(cls, attr)
        if type(func) is _FunctionType:
            walk.site(framework, methods, path, "middleware",
                      f"{name}.{attr} {via}", func)
    options = []
    for key in ("options", "kwargs"):
        value = _attr(mw, key)
        if issubclass(type(value), dict):
            options += _items(value)
    options += [(None, v) for v in _seq(_attr(mw, "args"))]
    for key, value in options:
        if _function_of(value) is not None:
            walk.site(framework, methods, path, "middleware",
                      f"{name}({key + '=' if key else ''}{_label(value)}) "
                      f"{via}", value)


def _asgi_chain(obj):
    """([middleware instances], inner app) of an app wrapped by middleware
    instances, each holding the next as .app."""
    middleware = []
    for _ in range(_ROUTE_DEPTH):
        if _function_of(obj) is not None and type(obj) is _FunctionType:
            break
        if _is_class(obj):
            break
        inner = _attr(obj, "app")
        if inner is _MISSING or inner is None or _is_class(obj):
            break
        middleware.append(obj)
        obj = inner
    return middleware, obj


def _walk_starlette_app(walk, app, prefix, depth, host=""):
    fastapi_cls = _loaded_class("fastapi.applications", "FastAPI")
    framework = "fastapi" if _is_instance(app, fastapi_cls) else "starlette"
    for mw in _seq(_attr(app, "user_middleware")):
        _starlette_middleware_site(walk, framework, ["*"],
                                   _join_path(prefix, "/*"), mw,
                                   f"(app middleware{host})")
    overrides = _attr(app, "dependency_overrides")
    router = _attr(app, "router")
    _walk_starlette_routes(walk, framework, _seq(_attr(router, "routes")),
                           prefix, depth,
                           overrides if issubclass(type(overrides), dict)
                           else None, host)


def _walk_starlette_routes(walk, framework, routes, prefix, depth, overrides,
                           host):
    r = "starlette.routing"
    route_cls = _loaded_class(r, "Route")
    ws_cls = _loaded_class(r, "WebSocketRoute")
    mount_cls = _loaded_class(r, "Mount")
    host_cls = _loaded_class(r, "Host")
    for route in routes:
        if not walk.spend():
            return
        included = _attr(route, "original_router")
        if included is not _MISSING and not _is_instance(route, route_cls):
            # FastAPI >= 0.13x include_router keeps the included router
            # (_IncludedRouter) and builds prefixed routes lazily, on the
            # first request; the original routes hold the same endpoints
            # and dependency trees.
            if depth >= _ROUTE_DEPTH:
                walk.truncated = True
                continue
            context = _attr(route, "include_context")
            sub_prefix = _join_path(prefix, _str_or_none(
                _attr(context, "prefix")) or "")
            for dep in _seq(_attr(context, "dependencies")):
                call = _attr(dep, "dependency")
                walk.site(framework, ["*"], _join_path(sub_prefix, "/*"),
                          "dependency", f"Depends({_label(call)}) of the "
                          f"router included at {sub_prefix}{host}", call)
            _walk_starlette_routes(walk, framework,
                                   _seq(_attr(included, "routes")),
                                   sub_prefix, depth + 1, overrides, host)
            continue
        if _is_instance(route, route_cls) or _is_instance(route, ws_cls):
            _walk_starlette_route(walk, framework, route, prefix, overrides,
                                  host, websocket=_is_instance(route, ws_cls))
        elif _is_instance(route, mount_cls) or _is_instance(route, host_cls):
            if depth >= _ROUTE_DEPTH:
                walk.truncated = True
                continue
            sub_prefix, sub_host = prefix, host
            if _is_instance(route, mount_cls):
                sub_prefix = _join_path(prefix, _attr(route, "path"))
            else:
                sub_host = host + f" on host {_str_or_none(_attr(route, 'host'))}"
            base = _attr(route, "_base_app")        # Starlette >= 0.28
            outer = _attr(route, "app")
            middleware, inner = _asgi_chain(outer)
            if base is _MISSING:
                base = inner
            where = f"Mount {sub_prefix}" if _is_instance(
                route, mount_cls) else "Host" + sub_host
            middleware = middleware[:next(
                (i for i, mw in enumerate(middleware) if mw is base),
                len(middleware))]
            if middleware:
                # Endpoints behind it still run: say so in their via.
                sub_host += (f" behind {where} middleware " + ", ".join(
                    _str_or_none(_type_qualname(type(mw))) or "?"
                    for mw in middleware))
            for mw in middleware:
                cls = type(mw)
                for attr in ("dispatch", "__call__"):
                    func = _class_lookup(cls, attr)
                    if type(func) is _FunctionType:
                        walk.site(framework, ["*"],
                                  _join_path(sub_prefix, "/*"), "middleware",
                                  f"{_type_qualname(cls)}.{attr} (middleware "
                                  f"of {where})", func)
            _walk_asgi_app(walk, framework, base, sub_prefix, depth + 1,
                           overrides, sub_host)


def _walk_asgi_app(walk, framework, app, prefix, depth, overrides, host):
    """What a Mount/Host serves: a Starlette/FastAPI app, a Router, or an
    arbitrary ASGI callable (reported as the endpoint of prefix/*)."""
    starlette_cls = _loaded_class("starlette.applications", "Starlette")
    router_cls = _loaded_class("starlette.routing", "Router")
    if _is_instance(app, starlette_cls):
        walk.nested.add(id(app))
        _walk_starlette_app(walk, app, prefix, depth, host)
    elif _is_instance(app, router_cls):
        _walk_starlette_routes(walk, framework, _seq(_attr(app, "routes")),
                               prefix, depth, overrides, host)
    elif app is not _MISSING and app is not None:
        walk.site(framework, ["*"], _join_path(prefix, "/*"), "endpoint",
                  f"mounted app {_label(app)} of {prefix or '/'}/*{host}",
                  app)


def _walk_starlette_route(walk, framework, route, prefix, overrides, host,
                          websocket):
    path = _join_path(prefix, _attr(route, "path"))
    methods = ["WEBSOCKET"] if websocket else (
        _str_items(_attr(route, "methods")) or ["*"])
    endpoint = _attr(route, "endpoint")
    where = f"{_methods_text(sorted(methods))} {path}{host}"
    # Per-route middleware (Route(..., middleware=[...]), Starlette >= 0.30)
    # wraps route.app; it still calls the endpoint, so the endpoint fires.
    middleware, _ = _asgi_chain(_attr(route, "app"))
    names = [_str_or_none(_type_qualname(type(m))) or "?" for m in middleware]
    for mw in middleware:
        for attr in ("dispatch", "__call__"):
            func = _class_lookup(type(mw), attr)
            if type(func) is _FunctionType:
                walk.site(framework, methods, path, "middleware",
                          f"{_type_qualname(type(mw))}.{attr} (route "
                          f"middleware of {where})", func)
    behind = f" behind route middleware {', '.join(names)}" if names else ""
    dependant = _attr(route, "dependant")
    if dependant is not _MISSING and dependant is not None:
        call = _attr(dependant, "call")
        walk.site(framework, methods, path, "endpoint",
                  f"endpoint {_label(call)}{behind} of {where}", call)
        _walk_dependant(walk, framework, methods, path, dependant, [], where,
                        overrides, 0)
        return
    if _is_class(endpoint):
        # A class endpoint (HTTPEndpoint / WebSocketEndpoint, or an ASGI
        # class): instantiated per request; HTTPEndpoint dispatches to the
        # method named like the request's (HEAD falling back to get).
        name = _str_or_none(_type_qualname(endpoint)) or "?"
        init = _class_lookup(endpoint, "__init__")
        if type(init) is _FunctionType:
            walk.site(framework, methods, path, "endpoint",
                      f"{name}.__init__{behind} of {where}", init)
        wanted = methods if methods != ["*"] else (
            _all_methods_of(endpoint) + ["HEAD"])
        for attr, meths, func in _class_methods(endpoint, wanted, True):
            walk.site(framework, meths, path, "endpoint",
                      f"{name}.{attr}{behind} of "
                      f"{_methods_text(sorted(meths))} {path}{host}", func)
        for attr in ("__call__", "dispatch", "__await__"):
            func = _class_lookup(endpoint, attr)
            if type(func) is _FunctionType:
                walk.site(framework, methods, path, "endpoint",
                          f"{name}.{attr}{behind} of {where}", func)
        return
    walk.site(framework, methods, path, "endpoint",
              f"endpoint {_label(endpoint)}{behind} of {where}", endpoint)


def _override_of(overrides, call):
    if overrides is None:
        return _MISSING
    for key, value in _items(overrides):
        if key is call:
            return value
    return _MISSING


def _walk_dependant(walk, framework, methods, path, dependant, chain, where,
                    overrides, depth):
    """FastAPI's Dependant tree: dependencies[*].call, recursively (a
    sub-dependency of a sub-dependency...), app.dependency_overrides
    applied as FastAPI applies them per request."""
    if depth >= _ROUTE_DEPTH:
        walk.truncated = True
        return
    for sub in _seq(_attr(dependant, "dependencies")):
        if not walk.spend():
            return
        call = _attr(sub, "call")
        label = f"Depends({_label(call)})"
        override = _override_of(overrides, call)
        inner = chain + [label]
        via = " in ".join(reversed(inner)) + f" of {where}"
        if override is not _MISSING:
            # The override runs instead of the original (and its own
            # dependencies are solved per request, not in this tree).
            walk.site(framework, methods, path, "dependency",
                      f"{_label(override)} overriding {via}", override)
            continue
        if _is_class(call):
            # Depends(SomeClass): FastAPI instantiates it.
            init = _class_lookup(call, "__init__")
            if type(init) is _FunctionType:
                walk.site(framework, methods, path, "dependency", via, init)
        else:
            walk.site(framework, methods, path, "dependency", via, call)
        _walk_dependant(walk, framework, methods, path, sub, inner, where,
                        overrides, depth + 1)


# aiohttp

def _walk_aiohttp_app(walk, app, prefix, depth):
    for mw in _seq(_attr(app, "_middlewares")):
        walk.site("aiohttp", ["*"], _join_path(prefix, "/*"), "middleware",
                  f"middleware {_label(mw)} of {prefix or ''}/*", mw)
    router = _attr(app, "_router")
    view_cls = _loaded_class("aiohttp.web_urldispatcher", "AbstractView") \
        or _loaded_class("aiohttp.abc", "AbstractView")
    for resource in _seq(_attr(router, "_resources")):
        if not walk.spend():
            return
        sub = _attr(resource, "_app")
        if sub is not _MISSING and sub is not None:
            # add_subapp: the sub-app's resources already carry the prefix
            # (PrefixedSubAppResource.add_prefix rewrote them).
            if depth >= _ROUTE_DEPTH:
                walk.truncated = True
                continue
            walk.nested.add(id(sub))
            sub_prefix = _str_or_none(_attr(resource, "_prefix")) or prefix
            _walk_aiohttp_app(walk, sub, sub_prefix, depth + 1)
            continue
        path = _attr(resource, "_formatter")
        if type(path) is not str:
            path = _attr(resource, "_path")
        if type(path) is not str:
            continue
        by_handler, order = {}, []
        for route in _seq(_attr(resource, "_routes")):
            handler = _attr(route, "_handler")
            method = _attr(route, "_method")
            if handler is _MISSING or type(method) is not str:
                continue
            if id(handler) not in by_handler:
                by_handler[id(handler)] = (handler, [])
                order.append(id(handler))
            by_handler[id(handler)][1].append(method)
        for key in order:
            handler, methods = by_handler[key]
            if _is_class(handler) and _is_instance(handler, type) and (
                    view_cls is None or issubclass(handler, view_cls)):
                # web.View: per request getattr(self, method.lower()).
                name = _str_or_none(_type_qualname(handler)) or "?"
                wanted = (_all_methods_of(handler) if "*" in methods
                          else methods)
                for attr, meths, func in _class_methods(handler, wanted,
                                                        False):
                    walk.site("aiohttp", meths, path, "endpoint",
                              f"{name}.{attr} (web.View) of "
                              f"{_methods_text(sorted(meths))} {path}", func)
                continue
            walk.site("aiohttp", methods, path, "endpoint",
                      f"handler {_label(handler)} of "
                      f"{_methods_text(sorted(methods))} {path}", handler)


# Flask

def _walk_flask_app(walk, app):
    views = _attr(app, "view_functions")
    url_map = _attr(app, "url_map")
    rules = _seq(_attr(url_map, "_rules"))           # werkzeug < 2.2
    if not rules:
        rules = [r for group in _seq(_attr(url_map, "_rules_by_endpoint"))
                 for r in _seq(group)]
    for rule in rules:
        if not walk.spend():
            return
        endpoint = _attr(rule, "endpoint")
        path = _attr(rule, "rule")
        if type(endpoint) is not str or type(path) is not str:
            continue
        methods = _str_items(_attr(rule, "methods"))
        if _attr(rule, "provide_automatic_options") is True:
            # Flask answers OPTIONS itself; the view never runs for it.
            methods = [m for m in methods if m != "OPTIONS"]
        view = _raw_get(views if issubclass(type(views), dict) else None,
                        endpoint)
        if view is _MISSING:
            continue
        view_class = _MISSING
        if type(view) is _FunctionType:
            view_class = _raw_get(_func_dict(view), "view_class")
        where = f"{_methods_text(sorted(methods))} {path}"
        if _is_class(view_class):
            # View.as_view: a closure that instantiates view_class per
            # request; MethodView dispatches on the method (HEAD -> get).
            name = _str_or_none(_type_qualname(view_class)) or "?"
            per_method = _class_methods(view_class, methods, True)
            dispatch = _class_lookup(view_class, "dispatch_request")
            flask_view = _loaded_class("flask.views", "MethodView")
            if per_method and (flask_view is None or
                               issubclass(view_class, flask_view)):
                for attr, meths, func in per_method:
                    walk.site("flask", meths, path, "view",
                              f"{name}.{attr} (endpoint {endpoint!r}) of "
                              f"{_methods_text(sorted(meths))} {path}", func)
            elif type(dispatch) is _FunctionType:
                walk.site("flask", methods, path, "view",
                          f"{name}.dispatch_request (endpoint {endpoint!r}) "
                          f"of {where}", dispatch)
            continue
        walk.site("flask", methods, path, "view",
                  f"view {_label(view)} (endpoint {endpoint!r}) of {where}",
                  view)


# Django

def _django_settings():
    """The configured settings object, or None (never configures: a
    LazySettings still holding `empty` is left alone)."""
    conf = dict.get(sys.modules, "django.conf")
    if conf is None:
        return None
    settings = _attr(conf, "settings")
    wrapped = _attr(settings, "_wrapped")
    functional = dict.get(sys.modules, "django.utils.functional")
    empty = _attr(functional, "empty") if functional is not None else None
    if wrapped is _MISSING or wrapped is None or wrapped is empty:
        return None
    return wrapped


def _urlconf_patterns(urlconf):
    if type(urlconf) is str:
        urlconf = dict.get(sys.modules, urlconf)    # never imported here
        if urlconf is None:
            return []
    if type(urlconf) in (list, tuple):
        return _seq(urlconf)
    return _seq(_attr(urlconf, "urlpatterns"))


def _django_pattern_text(pattern):
    route = _attr(pattern, "_route")
    if type(route) is str:
        return route
    regex = _attr(pattern, "_regex")
    if type(regex) is str:
        text = regex[1:] if regex.startswith("^") else regex
        return text[:-1] if text.endswith("$") else text
    return ""


def _walk_django(walk):
    settings = _django_settings()
    if settings is None:
        return
    root = _attr(settings, "ROOT_URLCONF")
    if root is _MISSING:
        return
    _walk_django_patterns(walk, _urlconf_patterns(root), "/", 0)


def _walk_django_patterns(walk, patterns, prefix, depth):
    if depth >= _ROUTE_DEPTH:
        walk.truncated = True
        return
    for entry in patterns:
        if not walk.spend():
            return
        path = prefix + _django_pattern_text(_attr(entry, "pattern"))
        callback = _attr(entry, "callback")
        urlconf_name = _attr(entry, "urlconf_name")
        if urlconf_name is not _MISSING:
            # URLResolver (include()): its url_patterns once computed, else
            # the urlconf it names.
            patterns = _attr(entry, "url_patterns")     # cached_property
            if type(patterns) not in (list, tuple):
                patterns = _urlconf_patterns(urlconf_name)
            _walk_django_patterns(walk, _seq(patterns), path, depth + 1)
            continue
        view_class = _MISSING
        if type(callback) is _FunctionType:
            view_class = _raw_get(_func_dict(callback), "view_class")
        if _is_class(view_class):
            # as_view(): per request getattr(self, method.lower()); setup()
            # makes head = get when only get exists.
            names = _seq(_class_lookup(view_class, "http_method_names"))
            wanted = [n.upper() for n in names if type(n) is str] or [
                m.upper() for m in _HTTP_METHODS]
            name = _str_or_none(_type_qualname(view_class)) or "?"
            for attr, meths, func in _class_methods(view_class, wanted,
                                                    True):
                walk.site("django", meths, path, "view",
                          f"{name}.{attr} (class-based view) of "
                          f"{_methods_text(sorted(meths))} {path}", func)
            continue
        walk.site("django", ["*"], path, "view",
                  f"view {_label(callback)} of {path}", callback)


def _walk_routes():
    """Every route site of every live framework app."""
    walk = _RouteWalk()
    roots = []
    starlette_cls = _loaded_class("starlette.applications", "Starlette")
    aiohttp_cls = _loaded_class("aiohttp.web_app", "Application")
    flask_cls = _loaded_class("flask.app", "Flask")
    try:
        apps = _live_instances([starlette_cls, aiohttp_cls, flask_cls])
    except Exception as exc:
        walk.errors.append(f"finding apps: {_exception_text(exc)}")
        apps = []
    for app in apps:
        sub = _RouteWalk()
        sub.budget = walk.budget
        if _is_instance(app, starlette_cls):
            sub.guarded("starlette", _walk_starlette_app, app, "", 0)
        elif _is_instance(app, aiohttp_cls):
            sub.guarded("aiohttp", _walk_aiohttp_app, app, "", 0)
        else:
            sub.guarded("flask", _walk_flask_app, app)
        walk.budget = sub.budget
        roots.append((app, sub))
        walk.errors += sub.errors
        walk.truncated = walk.truncated or sub.truncated
    nested = set()
    for _, sub in roots:
        nested |= sub.nested
    for app, sub in roots:
        # A sub-app is reported once, with its mount prefix, from its
        # parent's walk.
        if id(app) not in nested:
            walk.sites += sub.sites
    walk.guarded("django", _walk_django)
    return walk


def _routes_for(resolved):
    """(routes, unreachable, notes) of a resolve reply's code objects."""
    canonical = _BACKEND.canonical if _BACKEND is not None else (
        lambda code: code)
    parents = resolved.get("_parents") or {}
    probed = {}
    identities = set()
    module = resolved.get("module")
    for entry in resolved.get("codes") or ():
        code = entry.get("_code")
        # A line in a lambda/comprehension runs when its enclosing function
        # runs: routes reaching the enclosing code reach the line.
        while code is not None and code.co_name != "<module>":
            probed[id(canonical(code))] = canonical(code)
            for fn in entry.get("functions") or ():
                identities.add((fn.get("module"), fn.get("qualname")))
            if entry.get("role") == "target" and type(module) is str:
                identities.add((module, code.co_qualname))
            code = parents.get(id(code))
            entry = {}
    walk = _walk_routes()
    routes, unreachable, seen = [], [], set()
    for site in walk.sites:
        try:
            reached = _reach(site.obj)
        except Exception:
            continue
        hit = None
        impostor = None
        for code, func, wrappers in reached:
            c = canonical(code)
            if probed.get(id(c)) is c:
                hit = wrappers
                break
            if func is not None and impostor is None and (
                    _str_or_none(_func_module(func)),
                    _str_or_none(_func_qualname(func))) in identities:
                impostor = (func, code)
        via = site.via
        if hit is None and impostor is None:
            continue
        if hit:
            via += " (wrapped by " + ", ".join(hit) + ")"
        record = {"framework": site.framework, "methods": site.methods,
                  "path": site.path, "role": site.role, "via": via}
        key = (site.framework, tuple(site.methods), site.path, site.role, via)
        if key in seen:
            continue
        seen.add(key)
        if hit is not None:
            routes.append(record)
        else:
            func, code = impostor
            record["why"] = (
                f"it holds another {_str_or_none(_func_module(func))}."
                f"{_str_or_none(_func_qualname(func))} whose code (id {id(code):#x}, "
                f"{code.co_filename}:{code.co_firstlineno}) is not the "
                f"probed one: a copy a decorator recompiled, or a function "
                f"redefined or reloaded after the route captured it")
            unreachable.append(record)
    notes = {}
    if walk.truncated:
        notes["routes_truncated"] = True
    if walk.errors:
        notes["routes_errors"] = walk.errors[:8]
    return routes, unreachable, notes


def _add_routes(reply, resolved):
    routes, unreachable, notes = _routes_for(resolved)
    reply["routes"] = routes
    reply["unreachable_routes"] = unreachable
    reply.update(notes)
    return unreachable


def _unreachable_message(target, unreachable):
    first = unreachable[0]
    more = (f" (and {len(unreachable) - 1} more route(s))"
            if len(unreachable) > 1 else "")
    return (f"{target}: route {_methods_text(first['methods'])} "
            f"{first['path']} ({first['framework']}, {first['via']}) would "
            f"never fire the probe: {first['why']}{more}; probe the function "
            f"the route holds, or restart the service so route and module "
            f"agree")


# -- hooking --
#
# A probe hooks code objects, never names. HOOKS[probe_id] is a _Probe; its
# points are (slot, event, line) per original code object. Two mechanisms:
#
# 3.11 (_Bytecode): a copy of the original code with calls to the native
#   _hook(slot, event, line[, value]) inserted, generated from the ORIGINAL
#   with the union of every probe's points whenever that set changes, and
#   swapped into every function holding the code in place (__code__
#   assignment, compare-and-swap). A nested code is also replaced in its
#   enclosing code's co_consts, recursively, so functions created later
#   carry the hook. Frames already running keep the code they started with.
# 3.12+ (_Monitoring): sys.monitoring local events (PY_START, PY_RETURN,
#   LINE) on exactly the probed code objects, global PY_UNWIND while some
#   probe wants exceptions; native callbacks look the code up in a C table.

_EVENTS = {"entry": 1, "return": 2, "exception": 3, "line": 4}
_EV_ENTRY, _EV_RETURN, _EV_EXCEPTION, _EV_LINE = 1, 2, 3, 4
_EVENT_NAMES = dict((v, k) for k, v in _EVENTS.items())
_FUNCTION_EVENTS = ("entry", "return", "exception")


def _native_module():
    if getattr(_native, "_hook", None) is None:
        raise _Fail("RUNTIME_ERROR", "hooking needs the native helper "
                    "(_pydi_helper); this bootstrap runs without it")
    return _native


def _skip_exception_types():
    """Exceptions whose passage is no exception event: GeneratorExit (a
    generator closed) and asyncio's CancelledError (a task cancelled), if
    asyncio is loaded."""
    types = [GeneratorExit]
    exceptions = sys.modules.get("asyncio.exceptions")
    if exceptions is not None:
        cancelled = _raw_get(_instance_dict(exceptions), "CancelledError")
        if _is_class(cancelled) and issubclass(cancelled, BaseException):
            types.append(cancelled)
    return tuple(types)


_FRAME_OWNER_TYPES = None


def _frame_owner_types():
    """{type: (code getter, frame getter, running getter)} of generators,
    coroutines and async generators."""
    global _FRAME_OWNER_TYPES
    if _FRAME_OWNER_TYPES is None:
        def gen():
            yield

        async def coro():
            pass

        async def agen():
            yield
        owners = {}
        for sample, prefix in ((gen(), "gi"), (coro(), "cr"), (agen(), "ag")):
            t = type(sample)
            owners[t] = tuple(t.__dict__[prefix + suffix].__get__
                              for suffix in ("_code", "_frame", "_running"))
            if prefix == "cr":
                sample.close()
        _FRAME_OWNER_TYPES = owners
    return _FRAME_OWNER_TYPES


def _frames_on(codes, referrers):
    """id(code) -> [executing frames, suspended generators/coroutines] of
    the given codes: thread stacks and the gc referrers of the codes."""
    wanted = dict((id(c), c) for c in codes)
    counts = dict((id(c), [0, 0]) for c in codes)
    frame_code = type(sys._getframe()).__dict__["f_code"].__get__
    for frame in sys._current_frames().values():
        while frame is not None:
            code = frame_code(frame)
            if wanted.get(id(code)) is code:
                counts[id(code)][0] += 1
            frame = frame.f_back
    owners = _frame_owner_types()
    for ref in referrers:
        getters = owners.get(type(ref))
        if getters is None:
            continue
        code = getters[0](ref)
        if (wanted.get(id(code)) is code and getters[1](ref) is not None
                and not getters[2](ref)):
            counts[id(code)][1] += 1
    return counts


def _running_warning(qualname, executing, suspended):
    parts = []
    if executing:
        parts.append(f"{executing} executing on a thread's stack")
    if suspended:
        parts.append(f"{suspended} suspended generator/coroutine frame(s)")
    return (f"{qualname}: {' and '.join(parts)} started before the hook and "
            f"keep running the code they started with: they do not fire "
            f"this probe until they return (or finish) and are called again")


# -- 3.11: the bytecode rewriter --

class _Ops311:
    """3.11's opcodes and tables, looked up once."""

    def __init__(self):
        opcode = _stdlib("opcode")
        m = opcode.opmap
        self.caches = opcode._inline_cache_entries
        self.hasjrel = frozenset(opcode.hasjrel)
        self.backward = frozenset(op for name, op in m.items()
                                  if "BACKWARD" in name)
        for name in ("EXTENDED_ARG", "RESUME", "RETURN_VALUE", "SEND",
                     "PUSH_NULL", "LOAD_CONST", "COPY", "PRECALL", "CALL",
                     "POP_TOP", "RERAISE", "JUMP_FORWARD"):
            setattr(self, name, m[name])
        # After these, execution never falls through to the next one.
        self.no_fallthrough = frozenset(m[n] for n in (
            "JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT",
            "RETURN_VALUE", "RERAISE", "RAISE_VARARGS"))
        # Nothing may run between these and the next instruction: KW_NAMES
        # and PRECALL hand state to the call in a C local, and the
        # instruction after YIELD_VALUE must be its RESUME (the resumption
        # point; _PyGen_yf reads it).
        self.glued = frozenset(m[n] for n in ("KW_NAMES", "PRECALL",
                                              "YIELD_VALUE"))
        if any(self.caches[op] for op in self.hasjrel):
            raise _Fail("RUNTIME_ERROR", "unexpected 3.11 opcode tables: a "
                        "jump with inline caches")


_OPS311 = None


def _ops311():
    global _OPS311
    if _OPS311 is None:
        _OPS311 = _Ops311()
    return _OPS311


class _Ins:
    """A logical instruction: EXTENDED_ARG prefixes, op, caches."""
    __slots__ = ("start", "at", "op", "arg", "target")

    def __init__(self, start, at, op, arg, target):
        self.start = start      # byte offset of the first prefix
        self.at = at            # byte offset of the opcode itself
        self.op = op
        self.arg = arg          # with the prefixes' bits
        self.target = target    # byte offset a relative jump lands on


def _decode311(raw, ops):
    out = []
    offset = start = extended = 0
    while offset < len(raw):
        op, arg = raw[offset], raw[offset + 1]
        if op == ops.EXTENDED_ARG:
            extended = (extended | arg) << 8
            offset += 2
            continue
        arg |= extended
        extended = 0
        target = None
        if op in ops.hasjrel:
            target = offset + 2 + (-arg if op in ops.backward else arg) * 2
        out.append(_Ins(start, offset, op, arg, target))
        offset += 2 + 2 * ops.caches[op]
        start = offset
    return out


def _ext_units(arg):
    return 0 if arg < 0x100 else 1 if arg < 0x10000 else (
        2 if arg < 0x1000000 else 3)


def _varint(out, value):
    """Line table varint: 6-bit chunks, low first, 0x40 = more."""
    while value >= 64:
        out.append(0x40 | (value & 63))
        value >>= 6
    out.append(value)


def _encode_linetable(firstlineno, unit_positions):
    """co_linetable for one position per code unit (the compiler's
    encoding: Objects/locations.md)."""
    out = bytearray()
    previous = firstlineno
    index = 0
    count = len(unit_positions)
    while index < count:
        position = unit_positions[index]
        run = 1
        while (index + run < count and run < 8
               and unit_positions[index + run] == position):
            run += 1
        index += run
        line, end_line, column, end_column = position
        if line is None:
            out.append(0x80 | (15 << 3) | (run - 1))
            continue
        delta = line - previous
        if column is None or end_column is None:
            if end_line is None or end_line == line:
                out.append(0x80 | (13 << 3) | (run - 1))
                _varint(out, (-delta << 1) | 1 if delta < 0 else delta << 1)
                previous = line
                continue
        elif end_line == line:
            if (delta == 0 and column < 80 and 0 <= end_column - column < 16):
                out.append(0x80 | ((column >> 3) << 3) | (run - 1))
                out.append(((column & 7) << 4) | (end_column - column))
                continue
            if 0 <= delta < 3 and column < 128 and end_column < 128:
                out.append(0x80 | ((10 + delta) << 3) | (run - 1))
                out.append(column)
                out.append(end_column)
                previous = line
                continue
        out.append(0x80 | (14 << 3) | (run - 1))
        _varint(out, (-delta << 1) | 1 if delta < 0 else delta << 1)
        _varint(out, (end_line if end_line is not None else line) - line)
        _varint(out, column + 1 if column is not None else 0)
        _varint(out, end_column + 1 if end_column is not None else 0)
        previous = line
    return bytes(out)


def _encode_exceptiontable(entries):
    """co_exceptiontable for [(start, end, target, depth, lasti)] in code
    units: 6-bit chunks, high first, 0x40 = more, 0x80 marks an entry."""
    out = bytearray()
    for start, end, target, depth, lasti in entries:
        for index, value in enumerate((start, end - start, target,
                                       (depth << 1) | int(lasti))):
            chunks = []
            while True:
                chunks.append(value & 63)
                value >>= 6
                if not value:
                    break
            chunks.reverse()
            for n, chunk in enumerate(chunks):
                byte = chunk | (0x40 if n < len(chunks) - 1 else 0)
                if index == 0 and n == 0:
                    byte |= 0x80
                out.append(byte)
    return bytes(out)


_NO_POSITION = (None, None, None, None)


def _rewrite311(code, points, const_map):
    """A copy of code with calls to _hook at the points [(slot, event,
    line)], co_consts[i] replaced by const_map[i]. Returns (code, sites:
    {(event, line): places hooked}). Verified before it is returned."""
    ops = _ops311()
    hook = _native_module()._hook
    raw = code.co_code
    positions = list(code.co_positions())
    ins = _decode311(raw, ops)
    at_start = dict((x.start, k) for k, x in enumerate(ins))
    lines_of = [positions[x.at // 2][0] for x in ins]
    resume = None
    for k, x in enumerate(ins):
        if x.op == ops.RESUME and x.arg == 0:
            resume = k
            break
    if resume is None:
        raise _Fail("RUNTIME_ERROR", f"{code.co_qualname}: no RESUME in its "
                    f"bytecode; cannot find where it starts")

    consts = list(code.co_consts)
    for index, replacement in const_map.items():
        consts[index] = replacement

    def const(value):
        for index, existing in enumerate(consts):
            if existing is value or (type(value) is int
                                     and type(existing) is int
                                     and existing == value):
                return index
        consts.append(value)
        return len(consts) - 1

    hook_index = const(hook)
    entry, returns, exceptions = [], [], []
    line_slots = {}
    for slot, event, line in sorted(set(points)):
        if event == _EV_ENTRY:
            entry.append(slot)
        elif event == _EV_RETURN:
            returns.append(slot)
        elif event == _EV_EXCEPTION:
            exceptions.append(slot)
        else:
            line_slots.setdefault(line, []).append(slot)

    jumps_to = {}
    for j, x in enumerate(ins):
        if x.target is not None:
            if x.target not in at_start:
                raise _Fail("RUNTIME_ERROR", f"{code.co_qualname}: a jump at "
                            f"{x.at} lands mid-instruction ({x.target})")
            jumps_to.setdefault(at_start[x.target], []).append(j)
    old_table = _stdlib("dis")._parse_exception_table(code)
    for entry_ in old_table:
        for offset in (entry_.start, entry_.target):
            if offset not in at_start:
                raise _Fail("RUNTIME_ERROR", f"{code.co_qualname}: exception "
                            f"table offset {offset} is mid-instruction")
    handlers = set(at_start[e.target] for e in old_table)

    # Line hooks go where 3.11's line tracing fires: on arrival at an
    # instruction of the line from another line (fall-through or jump), on a
    # backward jump (but not the SEND loop of an await), at an exception
    # handler. A fall-through from the same line jumps over the hook.
    line_sites = {}     # k -> (line, skip fall-through, firing jumps)
    sites = {}
    for k in range(resume + 1, len(ins)):
        x, line = ins[k], lines_of[k]
        if line not in line_slots or x.op == ops.RESUME:
            continue
        previous = ins[k - 1]
        falls = previous.op not in ops.no_fallthrough
        fall_fires = falls and (k - 1 == resume or lines_of[k - 1] != line)
        firing = set(j for j in jumps_to.get(k, ())
                     if lines_of[j] != line
                     or (ins[j].op in ops.backward and x.op != ops.SEND))
        if not (fall_fires or firing or k in handlers):
            continue
        if previous.op in ops.glued:
            continue
        line_sites[k] = (line, falls and not fall_fires, firing)
        sites[(_EV_LINE, line)] = sites.get((_EV_LINE, line), 0) + 1

    new = []            # [op, arg, position, jump label or None]
    labels = {}

    def emit(op, arg, position, label=None):
        new.append([op, arg, position, label])

    def call(slot, event, line, position, with_value):
        emit(ops.PUSH_NULL, 0, position)
        emit(ops.LOAD_CONST, hook_index, position)
        for value in (slot, event, line):
            emit(ops.LOAD_CONST, const(value), position)
        if with_value:
            # [value, NULL, _hook, slot, event, line]: the value is 6th
            emit(ops.COPY, 6, position)
        argc = 4 if with_value else 3
        emit(ops.PRECALL, argc, position)
        emit(ops.CALL, argc, position)
        emit(ops.POP_TOP, 0, position)

    for k, x in enumerate(ins):
        position = positions[x.at // 2]
        labels[("top", k)] = len(new)
        site = line_sites.get(k)
        if site is not None and site[1]:
            emit(ops.JUMP_FORWARD, 0, position, ("plain", k))
        labels[("fire", k)] = len(new)
        if site is not None:
            for slot in line_slots[site[0]]:
                call(slot, _EV_LINE, site[0], position, False)
        labels[("plain", k)] = len(new)
        if x.op == ops.RETURN_VALUE and returns:
            for slot in returns:
                call(slot, _EV_RETURN, 0, position, True)
            sites[(_EV_RETURN, 0)] = sites.get((_EV_RETURN, 0), 0) + 1
        labels[("op", k)] = len(new)
        if x.target is not None:
            t = at_start[x.target]
            fires = t in line_sites and k in line_sites[t][2]
            emit(x.op, 0, position, ("fire" if fires else "plain", t))
        else:
            emit(x.op, x.arg, position)
        if k == resume:
            labels["after_resume"] = len(new)
            # No position: a line event must not fire here.
            for slot in entry:
                call(slot, _EV_ENTRY, 0, _NO_POSITION, False)
            if entry:
                sites[(_EV_ENTRY, 0)] = 1
    labels["end"] = len(new)
    if exceptions:
        # Entered with [lasti, exc] at depth 0; RERAISE 1 restores lasti so
        # the frame's line is where the exception came from.
        labels["handler"] = len(new)
        for slot in exceptions:
            call(slot, _EV_EXCEPTION, 0, _NO_POSITION, True)
        emit(ops.RERAISE, 1, _NO_POSITION)
        sites[(_EV_EXCEPTION, 0)] = 1

    # Layout: EXTENDED_ARG prefixes of jumps depend on the layout they are
    # part of; grow them until nothing changes.
    exts = [_ext_units(n[1]) if n[3] is None else 0 for n in new]
    while True:
        offsets = []
        unit = 0
        for i, n in enumerate(new):
            offsets.append(unit)
            unit += exts[i] + 1 + ops.caches[n[0]]
        total = unit

        def unit_of(label):
            i = labels[label]
            return offsets[i] if i < len(new) else total
        grown = False
        for i, n in enumerate(new):
            if n[3] is None:
                continue
            op_unit = offsets[i] + exts[i]
            target = unit_of(n[3])
            arg = (op_unit + 1 - target if n[0] in ops.backward
                   else target - op_unit - 1)
            if arg < 0:
                raise _Fail("RUNTIME_ERROR", f"{code.co_qualname}: internal "
                            f"error: a jump changed direction")
            n[1] = arg
            if _ext_units(arg) > exts[i]:
                exts[i] = _ext_units(arg)
                grown = True
        if not grown:
            break

    out = bytearray()
    unit_positions = []
    for i, (op, arg, position, _) in enumerate(new):
        for shift in range(exts[i], 0, -1):
            out += bytes((ops.EXTENDED_ARG, (arg >> (8 * shift)) & 0xFF))
        out += bytes((op, arg & 0xFF))
        out += b"\0\0" * ops.caches[op]
        unit_positions += [position] * (exts[i] + 1 + ops.caches[op])

    def top_of(offset):
        if offset == len(raw):
            return unit_of("end")
        return unit_of(("top", at_start[offset]))
    table = [(top_of(e.start), top_of(e.end),
              unit_of(("fire", at_start[e.target])), e.depth, e.lasti)
             for e in old_table]
    if exceptions:
        # The catch-all covers what no handler of the code covers: handlers
        # inside the function keep precedence, and what they re-raise
        # (uncovered) reaches it.
        handler = unit_of("handler")
        low, high = unit_of("after_resume"), unit_of("end")
        gaps = []
        cursor = low
        for start, end, _, _, _ in sorted(table):
            if start > cursor:
                gaps.append((cursor, min(start, high)))
            cursor = max(cursor, end)
        if cursor < high:
            gaps.append((cursor, high))
        table += [(a, b, handler, 0, True) for a, b in gaps if a < b]
        table.sort()

    stacksize = code.co_stacksize + (6 if len(new) > len(ins) else 0)
    if exceptions:
        stacksize = max(stacksize, 8)
    hooked = code.replace(
        co_code=bytes(out), co_consts=tuple(consts),
        co_linetable=_encode_linetable(code.co_firstlineno, unit_positions),
        co_exceptiontable=_encode_exceptiontable(table),
        co_stacksize=stacksize)
    _verify311(code, hooked, ins, new, offsets, exts, labels, unit_positions,
               table, ops)
    return hooked, sites


def _verify311(code, hooked, ins, new, offsets, exts, labels, unit_positions,
               table, ops):
    """Decode what was built and hold it to the plan: every original
    instruction in order with its argument, every jump landing where it
    should, positions and exception table as intended. A mismatch is an
    error reply, never an installed code."""
    def fail(what):
        raise _Fail("RUNTIME_ERROR", f"internal error: the hooked bytecode of "
                    f"{code.co_qualname} failed verification ({what}); "
                    f"nothing was installed")
    decoded = _decode311(hooked.co_code, ops)
    if len(decoded) != len(new):
        fail("instruction count")
    for i, (op, arg, _, _) in enumerate(new):
        d = decoded[i]
        if d.op != op or d.arg != arg or d.start != 2 * offsets[i]:
            fail(f"instruction {i}")
    for k, x in enumerate(ins):
        d = decoded[labels[("op", k)]]
        if d.op != x.op or (x.target is None and d.arg != x.arg):
            fail(f"original instruction at {x.at}")
        if x.target is not None:
            label = new[labels[("op", k)]][3]
            i = labels[label]
            want = 2 * offsets[i] if i < len(new) else len(hooked.co_code)
            t = label[1]
            if d.target != want or label[0] not in ("fire", "plain") or (
                    ins[t].start != x.target):
                fail(f"jump at {x.at}")
    if list(hooked.co_positions()) != unit_positions:
        fail("positions")
    parsed = [(e.start // 2, e.end // 2, e.target // 2, e.depth, e.lasti)
              for e in _stdlib("dis")._parse_exception_table(hooked)]
    if parsed != [(a, b, c, d, bool(e)) for a, b, c, d, e in table]:
        fail("exception table")


# -- 3.11: code states and the __code__ swap --

_func_code_set = _FunctionType.__dict__["__code__"].__set__


class _CodeState:
    """An original code object (3.11) and what stands in its place."""

    def __init__(self, orig):
        self.orig = orig
        self.parent = None          # _CodeState of the enclosing code
        self.const_index = None     # orig's index in parent.orig.co_consts
        self.children = []          # _CodeStates nested in orig
        self.points = {}            # probe_id -> [(slot, event, line)]
        self.current = orig         # what functions hold now
        self.recipe = ((), ())      # what current was generated from
        self.sites = {}             # (event, line) -> places hooked
        self.held = {}              # id(function) -> weakref, given current

    def depth(self):
        depth, state = 0, self.parent
        while state is not None:
            depth, state = depth + 1, state.parent
        return depth

    def wanted_recipe(self):
        points = tuple(sorted(set(p for points in self.points.values()
                                  for p in points)))
        consts = tuple(sorted((c.const_index, id(c.current))
                              for c in self.children
                              if c.current is not c.orig))
        return points, consts


class _Bytecode:
    """3.11: hooks by bytecode rewrite and __code__ swap."""
    name = "bytecode"

    def __init__(self):
        self.states = {}        # id(orig) -> _CodeState
        self.generated = {}     # id(installed hooked code) -> _CodeState
        self.retired = {}       # id(superseded hooked code) -> (ref, orig)

    def canonical(self, code):
        """The original of a code this backend generated, else code."""
        state = self.generated.get(id(code))
        if state is not None and state.current is code:
            return state.orig
        retired = self.retired.get(id(code))
        if retired is not None and retired[0]() is code:
            return retired[1]
        return code

    def chain(self, code, parents):
        """[code, enclosing, ...] as originals, up to (not into) module
        code: every code whose co_consts must carry the hooked copy."""
        chain = [self.canonical(code)]
        seen = set((id(code),))
        parent = parents.get(id(code))
        while (parent is not None and id(parent) not in seen
               and parent.co_name != "<module>"):
            seen.add(id(parent))
            chain.append(self.canonical(parent))
            parent = parents.get(id(parent))
        return chain

    def link(self, chain):
        """The state of chain[0], states of its enclosing codes linked."""
        parent = None
        for code in reversed(chain):
            state = self.states.get(id(code))
            if state is None:
                state = self.states[id(code)] = _CodeState(code)
            if parent is not None and state.parent is None:
                for index, const in enumerate(parent.orig.co_consts):
                    if const is code:
                        state.parent = parent
                        state.const_index = index
                        parent.children.append(state)
                        break
            parent = state
        return parent

    def prune(self):
        """Forget states that hold nothing any more."""
        for state in list(self.states.values()):
            while (state is not None and not state.points
                   and not state.children and state.current is state.orig
                   and self.states.get(id(state.orig)) is state):
                del self.states[id(state.orig)]
                parent = state.parent
                if parent is not None:
                    parent.children = [c for c in parent.children
                                       if c is not state]
                state = parent

    def add(self, probe, targets):
        touched = []
        for orig, chain, points in targets:
            state = self.link(chain)
            state.points[probe.id] = points
            touched.append(state)
        try:
            changes = self.refresh(touched)
        except BaseException:
            for state in touched:
                state.points.pop(probe.id, None)
            self.prune()
            raise
        return self.report(probe, targets, changes, hooking=True)

    def remove(self, probe):
        touched = []
        for orig in probe.codes:
            state = self.states.get(id(orig))
            if state is not None:
                state.points.pop(probe.id, None)
                touched.append(state)
        changes = self.refresh(touched)
        result = self.report(probe, [(c, None, None) for c in probe.codes],
                             changes, hooking=False)
        self.prune()
        return result

    def refresh(self, touched):
        """Regenerate the touched codes and their enclosing codes whose
        recipe changed (innermost first), then swap them all in."""
        order, seen = [], set()
        for state in touched:
            while state is not None and id(state) not in seen:
                seen.add(id(state))
                order.append(state)
                state = state.parent
        order.sort(key=lambda s: -s.depth())
        plans = []
        try:
            for state in order:
                recipe = state.wanted_recipe()
                if recipe == state.recipe:
                    continue
                if not recipe[0] and not recipe[1]:
                    new, sites = state.orig, {}
                else:
                    const_map = dict((c.const_index, c.current)
                                     for c in state.children
                                     if c.current is not c.orig)
                    new, sites = _rewrite311(state.orig, recipe[0], const_map)
                plans.append((state, state.current, state.recipe,
                              state.sites, new))
                state.current, state.recipe, state.sites = new, recipe, sites
        except BaseException:
            for state, old, recipe, sites, _ in reversed(plans):
                state.current, state.recipe, state.sites = old, recipe, sites
            raise
        return self.swap([(p[0], p[1], p[4]) for p in plans])

    def swap(self, plans):
        """Give every function holding a replaced code (or its original)
        the new code, compare-and-swap. id(state) -> what happened."""
        changes = {}
        if not plans:
            return changes
        by_code = {}
        olds = []
        weakref = _stdlib("_weakref").ref
        for key, (ref, _) in list(self.retired.items()):
            if ref() is None:
                del self.retired[key]
        for state, old, new in plans:
            self.generated.pop(id(old), None)
            if old is not state.orig:
                # Frames (or someone's copy) may still run it.
                self.retired[id(old)] = (weakref(old), state.orig)
            self.retired.pop(id(new), None)
            if new is not state.orig:
                self.generated[id(new)] = state
            by_code[id(old)] = (state, old, new)
            olds.append(old)
            if old is not state.orig:
                by_code[id(state.orig)] = (state, state.orig, new)
                olds.append(state.orig)
            changes[id(state)] = {"state": state, "old": old, "new": new,
                                  "swapped": 0, "replaced": 0, "failed": []}
        referrers = _stdlib("gc").get_referrers(*olds)
        try:
            for ref in referrers:
                if type(ref) is not _FunctionType:
                    continue
                code = _func_code(ref)
                entry = by_code.get(id(code))
                if entry is None or entry[1] is not code or code is entry[2]:
                    continue
                state, _, new = entry
                change = changes[id(state)]
                try:
                    _func_code_set(ref, new)
                except Exception as exc:
                    change["failed"].append(_exception_text(exc))
                    continue
                change["swapped"] += 1
                if new is state.orig:
                    state.held.pop(id(ref), None)
                else:
                    state.held[id(ref)] = weakref(ref)
            frames = _frames_on(olds, referrers)
        finally:
            del referrers
        for state, old, new in plans:
            change = changes[id(state)]
            counts = frames.get(id(old), [0, 0])
            if old is not state.orig:
                more = frames.get(id(state.orig), [0, 0])
                counts = [counts[0] + more[0], counts[1] + more[1]]
            change["executing"], change["suspended"] = counts
            for key, ref in list(state.held.items()):
                function = ref()
                if function is None:
                    del state.held[key]
                elif _func_code(function) is not new:
                    # Something else (wrapt, another debugger) replaced
                    # __code__ since: theirs now; leave it.
                    change["replaced"] += 1
                    del state.held[key]
        return changes

    def report(self, probe, targets, changes, hooking):
        codes = []
        for orig, _, _ in targets:
            state = self.states.get(id(orig))
            change = changes.get(id(state)) if state is not None else None
            current = state.current if state is not None else orig
            entry = _hook_entry(probe, orig, current)
            entry["functions_swapped" if hooking else "functions_restored"] = (
                change["swapped"] if change else 0)
            warnings = []
            if hooking:
                executing = change["executing"] if change else 0
                suspended = change["suspended"] if change else 0
                entry["running_frames"] = executing + suspended
                entry["hook_sites"] = sum(state.sites.values()) if state else 0
                if executing or suspended:
                    warnings.append(_running_warning(orig.co_qualname,
                                                     executing, suspended))
                for event, line in _probe_sites(probe):
                    if state is not None and not state.sites.get(
                            (event, line)):
                        warnings.append(
                            f"{orig.co_qualname}: no place to hook "
                            f"{_EVENT_NAMES[event]}"
                            + (f" at line {line}" if line else "")
                            + " in its bytecode")
                if (change and not change["swapped"] and state.parent is None
                        and not executing and not suspended):
                    warnings.append(
                        f"{orig.co_qualname}: no live function holds this "
                        f"code and no enclosing function was found: the "
                        f"probe fires only where this code object runs "
                        f"again")
                enclosing = [changes[id(s)] for s in _ancestors(state)
                             if id(s) in changes]
                if enclosing:
                    entry["enclosing"] = [{
                        "qualname": c["state"].orig.co_qualname,
                        "code_id": id(c["new"]),
                        "orig_code_id": id(c["state"].orig),
                        "functions_swapped": c["swapped"]}
                        for c in enclosing]
            else:
                entry["restored"] = current is orig
            if change:
                if change["replaced"]:
                    warnings.append(
                        f"{orig.co_qualname}: {change['replaced']} "
                        f"function(s) had __code__ replaced by something else "
                        f"since pydi hooked them; left as they are (a stale "
                        f"hook in them stays gated off)")
                for failure in change["failed"]:
                    warnings.append(f"{orig.co_qualname}: __code__ swap "
                                    f"failed: {failure}")
            entry["warnings"] = warnings
            codes.append(entry)
        return {"codes": codes, "changed": _changed_others(probe, changes)}

    def reset(self):
        """Revert whatever is left (after revert-all): back to originals."""
        for state in list(self.states.values()):
            state.points.clear()
        if self.states:
            self.refresh(list(self.states.values()))
        self.prune()
        self.states.clear()
        self.generated.clear()
        self.retired.clear()

    def listing(self, orig):
        state = self.states.get(id(orig))
        return state.current if state is not None else orig


def _ancestors(state):
    out = []
    state = state.parent if state is not None else None
    while state is not None:
        out.append(state)
        state = state.parent
    return out


def _probe_sites(probe):
    return sorted(set((event, line) for _, event, line in probe.points))


def _changed_others(probe, changes):
    """Other probes whose hooked code object changed (the agent keys BPF by
    the running code): [{probe_id, orig_code_id, old_code_id, code_id}]."""
    out = []
    for change in changes.values():
        state = change["state"]
        for other in sorted(state.points):
            if other != probe.id:
                out.append({"probe_id": other,
                            "orig_code_id": id(state.orig),
                            "old_code_id": id(change["old"]),
                            "code_id": id(change["new"])})
    return out


def _hook_entry(probe, orig, current):
    return {
        "code_id": id(current),
        "orig_code_id": id(orig),
        "qualname": orig.co_qualname,
        "file": orig.co_filename,
        "first_line": orig.co_firstlineno,
        "line": probe.line or 0,
        "events": list(probe.events),
    }


# -- 3.12+: sys.monitoring --

_TOOL_NAME = "pydi"
_TOOL_IDS = (3, 4)      # 0 debuggers, 1 coverage, 2 profilers, 5 optimizers


class _Monitoring:
    """3.12+: local events on the probed code objects, native callbacks."""
    name = "sys.monitoring"

    def __init__(self):
        self.tool = None
        # id(code) -> [code, {probe_id: points}, local events, LINE lines]
        self.codes = {}

    def canonical(self, code):
        return code

    def chain(self, code, parents):
        return [code]

    def callbacks(self):
        events = sys.monitoring.events
        native = _native_module()
        return ((events.PY_START, native._mon_start),
                (events.PY_RETURN, native._mon_return),
                (events.PY_UNWIND, native._mon_unwind),
                (events.LINE, native._mon_line))

    def ours(self):
        return (self.tool is not None
                and sys.monitoring.get_tool(self.tool) == _TOOL_NAME)

    def acquire(self):
        monitoring = sys.monitoring
        if self.ours():
            return
        self.tool = None
        for tool in _TOOL_IDS:
            if monitoring.get_tool(tool) is None:
                monitoring.use_tool_id(tool, _TOOL_NAME)
                for event, callback in self.callbacks():
                    monitoring.register_callback(tool, event, callback)
                self.tool = tool
                break
        else:
            users = ", ".join(f"{t}: {monitoring.get_tool(t)!r}"
                              for t in _TOOL_IDS)
            raise _Fail("RUNTIME_ERROR", f"sys.monitoring tool ids 3 and 4 "
                        f"are both in use ({users}): pydi cannot hook")
        # A tool id taken from us (freed by someone else) loses its events.
        for entry in self.codes.values():
            entry[2] = 0
            self.install(entry)
        self.global_events()

    def release(self):
        monitoring = sys.monitoring
        if self.ours():
            monitoring.set_events(self.tool, 0)
            for event, _ in self.callbacks():
                monitoring.register_callback(self.tool, event, None)
            monitoring.free_tool_id(self.tool)
        self.tool = None
        _native_module()._monitor_clear()

    def install(self, entry):
        events = sys.monitoring.events
        code, probes = entry[0], entry[1]
        points = [p for points in probes.values() for p in points]
        kinds = set(event for _, event, _ in points)
        lines = frozenset(line for _, event, line in points
                          if event == _EV_LINE)
        wanted = ((events.PY_START if _EV_ENTRY in kinds else 0)
                  | (events.PY_RETURN if _EV_RETURN in kinds else 0)
                  | (events.LINE if lines else 0))
        if self.ours():
            if wanted & events.LINE and not lines <= entry[3]:
                # Lines answered DISABLE stay off until LINE is set anew.
                sys.monitoring.set_local_events(self.tool, code,
                                                wanted & ~events.LINE)
            sys.monitoring.set_local_events(self.tool, code, wanted)
        entry[2], entry[3] = wanted, lines

    def global_events(self):
        if not self.ours():
            return
        wants = any(event == _EV_EXCEPTION for entry in self.codes.values()
                    for points in entry[1].values() for _, event, _ in points)
        sys.monitoring.set_events(
            self.tool, sys.monitoring.events.PY_UNWIND if wants else 0)

    def add(self, probe, targets):
        native = _native_module()
        self.acquire()
        added = []
        try:
            for orig, _, points in targets:
                entry = self.codes.get(id(orig))
                if entry is None:
                    entry = self.codes[id(orig)] = [orig, {}, 0, frozenset()]
                entry[1][probe.id] = points
                added.append(entry)
                # The table first, then the events that consult it.
                for slot, event, line in points:
                    native._monitor_add(orig, slot, event, line)
                self.install(entry)
            self.global_events()
        except BaseException:
            self.drop(probe, [e[0] for e in added])
            raise
        codes = []
        for orig, _, _ in targets:
            entry = _hook_entry(probe, orig, orig)
            entry.update(functions_swapped=0, running_frames=0, warnings=[])
            codes.append(entry)
        return {"codes": codes, "changed": []}

    def drop(self, probe, codes):
        native = _native_module()
        for code in codes:
            entry = self.codes.get(id(code))
            if entry is None:
                continue
            points = entry[1].pop(probe.id, [])
            # The events first, then the table they consult.
            if entry[1]:
                self.install(entry)
            else:
                if self.ours():
                    sys.monitoring.set_local_events(self.tool, code, 0)
                del self.codes[id(code)]
            for slot, event, line in points:
                native._monitor_remove(code, slot, event, line)
        self.global_events()
        if not self.codes:
            self.release()

    def remove(self, probe):
        self.drop(probe, probe.codes)
        codes = []
        for orig in probe.codes:
            entry = _hook_entry(probe, orig, orig)
            entry.update(functions_restored=0, restored=True, warnings=[])
            codes.append(entry)
        return {"codes": codes, "changed": []}

    def reset(self):
        if self.ours():
            for entry in self.codes.values():
                sys.monitoring.set_local_events(self.tool, entry[0], 0)
        self.codes.clear()
        if self.tool is not None:
            self.release()

    def listing(self, orig):
        return orig


_BACKEND = None


def _backend():
    global _BACKEND
    if _BACKEND is None:
        if sys.version_info >= (3, 12):
            _BACKEND = _Monitoring()
        elif sys.version_info >= (3, 11):
            _BACKEND = _Bytecode()
        else:
            raise _Fail("RUNTIME_ERROR", "hooking needs CPython 3.11 or "
                        "later")
    return _BACKEND


class _Probe:
    """One hook command's work; HOOKS[probe_id]."""

    def __init__(self, probe_id, slot, target, events, line):
        self.id = probe_id
        self.slot = slot
        self.target = target
        self.events = events
        self.line = line
        self.codes = []         # original code objects
        self.points = []        # [(slot, event, line)], the same per code

    def revert(self):
        """Remove this probe's hooks (and gate it off: a frame still in
        hooked code calls a disarmed gate)."""
        try:
            return _backend().remove(self)
        finally:
            _native_module()._gate(self.slot, False)


def _publish_hook_count():
    """After every change to HOOKS: the count, and that it changed."""
    publish = getattr(_native, "_set_hooks_active", None)
    if publish is not None:
        publish(len(HOOKS))


def _check_probe_id(command):
    probe_id = command.get("probe_id")
    if type(probe_id) is not str or not probe_id:
        raise _Fail("RUNTIME_ERROR", "bad command: 'probe_id' must be a "
                    "non-empty string")
    return probe_id


def _hook_command(command):
    native = _native_module()
    probe_id = _check_probe_id(command)
    slot = command.get("slot")
    if type(slot) is not int or not 0 <= slot < native.MAX_GATES:
        raise _Fail("RUNTIME_ERROR", f"bad command: 'slot' must be an integer "
                    f"0..{native.MAX_GATES - 1}")
    for other in HOOKS.values():
        if (type(other) is _Probe and other.id != probe_id
                and other.slot == slot):
            raise _Fail("RUNTIME_ERROR", f"slot {slot} is in use by probe "
                        f"{other.id!r}")
    _, _, _, line = _parse_target(command.get("target"))
    events = command.get("events")
    if events is None:
        events = ["line"] if line is not None else list(_FUNCTION_EVENTS)
    if (type(events) is not list or not events
            or any(type(e) is not str or e not in _EVENTS for e in events)):
        raise _Fail("RUNTIME_ERROR", "bad command: 'events' must be a "
                    "non-empty list of entry, return, exception, line")
    events = sorted(set(events), key=lambda e: _EVENTS[e])
    if line is not None and events != ["line"]:
        raise _Fail("RUNTIME_ERROR", "bad command: a target with a line takes "
                    "events [\"line\"]")
    if line is None and "line" in events:
        raise _Fail("RUNTIME_ERROR", "bad command: a line event needs a "
                    "target with a line (module:qualname@LINE or "
                    "file.py:LINE)")
    backend = _backend()
    native._monitor_config(
        sys.monitoring.DISABLE if sys.version_info >= (3, 12) else None,
        _skip_exception_types())
    resolved = _resolve_objects(command)
    if not resolved.get("hookable"):
        # A builtin, a class without Python code, a callable instance
        # without a Python __call__: the resolver says which.
        raise _Fail("METHOD_NOT_FOUND", resolved.get("message")
                    or f"{resolved.get('target')} has no Python code to hook")
    parents = resolved.get("_parents") or {}
    line_ids = set(resolved.get("line_code_ids") or ())
    targets, seen = [], set()
    points = [(slot, _EVENTS[e], line or 0) for e in events]
    for entry in resolved["codes"]:
        code = entry["_code"]
        if (id(code) not in line_ids if line is not None
                else entry["role"] != "target"):
            continue
        chain = backend.chain(code, parents)
        if id(chain[0]) in seen:
            continue
        seen.add(id(chain[0]))
        targets.append((chain[0], chain, points))
    if not targets:
        raise _Fail("METHOD_NOT_FOUND", f"{resolved.get('target')}: no code "
                    f"object to hook")
    line_code_ids = [id(backend.canonical(e["_code"]))
                     for e in resolved["codes"] if id(e["_code"]) in line_ids]
    # Routes are read before anything changes: a route that holds a copy
    # of the probed function with other code would never fire, and that is
    # an error, not a READY (see "framework routes").
    routes, unreachable, route_notes = _routes_for(resolved)
    if unreachable:
        raise _Fail("RUNTIME_ERROR", _unreachable_message(
            resolved.get("target"), unreachable))
    replaced = HOOKS.pop(probe_id, None)
    if replaced is not None:
        try:
            _backend().remove(replaced)
        finally:
            if replaced.slot != slot:
                native._gate(replaced.slot, False)
            _publish_hook_count()
    probe = _Probe(probe_id, slot, resolved.get("target"), events, line)
    probe.codes = [t[0] for t in targets]
    probe.points = points
    result = backend.add(probe, targets)
    HOOKS[probe_id] = probe
    _publish_hook_count()
    reply = _public(resolved)
    reply.pop("codes", None)
    if line_code_ids:
        # Originals: the ids a resolve gives once nothing is hooked.
        reply["line_code_ids"] = line_code_ids
        reply["line_code_id"] = line_code_ids[0]
    reply.update(probe_id=probe_id, slot=slot, events=events,
                 mechanism=backend.name, replaced=replaced is not None,
                 codes=result["codes"], changed=result["changed"],
                 routes=routes)
    reply.update(route_notes)
    return reply


def _unhook_command(command):
    probe_id = _check_probe_id(command)
    probe = HOOKS.get(probe_id)
    if type(probe) is not _Probe:
        return {"ok": True, "probe_id": probe_id, "unhooked": False,
                "message": f"no hook with probe_id {probe_id!r}"}
    del HOOKS[probe_id]
    try:
        result = probe.revert()
    finally:
        _publish_hook_count()
    reply = {"ok": True, "probe_id": probe_id, "unhooked": True,
             "slot": probe.slot}
    reply.update(result)
    return reply


def _hooks_command(command):
    backend = _backend() if sys.version_info >= (3, 11) else None
    hooks = []
    for key, probe in HOOKS.items():
        if type(probe) is not _Probe:
            hooks.append({"key": key})
            continue
        hooks.append({
            "probe_id": probe.id, "slot": probe.slot, "target": probe.target,
            "events": list(probe.events), "line": probe.line or 0,
            "codes": [_hook_entry(probe, orig, backend.listing(orig))
                      for orig in probe.codes],
        })
    reply = {"ok": True, "hooks": hooks, "count": len(hooks),
             "mechanism": backend.name if backend else None}
    if type(backend) is _Monitoring:
        reply["tool_id"] = backend.tool
    return reply


# -- commands --

def _hello(command):
    main = dict.get(sys.modules, "__main__")
    return {
        "ok": True,
        "helper_version": HELPER_VERSION,
        "python": "%d.%d.%d" % sys.version_info[:3],
        "pid": _stdlib("os").getpid(),
        "hooks_active": bool(HOOKS),
        "main_module": _main_module_name(main) if main is not None else None,
    }


def _revert_all(command):
    reverted = 0
    errors = []
    for key, hook in list(HOOKS.items()):
        try:
            hook.revert()
            reverted += 1
        except Exception as exc:
            errors.append(f"{key}: {_exception_text(exc)}")
    HOOKS.clear()
    _publish_hook_count()
    if _BACKEND is not None:
        # Whatever a failed revert left behind goes back to the originals.
        try:
            _BACKEND.reset()
        except Exception as exc:
            errors.append(f"reset: {_exception_text(exc)}")
    reply = {"ok": True, "reverted": reverted}
    if errors:
        reply["errors"] = errors
    return reply


_COMMANDS = {
    "hello": _hello,
    "resolve": _resolve,
    "revert-all": _revert_all,
    "hook": _hook_command,
    "unhook": _unhook_command,
    "hooks": _hooks_command,
}


def _exception_text(exc):
    """'TypeError: message (bootstrap line N in f)', reading only C slots."""
    text = _type_label(type(exc))
    try:
        args = BaseException.__dict__["args"].__get__(exc)
        words = [a if type(a) is str else repr(a) for a in args
                 if type(a) in (str, int, float, bool)]
        if words:
            text += ": " + " ".join(words)
    except Exception:
        pass
    try:
        tb = BaseException.__dict__["__traceback__"].__get__(exc)
        last = None
        while tb is not None:
            last = tb
            tb = tb.tb_next
        if last is not None:
            text += (f" (at {last.tb_frame.f_code.co_name}, line "
                     f"{last.tb_lineno})")
    except Exception:
        pass
    return text


def _error(cause, message):
    return {"ok": False, "error_cause": cause, "message": message}


def _run(command_json):
    try:
        command = _stdlib("json").loads(command_json)
    except Exception as exc:
        return _error("RUNTIME_ERROR",
                      f"malformed command (not JSON): {_exception_text(exc)}")
    if type(command) is not dict:
        return _error("RUNTIME_ERROR", "malformed command: not a JSON object")
    name = command.get("cmd")
    handler = _COMMANDS.get(name) if type(name) is str else None
    if handler is None:
        return _error("RUNTIME_ERROR", f"unknown command {name!r}; known: "
                      + ", ".join(sorted(_COMMANDS)))
    try:
        return handler(command)
    except _Fail as fail:
        return _error(fail.cause, fail.message)


def dispatch(command_json):
    """Run one command (a JSON object with "cmd") and return the JSON reply.
    Never raises: anything unexpected is a RUNTIME_ERROR reply."""
    interrupted = False
    try:
        reply = _run(command_json)
    except BaseException as exc:
        # KeyboardInterrupt/SystemExit belong to the app: re-deliver the
        # interrupt to the main thread instead of swallowing it.
        interrupted = type(exc) is KeyboardInterrupt
        reply = _error("RUNTIME_ERROR",
                       f"pydi helper error: {_exception_text(exc)}")
    try:
        text = _stdlib("json").dumps(reply)
    except BaseException:
        text = ('{"ok": false, "error_cause": "RUNTIME_ERROR", "message": '
                '"pydi helper: reply could not be encoded"}')
    if interrupted:
        try:
            sys.modules["_thread"].interrupt_main()
        except BaseException:
            pass
    return text
