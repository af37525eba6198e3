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
  stdlib modules it needs (json, opcode, gc, os.path), and those lazily;
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
_C_DESCRIPTOR_TYPES = (_GetSetDescriptorType, _MemberDescriptorType)


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
    value = _raw_get(_instance_dict(obj), name)
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
        return _raw_get(_instance_dict(obj), "func")
    return _MISSING


def _cached_property_func(obj):
    """.func of a functools.cached_property, or _MISSING."""
    ptype = _functools_type("cached_property")
    if ptype is None or not issubclass(type(obj), ptype):
        return _MISSING
    return _raw_get(_instance_dict(obj), "func")


def _wrapped_of(obj):
    """obj.__wrapped__ (set by functools.wraps) from its own __dict__."""
    if issubclass(type(obj), (staticmethod, classmethod)):
        return _MISSING
    return _raw_get(_instance_dict(obj), "__wrapped__")


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
        name = _raw_get(_instance_dict(spec), "name")
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
    reply = {"ok": True, "reverted": reverted}
    if errors:
        reply["errors"] = errors
    return reply


_COMMANDS = {
    "hello": _hello,
    "resolve": _resolve,
    "revert-all": _revert_all,
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
