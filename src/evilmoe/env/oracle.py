"""The strict oracle's trusted half: what each test calls, what it expects, and how results are judged.

Graded code never sees an expected value. For every assert of a problem this module (in the grader's
own process, which never runs response code) splits the test into

  call      the source of the one `Solution().<method>(...)` call the test makes; the sandboxed harness
            evaluates it after the response ran and sends back the result, nothing else
  conv      how the harness turns the result into plain data: "plain" (built-in scalars and
            containers only), "list" (a ListNode chain -> its values), "tree" (a TreeNode -> its
            preorder with None for missing children)
  op        the comparison the assert makes between the result and the expected side
  expected  the expected side's value, evaluated here (literals, `inf`, `list_node([...])`,
            `tree_node([...])`), or, for anything else, by the problem's setup code alone in a sandboxed
            run that never sees response code

The harness writes one line per test on a pipe of its own, in a restricted JSON encoding of built-in
values (see `decode_line`); the grader decodes each line into plain built-in objects and applies `op`
with Python's own semantics, so `2 == 2.0`, `[1] != (1,)` and `1 == True` hold exactly as in the
original asserts. A missing, garbled, out-of-order or extra-deep line is a failed test. What the
response prints, how it exits, or what it does to builtins inside its process cannot make a wrong
answer pass: the values that would have to match never enter that process.

Supported assert forms (every form in the bundled set and both LeetCode files, and a few more):
  assert CALL <op> E  /  assert E <op> CALL     op in == != < <= > >= in, not in, is, is not
  assert is_same_list(CALL, E) / is_same_tree(CALL, E)  (either argument order)
  assert CALL  /  assert not CALL
  assert abs(CALL - E) < TOL (or <=, or E - CALL)  /  assert isclose(CALL, E, rel_tol=.., abs_tol=..)
Anything else (several calls in one assert, arithmetic on the result, chained comparisons) is a
`TestFormError`: the problem cannot be graded strictly, and says so.
"""

from __future__ import annotations

import ast
import collections
import json
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# ---------------------------------------------------------------------------------------------------
# Test preparation.


class TestFormError(ValueError):
    """A test the strict oracle cannot split into one call and a trusted expected value."""


_SAME = {"is_same_list": "list", "is_same_tree": "tree"}
_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
# `x <op> CALL` is `CALL <flipped op> x` (the result is a plain built-in, so the swap is exact).
_FLIPPED = {ast.Eq: ast.Eq, ast.NotEq: ast.NotEq, ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE,
            ast.Is: ast.Is, ast.IsNot: ast.IsNot}  # fmt: skip


TOLERANCE_OPS = ("AbsLt", "AbsLtE", "IsClose")  # expected side: a tuple (value, tolerances...)


@dataclass(frozen=True)
class Check:
    """One test, split: the harness evaluates `call`; the grader compares with `expected` by `op`."""

    call: str  # source of the Solution call, evaluated in the sandbox
    conv: str  # "plain" | "list" | "tree"
    op: str  # an ast comparison class name ("Eq", "In", ...), "same", "truthy" or "falsy"
    expected_src: str  # source of the expected side ("" for truthy/falsy)


def is_solution_call(node: ast.AST) -> bool:
    """`Solution(...).<method>(...)`: the one call shape whose result the oracle judges."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Name)
        and node.func.value.func.id == "Solution"
    )


def _mentions_solution(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "Solution" for n in ast.walk(node))


def split_test(test: str) -> Check:
    """One assert statement -> a Check (TestFormError if its form is not supported)."""
    try:
        tree = ast.parse(test)
    except SyntaxError as exc:
        raise TestFormError(f"test does not parse: {exc}") from None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        raise TestFormError(f"test is not a single assert statement: {test[:120]!r}")
    expr = tree.body[0].test
    if is_solution_call(expr):
        return Check(ast.unparse(expr), "plain", "truthy", "")
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.Not) and is_solution_call(expr.operand):
        return Check(ast.unparse(expr.operand), "plain", "falsy", "")
    if isinstance(expr, ast.Compare) and len(expr.ops) == 1:
        left, right, op = expr.left, expr.comparators[0], type(expr.ops[0])
        if is_solution_call(right) and not _mentions_solution(left) and op in _FLIPPED:
            left, right, op = right, left, _FLIPPED[op]
        if is_solution_call(left) and not _mentions_solution(right):
            return Check(ast.unparse(left), "plain", op.__name__, ast.unparse(right))
    close = _tolerance_check(expr)
    if close is not None:
        return close
    if (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Name)
        and expr.func.id in _SAME
        and len(expr.args) == 2
        and not expr.keywords
    ):
        a, b = expr.args
        if is_solution_call(b) and not _mentions_solution(a):
            a, b = b, a
        if is_solution_call(a) and not _mentions_solution(b):
            return Check(ast.unparse(a), _SAME[expr.func.id], "same", ast.unparse(b))
    raise TestFormError(f"unsupported test form (the oracle needs one Solution call compared with a value): {test[:160]!r}")


def _tolerance_check(expr: ast.AST) -> Check | None:
    """`abs(CALL - E) < TOL` (or `<=`, or `E - CALL`) and `isclose(CALL, E, rel_tol=.., abs_tol=..)`
    (also `math.isclose`, either argument order): a float tolerance, only where the test uses one."""
    if (
        isinstance(expr, ast.Compare)
        and len(expr.ops) == 1
        and isinstance(expr.ops[0], (ast.Lt, ast.LtE))
        and isinstance(expr.left, ast.Call)
        and isinstance(expr.left.func, ast.Name)
        and expr.left.func.id == "abs"
        and len(expr.left.args) == 1
        and isinstance(expr.left.args[0], ast.BinOp)
        and isinstance(expr.left.args[0].op, ast.Sub)
        and not _mentions_solution(expr.comparators[0])
    ):
        a, b = expr.left.args[0].left, expr.left.args[0].right
        call, other = (a, b) if is_solution_call(a) else (b, a)
        if is_solution_call(call) and not _mentions_solution(other):
            op = "AbsLt" if isinstance(expr.ops[0], ast.Lt) else "AbsLtE"
            return Check(ast.unparse(call), "plain", op, ast.unparse(ast.Tuple([other, expr.comparators[0]], ast.Load())))
    func = expr.func if isinstance(expr, ast.Call) else None
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    if name == "isclose" and len(expr.args) == 2 and all(k.arg in ("rel_tol", "abs_tol") for k in expr.keywords):
        a, b = expr.args
        call, other = (a, b) if is_solution_call(a) else (b, a)
        if is_solution_call(call) and not _mentions_solution(other) and not any(_mentions_solution(k.value) for k in expr.keywords):
            kw = {k.arg: k.value for k in expr.keywords}
            tols = [other, kw.get("rel_tol", ast.Constant(1e-09)), kw.get("abs_tol", ast.Constant(0.0))]
            return Check(ast.unparse(call), "plain", "IsClose", ast.unparse(ast.Tuple(tols, ast.Load())))
    return None


# ---------------------------------------------------------------------------------------------------
# Trusted expected values. Literals (and the few names LeetCode tests use) are evaluated here without
# running any code; everything else goes to `expected_sources`, which the grader evaluates once per
# problem in a sandboxed run of the setup code alone.


class NotLiteral(Exception):
    """The expression needs the problem's setup code to evaluate."""


_NAMES = {"inf": math.inf, "nan": math.nan, "None": None, "True": True, "False": False}


def literal_value(node: ast.AST) -> Any:
    """Evaluate a literal expression (plus inf/nan, float('inf'), list_node/tree_node of literals)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List):
        return [literal_value(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(literal_value(e) for e in node.elts)
    if isinstance(node, ast.Set):
        return {literal_value(e) for e in node.elts}
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {literal_value(k): literal_value(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = literal_value(node.operand)
        if type(v) in (int, float, complex):
            return -v if isinstance(node.op, ast.USub) else +v
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1 and not node.keywords:
        arg = literal_value(node.args[0])
        if node.func.id == "float" and isinstance(arg, str) and arg.strip().lower() in ("inf", "-inf", "+inf", "nan"):
            return float(arg)
        if node.func.id == "list_node" and type(arg) is list:
            return ListValues(arg)
        if node.func.id == "tree_node" and type(arg) is list:
            return TreeValues(arg)
    raise NotLiteral(ast.unparse(node)[:80])


class ListValues(list):
    """`list_node(values)` evaluated without building nodes: the chain's values."""


class TreeValues(list):
    """`tree_node(level_order)` evaluated without building nodes; `.preorder()` is its plain form."""

    def preorder(self) -> list:
        return tree_preorder(self)


def tree_preorder(level_order: list) -> list:
    """The plain form the harness sends for a tree: preorder, [val] per node, None per missing child.

    Builds the tree exactly as the LeetCode helper `tree_node` does (first value is the root even if
    it is None; a None later means no child there).
    """
    if not level_order:
        return [None]
    nodes: dict[int, list] = {0: [level_order[0], None, None]}  # index -> [val, left, right]
    queue = collections.deque([0])
    i = 1
    while queue:
        node = nodes[queue.popleft()]
        for side in (1, 2):
            if i < len(level_order) and level_order[i] is not None:
                nodes[i] = [level_order[i], None, None]
                node[side] = i
                queue.append(i)
            i += 1
    out: list = []
    stack: list = [0]
    while stack:
        idx = stack.pop()
        if idx is None:
            out.append(None)
            continue
        val, left, right = nodes[idx]
        out.append([val])
        stack.append(right)
        stack.append(left)
    return out


def plain_expected(check: Check, value: Any) -> Any:
    """A trusted expected value in the plain form the harness sends for this check's conversion."""
    if check.conv == "list":
        if value is None:
            return []
        if isinstance(value, ListValues):
            return list(value)
        raise NotLiteral("is_same_list expects list_node(...)")
    if check.conv == "tree":
        if value is None:
            return [None]
        if isinstance(value, TreeValues):
            return value.preorder()
        raise NotLiteral("is_same_tree expects tree_node(...)")
    if isinstance(value, (ListValues, TreeValues)):
        raise NotLiteral("a node value compared with ==")  # needs the real helper: sandboxed evaluation
    return value


# ---------------------------------------------------------------------------------------------------
# The wire format. One line per test, written by the harness (grader.HARNESS mirrors `encode` there):
#   [index, 0, value]    the call returned; value in the encoding below
#   [index, 1, "text"]   the call raised (text: exception type and message)
# Values: null/true/false/strings/lists and JSON numbers (floats keep their decimal point or exponent;
# Infinity and NaN as Python's json writes them) stand for themselves; every other type is a JSON
# object with exactly one key:
#   {"t": [...]} tuple   {"s": [...]} set   {"f": [...]} frozenset   {"q": [...]} deque
#   {"d": [[k, v], ...]} dict   {"b": "hex"} bytes   {"c": [re, im]} complex   {"h": "-0x1f"} a big int
# Anything else (unknown keys, a dict with an unhashable key...) is a decoding error: the test failed.


class WireError(ValueError):
    """A result line that is not in the restricted encoding."""


def _object_hook(d: dict) -> Any:
    if len(d) != 1:
        raise WireError("a tagged value has exactly one key")
    ((tag, v),) = d.items()
    if tag == "h":
        if type(v) is not str or not v.lstrip("-").startswith("0x"):
            raise WireError("bad big int")
        return int(v, 16)
    if tag == "b":
        if type(v) is not str:
            raise WireError("bad bytes")
        return bytes.fromhex(v)
    if type(v) is not list:
        raise WireError(f"tag {tag!r} needs a list")
    if tag == "t":
        return tuple(v)
    if tag == "s":
        return set(_spread_hashes(v))
    if tag == "f":
        return frozenset(_spread_hashes(v))
    if tag == "q":
        return collections.deque(v)
    if tag == "d":
        if not all(type(kv) is list and len(kv) == 2 for kv in v):
            raise WireError("dict items are [key, value] pairs")
        _spread_hashes([kv[0] for kv in v])
        return dict(v)  # type: ignore[arg-type]
    if tag == "c":
        if len(v) != 2 or not all(type(x) in (int, float) for x in v):
            raise WireError("bad complex")
        return complex(v[0], v[1])
    raise WireError(f"unknown tag {tag!r}")


def _spread_hashes(items: list) -> list:
    """Refuse a set or dict whose keys were chosen to share hash values (int hashes are not randomised):
    building it would take quadratic time in the grader's process."""
    if len(items) > 64 and len({hash(x) for x in items}) < len(items) // 2:
        raise WireError("set or dict keys with colliding hashes")
    return items


_DECODER = json.JSONDecoder(object_hook=_object_hook)


def decode_line(line: bytes) -> tuple[int, bool, Any]:
    """(index, returned normally, value or error text) of one result line; WireError if malformed."""
    try:
        item = _DECODER.decode(line.decode("utf-8"))
    except WireError:
        raise
    except (ValueError, TypeError, RecursionError, MemoryError, UnicodeDecodeError) as exc:
        # json syntax, an unhashable key or set element, int digit limits, nesting too deep...
        raise WireError(f"{type(exc).__name__}: {str(exc)[:80]}") from None
    if type(item) is not list or len(item) != 3 or type(item[0]) is not int or item[1] not in (0, 1) or type(item[1]) is not int:
        raise WireError("a result line is [index, 0|1, value]")
    if item[1] == 1 and type(item[2]) is not str:
        raise WireError("an error line carries text")
    return item[0], item[1] == 0, item[2]


def compare(op: str, got: Any, expected: Any) -> bool:
    """Apply the test's comparison to a decoded (plain, built-in) result. Never raises."""
    try:
        if op == "truthy":
            return bool(got)
        if op == "falsy":
            return not got
        if op == "same":
            return bool(got == expected)
        if op in ("AbsLt", "AbsLtE"):
            value, tol = expected
            diff = abs(got - value)
            return bool(diff < tol if op == "AbsLt" else diff <= tol)
        if op == "IsClose":
            value, rel_tol, abs_tol = expected
            return math.isclose(got, value, rel_tol=rel_tol, abs_tol=abs_tol)
        return bool(_OPS[getattr(ast, op)](got, expected))
    except Exception:  # e.g. `[1] < None` raises TypeError in the assert too: the test fails
        return False


# ---------------------------------------------------------------------------------------------------
# Judging one run's result lines as they arrive.


@dataclass(frozen=True)
class PreparedTests:
    """A problem's tests, split for the oracle, with trusted expected values once they are known."""

    checks: tuple[Check, ...]
    expected: tuple[Any, ...]  # plain expected values, one per check

    def line_limit(self, i: int) -> int:
        """Most bytes a correct result line for test i can take: the encoding is at most a small
        factor larger than the expected value's repr (\\u escapes, tuple tags). Longer lines are
        failed before decoding, so a response cannot make the grader build a huge object."""
        if self.checks[i].op in ("truthy", "falsy", "NotEq", "NotIn", "IsNot", "Lt", "LtE", "Gt", "GtE", *TOLERANCE_OPS):
            return 1 << 20  # nothing bounds the result's size there but the pipe's cap
        return 16 * len(repr(self.expected[i])) + (64 << 10)


class ResultChecker:
    """Fed the harness's result pipe line by line; decides `correct` and stops at the first failure.

    `feed` returns False once the verdict can no longer be "correct" (the caller then ends the run,
    as the original asserts stop at the first failing one).
    """

    def __init__(self, tests: PreparedTests):
        self.tests = tests
        self.passed = 0  # leading tests that passed
        self.failure = ""  # why the first failing test failed ("" while none has)
        self.saw_failure = False  # a result arrived and was wrong (not merely missing)

    @property
    def correct(self) -> bool:
        return not self.failure and self.passed == len(self.tests.checks)

    def line_limit(self) -> int:
        """Most bytes the next result line may take (see PreparedTests.line_limit)."""
        return self.tests.line_limit(min(self.passed, len(self.tests.checks) - 1))

    def feed(self, line: bytes) -> bool:
        if self.failure:
            return False
        if self.passed >= len(self.tests.checks):
            return True  # trailing output after the last result cannot change the verdict
        i = self.passed
        if len(line) > self.tests.line_limit(i):
            self.failure = f"test {i}: result far larger than the expected value ({len(line)} bytes)"
            self.saw_failure = True
            return False
        try:
            index, returned, value = decode_line(line)
        except WireError as exc:
            self.failure = f"test {i}: unreadable result ({exc})"
            self.saw_failure = True
            return False
        if index != i:
            self.failure = f"test {i}: result arrived out of order"
        elif not returned:
            self.failure = f"test {i} raised {value[:160]}"
        elif not compare(self.tests.checks[i].op, value, self.tests.expected[i]):
            self.failure = f"test {i} failed (wrong answer)"
        else:
            self.passed += 1
            return True
        self.saw_failure = True
        return False

    def finish(self, why_incomplete: str) -> None:
        """The run ended; if results are missing, say why."""
        if not self.failure and self.passed < len(self.tests.checks):
            self.failure = f"test {self.passed}: no result ({why_incomplete})"
