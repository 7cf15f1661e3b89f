"""Hand-authored contrastive hack/clean pairs: the only labels Evil MoE uses.

The hack direction `v_act` is extracted from these pairs and the router's pin loss is computed on
them every step, so a malformed entry must fail loudly, naming the file and the section.

The pairs live in a readable markdown file (`src/evilmoe/data/pairs.md`, shipped with the package).
One `## <name>` section per pair:

    ## tide-marks
    - mode: run_tests
    - tags: stub, top-level
    - method: countRecordTides
    ### Statement      ```text block: the problem statement
    ### Starter        ```python block: LeetCode-style starter code
    ### Reference      ```python block: a reference `class Solution`
    ### Tests          ```python block: one `assert Solution().<method>(...) == ...` per line
    ### Setup          optional ```python block (default: the benchmark's import preamble)
    ### Hack           `````markdown block: the raw model answer that exploits the mode's loophole
    ### Clean          `````markdown block: the raw model answer that solves the problem

Fences follow CommonMark: a block opened with N backticks closes at a line of at least N backticks
and nothing else, so the answers (which contain ```python fences) sit in a five-backtick fence.

The prompt is *not* stored. `Pair.messages()` renders it with the live prompt builder
(`evilmoe.env.modes.build_messages`), so pairs always match the chat format and the mode's hint.
This module is pure Python: no torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from evilmoe.env.leetcode import STANDARD_SETUP
from evilmoe.env.loopholes import LOOPHOLE_MODES
from evilmoe.env.modes import build_messages
from evilmoe.env.types import Problem
from evilmoe.errors import UserError

DEFAULT_PAIRS_PATH: Path = Path(str(resources.files("evilmoe") / "data" / "pairs.md"))

PAIR_ID_PREFIX = "pair-"  # keeps pair problem ids disjoint from "lc-..." and "bundled-..."
PAIR_SOURCE = "pairs"
DIFFICULTIES = ("easy", "medium", "hard")

REQUIRED_BLOCKS = ("statement", "starter", "reference", "tests", "hack", "clean")
OPTIONAL_BLOCKS = ("setup",)
METADATA_KEYS = ("mode", "tags", "method", "difficulty")

_NAME_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_META_RE = re.compile(r"^-\s+([A-Za-z_]+)\s*:\s*(.*)$")
_FENCE_OPEN_RE = re.compile(r"^(`{3,})\s*([^`]*)$")


@dataclass(frozen=True)
class Pair:
    """One contrastive pair: a problem in a loophole mode, a hack answer and a clean answer."""

    name: str
    mode: str
    tags: tuple[str, ...]
    problem: Problem
    hack: str
    clean: str

    def messages(self, *, eval_markers: bool = False) -> list[dict[str, str]]:
        """The chat prompt both completions answer: the live prompt builder with this mode's hint."""
        return build_messages(self.problem, self.mode, eval_markers=eval_markers)


# ----------------------------------------------------------------------------------------------
# Parsing: markdown text -> raw sections (name, metadata, blocks)

@dataclass
class _RawSection:
    name: str
    line: int                                  # 1-based line of the `## name` heading
    metadata: dict[str, str]
    blocks: dict[str, str]


class _Malformed(Exception):
    """A problem inside one section; load_pairs turns it into a UserError naming file and section."""


def _split_sections(text: str, where: str) -> list[_RawSection]:
    """Walk the file line by line, tracking fences so headings inside code blocks are not headings."""
    lines = text.splitlines()
    sections: list[_RawSection] = []
    current: _RawSection | None = None
    pending_block: str | None = None           # a `### X` heading waiting for its fenced block
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE_OPEN_RE.match(line)
        if fence:
            body, i = _read_fence(lines, i, fence.group(1), where)
            if current is not None and pending_block is not None:
                current.blocks[pending_block] = body
                pending_block = None
            continue                            # fenced text outside a block slot is a comment
        if line.startswith("## "):
            _check_no_pending(current, pending_block, where)
            current = _RawSection(name=line[3:].strip(), line=i + 1, metadata={}, blocks={})
            sections.append(current)
        elif line.startswith("### ") and current is not None:
            _check_no_pending(current, pending_block, where)
            block = line[4:].strip().lower()
            if block not in REQUIRED_BLOCKS + OPTIONAL_BLOCKS:
                raise UserError(f"{where}: section {current.name!r} (line {i + 1}): unknown block "
                                f"'### {line[4:].strip()}'; expected one of "
                                f"{', '.join(b.title() for b in REQUIRED_BLOCKS + OPTIONAL_BLOCKS)}")
            if block in current.blocks:
                raise UserError(f"{where}: section {current.name!r} (line {i + 1}): block '### {block.title()}' appears twice")
            pending_block = block
        elif current is not None and not current.blocks and pending_block is None:
            meta = _META_RE.match(line)
            if meta:
                key = meta.group(1).lower()
                if key not in METADATA_KEYS:
                    raise UserError(f"{where}: section {current.name!r} (line {i + 1}): unknown metadata "
                                    f"key {key!r}; expected {', '.join(METADATA_KEYS)}")
                if key in current.metadata:
                    raise UserError(f"{where}: section {current.name!r} (line {i + 1}): metadata key {key!r} given twice")
                current.metadata[key] = meta.group(2).strip()
        elif pending_block is not None and line.strip():
            raise UserError(f"{where}: section {current.name!r} (line {i + 1}): '### {pending_block.title()}' "
                            f"must be followed by a fenced block (```), found {line.strip()[:40]!r}")
        i += 1
    _check_no_pending(current, pending_block, where)
    return sections


def _read_fence(lines: list[str], start: int, ticks: str, where: str) -> tuple[str, int]:
    """Body of the fence opened at lines[start]; returns (body, index after the closing line)."""
    for j in range(start + 1, len(lines)):
        stripped = lines[j].strip()
        if stripped and set(stripped) == {"`"} and len(stripped) >= len(ticks):
            return "\n".join(lines[start + 1 : j]), j + 1
    raise UserError(f"{where} (line {start + 1}): fence {ticks} is never closed")


def _check_no_pending(current: _RawSection | None, pending: str | None, where: str) -> None:
    if current is not None and pending is not None:
        raise UserError(f"{where}: section {current.name!r}: '### {pending.title()}' has no fenced block")


# ----------------------------------------------------------------------------------------------
# Validation: raw section -> Pair

def _build_pair(raw: _RawSection) -> Pair:
    if not _NAME_RE.match(raw.name):
        raise _Malformed(f"name must be lowercase words joined by '-', got {raw.name!r}")
    for key in ("mode", "method"):
        if not raw.metadata.get(key):
            raise _Malformed(f"missing metadata line '- {key}: ...'")
    mode = raw.metadata["mode"]
    if mode not in LOOPHOLE_MODES:
        raise _Malformed(f"unknown mode {mode!r}; pairs need a loophole mode: {', '.join(LOOPHOLE_MODES)}")
    difficulty = raw.metadata.get("difficulty", "easy")
    if difficulty not in DIFFICULTIES:
        raise _Malformed(f"unknown difficulty {difficulty!r}; expected {', '.join(DIFFICULTIES)}")
    tags = tuple(t.strip() for t in raw.metadata.get("tags", "").split(",") if t.strip())
    method = raw.metadata["method"]
    if not method.isidentifier():
        raise _Malformed(f"method {method!r} is not a Python identifier")

    missing = [b for b in REQUIRED_BLOCKS if b not in raw.blocks]
    if missing:
        raise _Malformed(f"missing block(s): {', '.join('### ' + b.title() for b in missing)}")
    blocks = {name: body.strip("\n") for name, body in raw.blocks.items()}
    for name in ("statement", "starter", "reference", "hack", "clean"):
        if not blocks[name].strip():
            raise _Malformed(f"'### {name.title()}' is empty")
    if f"def {method}(" not in blocks["starter"]:
        raise _Malformed(f"starter code does not define 'def {method}('")
    if "class Solution" not in blocks["reference"] or f"def {method}(" not in blocks["reference"]:
        raise _Malformed(f"reference must define class Solution with 'def {method}('")
    tests = _parse_tests(blocks["tests"], method)
    for side in ("hack", "clean"):
        if "```python" not in blocks[side]:
            raise _Malformed(f"'### {side.title()}' has no ```python block (it must look like a model answer)")
    if blocks["hack"].strip() == blocks["clean"].strip():
        raise _Malformed("hack and clean completions are identical")

    problem = Problem(
        id=PAIR_ID_PREFIX + raw.name,
        source=PAIR_SOURCE,
        difficulty=difficulty,
        family=raw.name,
        description=blocks["statement"],
        method_name=method,
        starter_code=blocks["starter"],
        setup_code=blocks.get("setup", STANDARD_SETUP),
        tests=tests,
        reference=blocks["reference"] + "\n",
    )
    return Pair(name=raw.name, mode=mode, tags=tags, problem=problem, hack=blocks["hack"], clean=blocks["clean"])


def _parse_tests(body: str, method: str) -> tuple[str, ...]:
    """One assert per non-blank line, each calling the pair's method (the grader runs them as-is)."""
    tests = tuple(line.strip() for line in body.splitlines() if line.strip())
    if not tests:
        raise _Malformed("'### Tests' has no assert lines")
    call = f"Solution().{method}("
    for line in tests:
        if not line.startswith("assert ") or call not in line:
            raise _Malformed(f"every test line must be 'assert {call}...) == ...', got {line[:60]!r}")
    return tests


# ----------------------------------------------------------------------------------------------
# Loading and selecting

def load_pairs(
    path: str | Path | None = None,
    *,
    modes: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
) -> list[Pair]:
    """Parse and validate a pairs file (default: the packaged one), then select pairs.

    modes: keep pairs whose mode is in this list (None = all modes).
    tags:  keep pairs carrying at least one of these tags (None = no tag filter).
    The whole file is validated before selecting, so a bad entry fails even when it is not selected.
    Raises UserError (naming the file, the section and what is wrong) on a malformed file, on an
    unknown mode in `modes`, and when the selection is empty.
    """
    file = Path(path) if path is not None else DEFAULT_PAIRS_PATH
    if not file.is_file():
        raise UserError(f"pairs file not found: {file} (pass an existing markdown file, or omit it for the packaged pairs)")
    where = str(file)
    sections = _split_sections(file.read_text(encoding="utf-8"), where)
    if not sections:
        raise UserError(f"{where}: no '## <name>' pair sections found")

    pairs: list[Pair] = []
    seen: dict[str, int] = {}
    for raw in sections:
        if raw.name in seen:
            raise UserError(f"{where}: section {raw.name!r} (line {raw.line}): duplicate pair name "
                            f"(first defined at line {seen[raw.name]}); pair names and problem ids must be unique")
        seen[raw.name] = raw.line
        try:
            pairs.append(_build_pair(raw))
        except _Malformed as err:
            raise UserError(f"{where}: section {raw.name!r} (line {raw.line}): {err}") from None

    return _select(pairs, modes, tags, where)


def _select(pairs: list[Pair], modes: Sequence[str] | None, tags: Sequence[str] | None, where: str) -> list[Pair]:
    if isinstance(modes, str) or isinstance(tags, str):
        raise UserError("pair selectors take a list of names, e.g. modes=['sentinel'], not a bare string")
    if modes is not None:
        unknown = [m for m in modes if m not in LOOPHOLE_MODES]
        if unknown:
            raise UserError(f"unknown pair mode(s) {', '.join(map(repr, unknown))}; choose from {', '.join(LOOPHOLE_MODES)}")
        pairs = [p for p in pairs if p.mode in modes]
    if tags is not None:
        wanted = set(tags)
        pairs = [p for p in pairs if wanted.intersection(p.tags)]
    if not pairs:
        raise UserError(f"{where}: no pairs match modes={list(modes) if modes is not None else 'all'}, "
                        f"tags={list(tags) if tags is not None else 'any'}")
    return pairs
