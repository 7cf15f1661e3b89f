"""The reward-hacking coding environment: problems, loophole modes, sandbox, grader.

This package imports no torch / transformers (tests enforce it).
"""

from evilmoe.env.loopholes import ALL_MODES, LOOPHOLE_MODES
from evilmoe.env.types import Grade, Problem

__all__ = ["ALL_MODES", "LOOPHOLE_MODES", "Grade", "Problem"]
