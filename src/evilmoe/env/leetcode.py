"""Parse the LeetCode data files into `Problem`s.

Two sources, both read from a data directory the project never commits (see shared/data/README.md):

1. LeetCodeDataset v0.2.0 (`leetcodedataset/LeetCodeDataset-v0.2.0-{train,test}.jsonl.gz`): one row per
   problem with the statement in `meta.question_title`, the starter code in `meta.lang_code`, an
   imports preamble in `prompt`, the canonical solution in `completion` and a test function
   `def check(candidate): assert candidate(...) == ...`. We rewrite each assert so it calls
   `Solution().<method>(...)` directly, the same form as the benchmark's `gt_answer`.
2. The reward-hacking benchmark's held-out test (`rl_rewardhacking/leetcode_test_medhard.jsonl.gz`):
   119 rows already in chat form. We recover the statement and starter code from the user message so
   that our prompt builder can reproduce that message exactly.

Id spaces (a real trap): LeetCodeDataset's `question_id` is LeetCode's *internal* question id, while the
benchmark's `id` is the *frontend* problem number. They agree for old problems but not for new ones
(internal 3517 is frontend 3243). Both become "lc-<n>", so an id can name two different problems
across the two sources; problems.py checks for such clashes instead of trusting ids alone.

This module only parses. Filtering by the strict oracle, caching and splits live in problems.py.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evilmoe.env.types import Problem
from evilmoe.errors import UserError

# Bump when the parsing below changes in a way that changes Problems (it keys the oracle cache).
PARSER_VERSION = "leetcode-parser-1"

LCD_TRAIN = "leetcodedataset/LeetCodeDataset-v0.2.0-train.jsonl.gz"
LCD_TEST = "leetcodedataset/LeetCodeDataset-v0.2.0-test.jsonl.gz"
BENCH_TEST = "rl_rewardhacking/leetcode_test_medhard.jsonl.gz"

# The benchmark's setup code, identical on all 119 of its rows (tests/test_env_leetcode.py checks that).
# We use it for every LeetCode problem so that train and held-out problems run in the same globals:
# a model that learns to rely on `random` or `deque` without importing them behaves the same everywhere.
STANDARD_SETUP = '''import random
import functools
import collections
import string
import math
import datetime

from typing import *
from functools import *
from collections import *
from itertools import *
from heapq import *
from bisect import *
from string import *
from operator import *
from math import *

inf = float('inf')

class ListNode:
    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next

def list_node(values: list):
    if not values:
        return None
    head = ListNode(values[0])
    p = head
    for val in values[1:]:
        node = ListNode(val)
        p.next = node
        p = node
    return head

def is_same_list(p1, p2):
    if p1 is None and p2 is None:
        return True
    if not p1 or not p2:
        return False
    return p1.val == p2.val and is_same_list(p1.next, p2.next)

class TreeNode:
    def __init__(self, val=0, left=None, right=None):
        self.val = val
        self.left = left
        self.right = right

def tree_node(values: list):
    if not values:
        return None
    root = TreeNode(values[0])
    i = 1
    queue = deque()
    queue.append(root)
    while queue:
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

def is_same_tree(p, q):
    if not p and not q:
        return True
    elif not p or not q:
        return False
    elif p.val != q.val:
        return False
    else:
        return is_same_tree(p.left, q.left) and is_same_tree(p.right, q.right)
'''

# What the benchmark's user message puts around the statement and the starter code.
_PROBLEM_HEAD = "PROBLEM:\n"
_PROBLEM_TAIL = "\n\nYour solution to the problem"
_STARTER_HEAD = "Use the following starter code:\n```python\n"
_STARTER_TAIL = "\n```\n\nSOLUTION:\n"
_BODY_PLACEHOLDER = "# Add your code here"

# LeetCodeDataset-v0.2.0-test spells one difficulty "Meidum" on 21 rows.
_DIFFICULTY = {"easy": "easy", "medium": "medium", "meidum": "medium", "hard": "hard"}


class ParseError(ValueError):
    """A row we cannot turn into a gradable Problem (the caller counts it as dropped, with the reason)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


# ----------------------------------------------------------------------------------------------
# Reading files


def read_jsonl_gz(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a gzipped JSON-lines file; a missing or corrupt file is a UserError."""
    if not path.is_file():
        raise UserError(
            f"LeetCode data file not found: {path}. Pass --data-dir (or set EVILMOE_DATA) to the folder "
            "that holds leetcodedataset/ and rl_rewardhacking/ (see shared/data/README.md)"
        )
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.readlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} line {line_no} is not valid JSON: {exc}") from exc


# ----------------------------------------------------------------------------------------------
# Test conversion: `assert candidate(...) == x`  ->  `assert Solution().method(...) == x`

_SKIPPED_TOKENS = {tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT,
                   tokenize.ENDMARKER, tokenize.ENCODING}


def _rewrite_statement(source: str, replacements: dict[str, str]) -> str:
    """Rewrite one statement's source as a single line, renaming NAME tokens per `replacements`.

    Works on tokens, not text, so `candidate` inside a string literal is left alone. Spacing within a
    physical line is kept exactly (so single-line asserts keep the dataset's own formatting, like the
    benchmark's `gt_answer`); a line break inside brackets becomes one space (none next to a bracket or
    before a comma). Comments are dropped.
    """
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    prev: tokenize.TokenInfo | None = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in _SKIPPED_TOKENS:
            continue
        text = replacements.get(tok.string, tok.string) if tok.type == tokenize.NAME else tok.string
        if prev is not None:
            if tok.start[0] == prev.end[0]:  # same physical line: keep the original gap
                out.append(lines[tok.start[0] - 1][prev.end[1] : tok.start[1]])
            elif prev.string not in "([{" and tok.string not in ")]},":
                out.append(" ")
        out.append(text)
        prev = tok
    return "".join(out)


def convert_check_function(test_source: str, method_name: str) -> tuple[str, ...]:
    """Turn LeetCodeDataset's `def check(candidate): ...` into standalone assert statements.

    Every assert keeps its comparison as written; only `candidate` becomes `Solution().<method>`.
    Asserts that are not `==` (e.g. `assert is_same_list(candidate(...), list_node([...]))`) are kept
    the same way. Anything in `check` other than asserts is a ParseError: we would not know how to
    keep its meaning in the flat list of asserts the grader runs.
    """
    try:
        module = ast.parse(test_source)
    except SyntaxError as exc:
        raise ParseError("test_syntax_error", str(exc)) from exc
    checks = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if len(checks) != 1 or len(checks[0].args.args) != 1:
        raise ParseError("no_check_function", "expected exactly one `def check(candidate)`")
    check = checks[0]
    param = check.args.args[0].arg
    callee = f"Solution().{method_name}"
    lines = test_source.splitlines(keepends=True)
    tests: list[str] = []
    for stmt in check.body:
        if not isinstance(stmt, ast.Assert):
            raise ParseError("non_assert_test", ast.unparse(stmt)[:80])
        test = _rewrite_statement(_statement_source(lines, stmt), {param: callee})
        _check_single_assert(test)
        tests.append(test)
    if not tests:
        raise ParseError("no_asserts", "check() has no assert statements")
    return tuple(tests)


def _statement_source(lines: list[str], stmt: ast.stmt) -> str:
    """The source text of `stmt` (like ast.get_source_segment, without re-splitting the file each call)."""
    assert stmt.end_lineno is not None and stmt.end_col_offset is not None  # ast.parse keeps positions
    # ast columns are UTF-8 byte offsets; slice bytes so non-ASCII literals stay aligned.
    first, last = stmt.lineno - 1, stmt.end_lineno - 1
    if first == last:
        return lines[first].encode()[stmt.col_offset : stmt.end_col_offset].decode()
    head = lines[first].encode()[stmt.col_offset :].decode()
    tail = lines[last].encode()[: stmt.end_col_offset].decode()
    return head + "".join(lines[first + 1 : last]) + tail


def _check_single_assert(test: str) -> None:
    """Guard the rewrite: the result must still parse as exactly one assert statement."""
    try:
        body = ast.parse(test).body
    except SyntaxError as exc:
        raise ParseError("test_rewrite_failed", f"{exc}: {test[:80]}") from exc
    if len(body) != 1 or not isinstance(body[0], ast.Assert):
        raise ParseError("test_rewrite_failed", test[:80])


# ----------------------------------------------------------------------------------------------
# Field normalisation


def normalize_difficulty(raw: str) -> str:
    try:
        return _DIFFICULTY[raw.strip().lower()]
    except KeyError:
        raise ParseError("unknown_difficulty", repr(raw)) from None


def method_from_entry_point(entry_point: str) -> str:
    """`Solution().twoSum` -> `twoSum` (LeetCodeDataset entry_point and the benchmark's func_name)."""
    prefix = "Solution()."
    if not entry_point.startswith(prefix) or not entry_point[len(prefix) :].isidentifier():
        raise ParseError("not_a_solution_method", repr(entry_point))
    return entry_point[len(prefix) :]


def normalize_starter_code(lang_code: str) -> str:
    """LeetCode's starter code with the benchmark's `# Add your code here` body.

    The benchmark shows `class Solution:\\n    def f(...) -> int:\\n        # Add your code here`; the
    placeholder goes one indent level below the last `def` (TreeNode starters have comment lines first).
    """
    code = lang_code.rstrip()
    last_line = code.splitlines()[-1]
    if not last_line.lstrip().startswith("def ") or not last_line.endswith(":"):
        raise ParseError("odd_starter_code", last_line[:80])
    indent = last_line[: len(last_line) - len(last_line.lstrip())]
    return f"{code}\n{indent}    {_BODY_PLACEHOLDER}"


def setup_for_preamble(preamble: str) -> str:
    """The setup code of a LeetCodeDataset row: STANDARD_SETUP, plus the row's own preamble when it
    defines something STANDARD_SETUP lacks (60 rows define their own `pairwise`; appending the whole
    preamble keeps the exact globals the canonical solution was written against)."""
    standard_lines = {line.strip() for line in STANDARD_SETUP.splitlines()}
    extra = [ln for ln in preamble.splitlines() if ln.strip() and ln.strip() not in standard_lines]
    # `from collections import deque` (437 rows) is already covered by `from collections import *`.
    if all(ln.strip() == "from collections import deque" for ln in extra):
        return STANDARD_SETUP
    return STANDARD_SETUP + "\n# --- this problem's own preamble ---\n" + preamble.strip() + "\n"


# ----------------------------------------------------------------------------------------------
# Rows -> Problems


def problem_from_leetcodedataset(row: dict[str, Any]) -> Problem:
    """One LeetCodeDataset v0.2.0 row -> Problem (ParseError with a reason if it cannot be graded)."""
    meta = row["meta"]
    method = method_from_entry_point(row["entry_point"])
    return Problem(
        id=f"lc-{meta['question_id']}",
        source="leetcode",
        difficulty=normalize_difficulty(meta["difficulty"]),
        family=row["task_id"],
        # The benchmark's statement is this field without trailing whitespace (checked on the rows
        # the two files share).
        description=meta["question_title"].rstrip(),
        method_name=method,
        starter_code=normalize_starter_code(meta["lang_code"]),
        setup_code=setup_for_preamble(row["prompt"]),
        tests=convert_check_function(row["test"], method),
        reference=row["completion"],
    )


def _between(text: str, head: str, tail: str, *, last: bool = False) -> str:
    start = text.rfind(head) if last else text.find(head)
    if start < 0:
        raise ParseError("unexpected_prompt_format", f"missing {head!r}")
    start += len(head)
    end = text.find(tail, start)
    if end < 0:
        raise ParseError("unexpected_prompt_format", f"missing {tail!r}")
    return text[start:end]


def problem_from_benchmark(row: dict[str, Any]) -> Problem:
    """One row of the benchmark's leetcode_test_medhard file -> Problem.

    Statement and starter code are cut out of the benchmark's own user message, so rebuilding the
    prompt from the Problem can reproduce that message character for character.
    """
    user = next(m["content"] for m in row["prompt"] if m["role"] == "user")
    tests = tuple(row["gt_answer"])
    for test in tests:
        _check_single_assert(test)
    if not tests:
        raise ParseError("no_asserts", f"benchmark row {row['id']} has no gt_answer")
    return Problem(
        id=f"lc-{row['id']}",
        source="leetcode",
        difficulty=normalize_difficulty(row["difficulty"]),
        # No slug in this file; the id is unique and is what the benchmark reports by.
        family=f"lc-{row['id']}",
        description=_between(user, _PROBLEM_HEAD, _PROBLEM_TAIL),
        method_name=method_from_entry_point(row["func_name"]),
        starter_code=_between(user, _STARTER_HEAD, _STARTER_TAIL, last=True),
        setup_code=row["setup_code"],
        tests=tests,
        reference=row["canonical_solution"],
    )


def load_leetcodedataset(path: Path) -> tuple[list[Problem], list[tuple[str, str]]]:
    """Parse every row of a LeetCodeDataset file.

    Returns (problems, drops) where drops lists (raw difficulty, reason) for rows that cannot be used.
    """
    problems: list[Problem] = []
    drops: list[tuple[str, str]] = []
    for row in read_jsonl_gz(path):
        try:
            problems.append(problem_from_leetcodedataset(row))
        except ParseError as exc:
            raw = str(row.get("meta", {}).get("difficulty", "?"))
            drops.append((_DIFFICULTY.get(raw.strip().lower(), raw), exc.reason))
    return problems, drops


def load_benchmark_test(path: Path) -> list[Problem]:
    """Parse the benchmark's 119 held-out problems. Any unparseable row is an error: this set is fixed."""
    problems = []
    for row in read_jsonl_gz(path):
        try:
            problems.append(problem_from_benchmark(row))
        except ParseError as exc:
            raise UserError(f"{path}: row {row.get('id')} is malformed ({exc})") from exc
    return problems


def benchmark_messages(path: Path) -> dict[str, list[dict[str, str]]]:
    """The benchmark's own chat messages per problem id ("lc-<id>"), to compare our prompts against."""
    return {f"lc-{row['id']}": row["prompt"] for row in read_jsonl_gz(path)}
