"""The trusted harness for function-call code tests (``{"functional": test_code}``).

One program, two jails (``Sandbox.run_paired``), under the system Python with the standard
library only. The answer's code and the tests never share a process, nor a PID namespace:

1. **The tests' jail** runs ``main.py <request fd> <reply fd>`` (``main_tests``). It makes
   itself non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``; it fails closed if that does not
   work), keeps a private duplicate of stdout for the verdict and points fd 1 at
   ``/dev/null`` before anything else runs, so nothing the prefix or the tests print can
   look like a verdict. It reads ``{"nonce", "solution", "tests", "prefix"}`` from stdin,
   then runs LeetCode's helpers (``ListNode``, ``TreeNode``, ``list_node``,
   ``is_same_list``, ``tree_node``, ``is_same_tree``), the record's prefix and the tests
   in its own namespace.
2. **The answer's jail** runs ``main.py`` with the two pipes as stdin and stdout
   (``main_answer``): it moves them to private descriptors, points 0, 1 and 2 at
   ``/dev/null``, closes every other descriptor, and serves requests. The first request
   (``load``) carries the answer's code, the prefix and the names of the tests' classes;
   it never receives the tests, the expected values or the nonce, and no process in its
   namespace holds them or any descriptor that leads to the verdict.
3. A global name the tests use that is neither theirs nor a builtin (``Solution``, the
   function name) resolves to a proxy for the answer's object; calling it sends the
   arguments over the pipe as data, the answer's jail runs the call, and only *data*
   comes back: ``None``, bools, numbers (also ``Fraction`` and ``Decimal``), strings,
   bytes, lists, tuples, dicts, sets, deques and nodes of the tests' own classes
   (``ListNode``, ``TreeNode``, ...) are rebuilt as plain objects of the harness's own
   types; anything else stays with the answer as an opaque handle (no truth value, equal
   only to itself). Arguments the answer changes in place are copied back.
4. The verdict line is ``<nonce> PASS`` only when the tests ran to their end without an
   exception, called the answer at least once, and the answer neither died nor raised
   ``SystemExit`` / ``KeyboardInterrupt``. Otherwise ``<nonce> FAIL <reason>``.

The caller (``_code.harness_verdict``) passes only when the harness exited 0 and its whole
output, within the read limit, is exactly the line ``<nonce> PASS``. Nothing the answer does,
in its module code or in a call, can reach the tests' objects, the comparison, the nonce or
the verdict channel: exits, atexit hooks, excepthooks, patched builtins or modules, printed
markers, threads, signals, frame or gc introspection, ctypes, ``/proc``, pidfds and objects
whose ``__eq__`` always says True all stay inside the answer's jail
(``tests/plugins/test_sandbox.py`` and ``test_sandbox_jail.py`` try each).
"""
from __future__ import annotations

import builtins
import json
import os
import sys

MAX_LINE = 64 * 2**20          # largest message read from the answer process
# LeetCode's test helpers, defined by the harness before the record's prefix: a test that
# uses them never takes them from the answer, even when the record carries no prefix.
HELPERS = """
from collections import deque


class ListNode:
    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next


class TreeNode:
    def __init__(self, val=0, left=None, right=None):
        self.val = val
        self.left = left
        self.right = right


def list_node(values):
    head = tail = None
    for v in values or ():
        node = ListNode(v)
        if head is None:
            head = tail = node
        else:
            tail.next = node
            tail = node
    return head


def is_same_list(a, b):
    while a is not None and b is not None:
        if a.val != b.val:
            return False
        a, b = a.next, b.next
    return a is None and b is None


def tree_node(values):
    values = list(values or ())
    if not values or values[0] is None:
        return None
    root = TreeNode(values[0])
    queue, i = deque([root]), 1
    while queue and i < len(values):
        node = queue.popleft()
        if i < len(values) and values[i] is not None:
            node.left = TreeNode(values[i])
            queue.append(node.left)
        i += 1
        if i < len(values) and values[i] is not None:
            node.right = TreeNode(values[i])
            queue.append(node.right)
        i += 1
    return root


def is_same_tree(a, b):
    if a is None or b is None:
        return a is b
    return a.val == b.val and is_same_tree(a.left, b.left) and is_same_tree(a.right, b.right)
"""
SCALARS = (type(None), bool, int, float, str)


class AnswerFailure(BaseException):
    """The answer process died, exited or broke the protocol: not catchable by a test's
    ``except Exception``; the verdict is FAIL whatever the tests do next."""


# --- values as data ----------------------------------------------------------------------------
class Codec:
    """Plain values to JSON and back. Nodes (instances of the named value classes) travel
    by value in a flat table keyed by node id, so cycles, sharing and long chains work and
    a node keeps its identity across messages in both processes."""

    def __init__(self, side: str, classes, trusted: bool) -> None:
        self.side, self.classes, self.trusted = side, classes, trusted
        self.nid_of: dict[int, str] = {}       # id(node) -> node id
        self.node: dict[str, object] = {}      # node id -> node (kept alive)
        self.handles: dict[int, object] = {}   # answer side: handle id -> object
        self.hid_of: dict[int, int] = {}
        self.counter = 0

    def _new_id(self) -> str:
        self.counter += 1
        return f"{self.side}{self.counter}"

    def _class(self, name: str):
        cls = self.classes.get(name)
        if self.trusted:      # the tests' own classes (the prefix's, or defined by the tests)
            return cls if isinstance(cls, type) and cls.__module__ == "__main__" else None
        return cls

    def _node_class(self, obj):
        cls = type(obj)
        if self.trusted:
            return cls.__name__ if self._class(cls.__name__) is cls else None
        return cls.__name__ if cls.__name__ in self.classes and hasattr(obj, "__dict__") else None

    def encode(self, value, nodes: dict) -> object:
        pending: list = []
        out = self._enc(value, nodes, pending)
        while pending:                                  # node attributes, breadth first
            obj, nid = pending.pop()
            attrs = {k: self._enc(v, nodes, pending) for k, v in vars(obj).items()
                     if isinstance(k, str)}
            nodes[nid] = [type(obj).__name__, attrs]
        return out

    def _enc(self, x, nodes, pending):
        t = type(x)
        if t in SCALARS:
            return x
        if not self.trusted:                            # the answer's subclasses become plain data
            for base in (bool, int, float, str):
                if isinstance(x, base):
                    return base(x)
        if self._node_class(x):
            nid = self.nid_of.get(id(x))
            if nid is None:
                nid = self._new_id()
                self.nid_of[id(x)], self.node[nid] = nid, x
            if nid not in nodes:
                nodes[nid] = None
                pending.append((x, nid))
            return {"N": nid}
        if self.trusted and t is Remote:
            return {"H": object.__getattribute__(x, "_hid")}
        if t is list or (not self.trusted and isinstance(x, list)):
            return {"L": [self._enc(v, nodes, pending) for v in x]}
        if t is tuple or (not self.trusted and isinstance(x, tuple)):
            return {"T": [self._enc(v, nodes, pending) for v in x]}
        if t is dict or (not self.trusted and isinstance(x, dict)):
            return {"D": [[self._enc(k, nodes, pending), self._enc(v, nodes, pending)] for k, v in x.items()]}
        if t is set or (not self.trusted and isinstance(x, set)):
            return {"S": [self._enc(v, nodes, pending) for v in x]}
        if t is frozenset or (not self.trusted and isinstance(x, frozenset)):
            return {"F": [self._enc(v, nodes, pending) for v in x]}
        if t in (bytes, bytearray):
            return {"B" if t is bytes else "Y": x.hex()}
        if t is complex:
            return {"C": [x.real, x.imag]}
        from decimal import Decimal
        from fractions import Fraction
        if t is Fraction or (not self.trusted and isinstance(x, Fraction)):
            return {"R": [x.numerator, x.denominator]}
        if t is Decimal or (not self.trusted and isinstance(x, Decimal)):
            return {"X": str(x)}
        if self.trusted:
            raise TypeError(f"cannot pass a {t.__name__} to the answer")
        from collections import deque
        if isinstance(x, deque):
            return {"Q": [self._enc(v, nodes, pending) for v in x]}
        hid = self.hid_of.get(id(x))
        if hid is None:
            hid = len(self.handles) + 1
            self.handles[hid], self.hid_of[id(x)] = x, hid
        kind = "class" if isinstance(x, type) else "callable" if callable(x) else "object"
        return {"H": hid, "k": kind, "n": getattr(x, "__qualname__", t.__name__)[:80]}

    def decode(self, value, nodes: dict | None = None):
        nodes = nodes or {}
        if not isinstance(nodes, dict):
            raise ValueError("bad node table")
        made = {}
        for nid, entry in nodes.items():                # pass 1: the node objects
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                    and isinstance(entry[1], dict)):
                raise ValueError("bad node entry")
            obj = self.node.get(nid)
            cls = self._class(entry[0])
            if obj is None or type(obj).__name__ != entry[0]:
                if cls is None:
                    if self.trusted:
                        raise ValueError(f"unknown node class {entry[0]!r}")
                    cls = self.classes[entry[0]] = type(entry[0], (), {})
                obj = object.__new__(cls)
                self.node[nid], self.nid_of[id(obj)] = obj, nid
            made[nid] = obj
        for nid, (_, attrs) in nodes.items():           # pass 2: their attributes
            d = made[nid].__dict__
            d.clear()
            for k, v in attrs.items():
                if self.trusted and (not isinstance(k, str) or not k.isidentifier() or k.startswith("__")):
                    raise ValueError(f"bad attribute name {k!r}")
                d[k] = self._dec(v, made)
        return self._dec(value, made)

    def _dec(self, x, made):
        if type(x) in SCALARS:
            return x
        if type(x) is not dict or not x:
            raise ValueError("bad value encoding")
        tag = next(iter(x))
        v = x[tag]
        if tag == "N":
            if v not in made:
                raise ValueError("reference to an unknown node")
            return made[v]
        if tag == "H":
            if self.trusted:
                return Remote(v, x.get("k", "object"), str(x.get("n", "")))
            return self.handles[v]
        if tag in "LTSFQ" and type(v) is list:
            items = [self._dec(i, made) for i in v]
            if tag == "L":
                return items
            if tag == "T":
                return tuple(items)
            if tag == "S":
                return set(items)
            if tag == "F":
                return frozenset(items)
            from collections import deque
            return deque(items)
        if tag == "D" and type(v) is list:
            out = {}
            for pair in v:
                if type(pair) is not list or len(pair) != 2:
                    raise ValueError("bad dict item")
                out[self._dec(pair[0], made)] = self._dec(pair[1], made)
            return out
        if tag in "BY" and type(v) is str:
            return bytes.fromhex(v) if tag == "B" else bytearray.fromhex(v)
        if tag == "C" and type(v) is list and len(v) == 2 and all(type(p) in (int, float) for p in v):
            return complex(v[0], v[1])
        if tag == "R" and type(v) is list and len(v) == 2 and all(type(p) is int for p in v) and v[1]:
            from fractions import Fraction
            return Fraction(v[0], v[1])
        if tag == "X" and type(v) is str and len(v) < 1000:
            from decimal import Decimal
            return Decimal(v)
        raise ValueError(f"bad value tag {tag!r}")


# --- the trusted side -----------------------------------------------------------------------------
_RPC = None      # set by main(): the only way a Remote reaches the answer process


class Remote:
    """An object that lives in the answer process: callable, with attributes, and nothing
    else (no truth value, equal only to itself, not iterable)."""
    __slots__ = ("_hid", "_kind", "_name")

    def __init__(self, hid, kind, name):
        object.__setattr__(self, "_hid", hid)
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_name", name)

    def __call__(self, *args, **kwargs):
        return _RPC.call(self, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _RPC.request({"op": "getattr", "h": object.__getattribute__(self, "_hid"), "name": name})

    def __setattr__(self, name, value):
        raise TypeError("the tests cannot set attributes on the answer's objects")

    def __bool__(self):
        raise TypeError(f"the answer returned an opaque {object.__getattribute__(self, '_name')!r} "
                        "(not plain data) where the tests expect a value")

    def __repr__(self):
        return f"<answer's {object.__getattribute__(self, '_kind')} {object.__getattribute__(self, '_name')}>"


class Rpc:
    """Requests to the answer process: one JSON line out, one JSON line back."""

    def __init__(self, wfd: int, rfd: int, codec: Codec) -> None:
        self.w = os.fdopen(wfd, "wb")
        self.r = os.fdopen(rfd, "rb")
        self.codec = codec
        self.seq = 0
        self.calls = 0
        self.failure: str | None = None

    def _fail(self, why: str):
        self.failure = self.failure or why
        raise AnswerFailure(why)

    def request(self, msg: dict, nodes_out: dict | None = None, want_args: bool = False):
        if self.failure:
            raise AnswerFailure(self.failure)
        self.seq += 1
        msg["seq"] = self.seq
        if nodes_out:
            msg["nodes"] = nodes_out
        try:
            self.w.write(json.dumps(msg).encode() + b"\n")
            self.w.flush()
            line = self.r.readline(MAX_LINE)
        except OSError as exc:
            self._fail(f"the answer process is gone ({type(exc).__name__})")
        if not line.endswith(b"\n"):
            when = "while its code was loading" if msg["op"] == "load" else "during a call"
            self._fail(f"the answer process exited {when}" if not line
                       else "the answer process sent a malformed reply")
        try:
            reply = json.loads(line)
            if type(reply) is not dict or reply.get("seq") != self.seq:
                raise ValueError("out of sequence")
        except (ValueError, RecursionError) as exc:
            self._fail(f"the answer process sent a malformed reply ({exc})")
        if "E" in reply:
            err = reply["E"]
            if type(err) is not list or len(err) != 3:
                self._fail("the answer process sent a malformed error")
            name, text, ordinary = str(err[0])[:80], str(err[1])[:300], err[2] is True
            if not ordinary:          # SystemExit, KeyboardInterrupt, ...: the run is over
                self._fail(f"the answer raised {name}" + (f": {text}" if text else ""))
            cls = getattr(builtins, name, None)
            if (not (isinstance(cls, type) and issubclass(cls, Exception))
                    or issubclass(cls, (StopIteration, StopAsyncIteration))):
                # StopIteration would end an all(map(...)) in the tests early and pass it
                cls, text = RuntimeError, f"the answer raised {name}" + (f": {text}" if text else "")
            raise cls(text)
        try:
            nodes = reply.get("nodes") or {}
            ret = self.codec.decode(reply.get("ret"), nodes)
            back = None
            if want_args and reply.get("args") is not None:
                back = (self.codec.decode(reply["args"], nodes), self.codec.decode(reply["kwargs"], nodes))
        except (ValueError, TypeError, KeyError, RecursionError, MemoryError) as exc:
            self._fail(f"the answer process sent data that is not a plain value ({exc})")
        return (ret, back) if want_args else ret

    def call(self, target: Remote, args: tuple, kwargs: dict):
        nodes: dict = {}
        enc_args = self.codec.encode(list(args), nodes)
        enc_kwargs = self.codec.encode(dict(kwargs), nodes)
        self.calls += 1
        ret, back = self.request({"op": "call", "h": object.__getattribute__(target, "_hid"),
                                  "args": enc_args, "kwargs": enc_kwargs}, nodes, want_args=True)
        if back is not None:          # copy in-place changes back into the tests' arguments
            new_args, new_kwargs = back
            pairs = list(zip(args, new_args if isinstance(new_args, list) else []))
            pairs += [(kwargs[k], new_kwargs[k]) for k in kwargs if isinstance(new_kwargs, dict) and k in new_kwargs]
            for old, new in pairs:
                _update_in_place(old, new)
        return ret


def _update_in_place(old, new) -> None:
    if type(old) is list and type(new) is list:
        old[:] = new
    elif type(old) in (dict, set) and type(new) is type(old):
        old.clear()
        old.update(new)
    elif type(old) is bytearray and type(new) is bytearray:
        old[:] = new


class TestGlobals(dict):
    """Builtins for the tests: the real ones, then the answer's module names as proxies."""

    def __missing__(self, name):
        if _RPC is None or name.startswith("__"):
            raise KeyError(name)
        value = _RPC.request({"op": "get", "name": name})
        self[name] = value
        return value


def _where(exc: BaseException) -> str:
    """`` (tests line N)`` for the deepest frame of the tests in a traceback."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<tests>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" (tests line {line})" if line else ""


def _verdict(fd: int, nonce: str, ok: bool, reason: str = "") -> None:
    line = f"{nonce} PASS\n" if ok else f"{nonce} FAIL {' '.join(reason.split())[:300]}\n"
    os.write(fd, line.encode())


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def _non_dumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0), then check it with PR_GET_DUMPABLE."""
    try:
        import _ctypes
        prctl = _ctypes.dlsym(_ctypes.dlopen(None), "prctl")
        return (_ctypes.call_function(prctl, (4, 0, 0, 0, 0)) == 0
                and _ctypes.call_function(prctl, (3, 0, 0, 0, 0)) == 0)
    except (ImportError, AttributeError, OSError):
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(4, 0, 0, 0, 0) == 0 and libc.prctl(3, 0, 0, 0, 0) == 0


def main_tests(req_w: int, rep_r: int) -> None:
    """The tests' side, alone in its jail. stdin: ``{"nonce", "solution", "tests",
    "prefix"}``; ``req_w``/``rep_r``: the pipes to the answer's jail. The verdict is the
    only thing it writes to stdout; everything else (the prefix's and the tests' prints)
    goes to /dev/null."""
    global _RPC
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    if not _non_dumpable():
        os.write(2, b"harness: cannot make itself non-dumpable; refusing to run\n")
        os._exit(3)
    out = os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 1)                  # what the tests print cannot pass for a verdict
    payload = json.loads(_read_all(0))
    os.dup2(null, 0)
    nonce, prefix = payload["nonce"], payload.get("prefix") or ""
    tests_ns = {"__name__": "__main__", "__builtins__": TestGlobals(vars(builtins))}
    try:
        exec(compile(HELPERS, "<helpers>", "exec"), tests_ns)
        exec(compile(prefix, "<prefix>", "exec"), tests_ns)
    except BaseException as exc:
        _verdict(out, nonce, False, f"the test prefix failed: {type(exc).__name__}: {exc}")
        return
    classes = sorted(k for k, v in tests_ns.items() if isinstance(v, type) and v.__module__ == "__main__")
    _RPC = Rpc(req_w, rep_r, Codec("t", tests_ns, trusted=True))
    ok, reason = False, ""
    try:
        _RPC.request({"op": "load", "code": payload["solution"], "prefix": prefix, "classes": classes})
        exec(compile(payload["tests"], "<tests>", "exec"), tests_ns)
        ok = True
    except AnswerFailure:
        pass
    except AssertionError as exc:
        reason = "a test assertion failed" + _where(exc) + (f": {exc}" if str(exc) else "")
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}" + _where(exc)
    if _RPC.failure:
        ok, reason = False, _RPC.failure
    elif ok and _RPC.calls == 0:
        ok, reason = False, "the tests never called the answer"
    _verdict(out, nonce, ok, reason)


def main_answer() -> None:
    """The answer's side, alone in its own jail: requests on stdin, replies on stdout.
    Its standard descriptors then point at /dev/null, so nothing it prints is a reply."""
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    keep = sorted({rfd, wfd})
    os.closerange(3, keep[0])
    os.closerange(keep[0] + 1, keep[1])
    os.closerange(keep[1] + 1, 1 << 16)
    try:
        serve(rfd, wfd)
    finally:
        os._exit(0)


# --- the answer process ---------------------------------------------------------------------------
def serve(rfd: int, wfd: int) -> None:
    """Run the answer's code (after the record's prefix) and the calls the harness asks
    for. Everything here may be subverted by the answer; the harness trusts none of it."""
    import types
    r, w = os.fdopen(rfd, "rb"), os.fdopen(wfd, "wb")
    codec = Codec("a", {}, trusted=False)
    module = types.ModuleType("solution")
    sys.modules["solution"] = module
    for line in r:
        msg = json.loads(line)
        reply: dict = {"seq": msg.get("seq")}
        try:
            op = msg["op"]
            nodes: dict = {}
            if op == "load":
                classes = [str(name) for name in msg.get("classes") or ()]
                codec.classes = {name: None for name in classes}
                exec(compile(str(msg.get("prefix") or "") + "\n" + msg["code"], "solution.py", "exec"),
                     module.__dict__)
                for name in classes:
                    cls = module.__dict__.get(name)
                    codec.classes[name] = cls if isinstance(cls, type) else type(name, (), {})
                reply["ret"] = None
            elif op == "get":
                if msg["name"] not in module.__dict__:
                    raise NameError(f"name {msg['name']!r} is not defined")
                reply["ret"] = codec.encode(module.__dict__[msg["name"]], nodes)
            elif op == "getattr":
                reply["ret"] = codec.encode(getattr(codec.handles[msg["h"]], msg["name"]), nodes)
            elif op == "call":
                incoming = msg.get("nodes") or {}
                args = codec.decode(msg["args"], incoming)
                kwargs = codec.decode(msg["kwargs"], incoming)
                result = codec.handles[msg["h"]](*args, **kwargs)
                reply["ret"] = codec.encode(result, nodes)
                new_args, new_kwargs = codec.encode(args, nodes), codec.encode(kwargs, nodes)
                if incoming or new_args != msg["args"] or new_kwargs != msg["kwargs"]:
                    reply["args"], reply["kwargs"] = new_args, new_kwargs
            else:
                raise ValueError(f"unknown op {op!r}")
            reply["nodes"] = nodes
        except BaseException as exc:
            reply = {"seq": msg.get("seq"), "E": [type(exc).__name__, str(exc)[:300], isinstance(exc, Exception)]}
        try:
            data = json.dumps(reply).encode()
        except (ValueError, TypeError, RecursionError) as exc:
            data = json.dumps({"seq": msg.get("seq"), "E": [type(exc).__name__, str(exc)[:300], True]}).encode()
        w.write(data + b"\n")
        w.flush()


if __name__ == "__main__":
    if len(sys.argv) == 3:            # main.py <request fd> <reply fd>: the tests' jail
        main_tests(int(sys.argv[1]), int(sys.argv[2]))
    else:
        main_answer()
    os._exit(0)           # the verdict is written; skip tearing the interpreter down
