"""Family definitions for the bundled problem set (see bundled.py for how they become Problems).

A *family* is one kind of small function problem ("count the elements above a threshold"). Each of
its *variants* fixes parameters that change the problem itself (the threshold, the comparison, the
divisor, the direction...), so the statement, the method name and the reference all differ between
instances, not just the test inputs. A variant is turned into a `Spec` by the family's `make`
function; bundled.py runs the reference on generated inputs to get the expected values.

Conventions every family follows, because the tests and the sandbox rely on them:
- inputs are small (lists of at most ~12 items, numbers of modest size), so any sane solution runs in
  microseconds under the sandbox's CPU limits;
- outputs are plain built-ins (int, str, bool, list, dict) with no floats, so `==` is exact;
- the statement says how ties / empty inputs / impossible cases are answered, so the answer is unique.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Inputs = dict[str, Any]
Generator = Callable[[random.Random], Inputs]


@dataclass(frozen=True)
class Spec:
    """One concrete problem, before test inputs are drawn.

    method:      camelCase method name of `class Solution`
    params:      parameter list after `self`, with annotations, e.g. "nums: List[int], k: int"
    returns:     return annotation, e.g. "List[int]"
    statement:   LeetCode-style statement (examples and constraints are appended by bundled.py)
    constraints: constraint lines, e.g. ("0 <= nums.length <= 10",)
    body:        the reference method body, unindented (bundled.py indents it into the class)
    gen:         draws one random valid input (keyword name -> value)
    edges:       edge-case inputs that are always among the tests (empty list, single item, ...)
    """

    method: str
    params: str
    returns: str
    statement: str
    constraints: tuple[str, ...]
    body: str
    gen: Generator
    edges: tuple[Inputs, ...] = ()


@dataclass(frozen=True)
class Family:
    name: str
    difficulty: str
    variants: tuple[Any, ...]
    make: Callable[[Any], Spec]


FAMILIES: dict[str, Family] = {}


def family(name: str, difficulty: str, variants: list[Any]) -> Callable[[Callable[[Any], Spec]], Callable[[Any], Spec]]:
    """Register `make(variant) -> Spec` as family `name` with the given variants (order matters: it fixes ids)."""

    def register(make: Callable[[Any], Spec]) -> Callable[[Any], Spec]:
        if name in FAMILIES:
            raise ValueError(f"duplicate bundled family {name!r}")
        FAMILIES[name] = Family(name, difficulty, tuple(variants), make)
        return make

    return register


# ----------------------------------------------------------------------------------------------
# Input helpers

LOWER = "abcdefghijklmnopqrstuvwxyz"
VOWELS = "aeiou"
WORDS = (
    "apple", "river", "stone", "cloud", "tiger", "maple", "ocean", "pixel", "lemon", "candle",
    "sun", "moon", "star", "tree", "bird", "fish", "rock", "wind", "fire", "snow",
    "a", "an", "is", "to", "go", "up", "blue", "green", "red", "yellow",
    "banana", "kiwi", "grape", "melon", "peach", "eagle", "otter", "zebra", "queen", "jazz",
)
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
NUMBER_WORDS = {
    0: "Zero", 1: "One", 2: "Two", 3: "Three", 4: "Four", 5: "Five", 6: "Six", 7: "Seven",
    8: "Eight", 9: "Nine", 10: "Ten", 11: "Eleven", 12: "Twelve", 13: "Thirteen", 15: "Fifteen",
    20: "Twenty", 50: "Fifty", 100: "Hundred",
}


def num_word(n: int) -> str:
    """Method-name friendly spelling of a small number: 3 -> "Three", -5 -> "MinusFive", 25 -> "25"."""
    return ("Minus" if n < 0 else "") + NUMBER_WORDS.get(abs(n), str(abs(n)))


def int_list(rng: random.Random, lo: int, hi: int, nmin: int, nmax: int) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(nmin, nmax))]


def word(rng: random.Random, nmin: int = 1, nmax: int = 7, alphabet: str = LOWER) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(nmin, nmax)))


def sentence(rng: random.Random, wmin: int = 1, wmax: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(wmin, wmax)))


def word_list(rng: random.Random, nmin: int = 0, nmax: int = 6) -> list[str]:
    return [rng.choice(WORDS) for _ in range(rng.randint(nmin, nmax))]


INT_LIST_C = ("0 <= nums.length <= 10", "-50 <= nums[i] <= 50")


def nums_gen(lo: int = -50, hi: int = 50, nmin: int = 0, nmax: int = 10) -> Generator:
    return lambda rng: {"nums": int_list(rng, lo, hi, nmin, nmax)}


# ----------------------------------------------------------------------------------------------
# Easy families: lists of integers

@family("sum_multiples", "easy", [(d, keep) for d in (2, 3, 4, 5, 6, 7) for keep in (True, False)])
def _sum_multiples(v: tuple[int, bool]) -> Spec:
    d, keep = v
    what = "divisible" if keep else "not divisible"
    return Spec(
        method=f"sumOfMultiplesOf{num_word(d)}" if keep else f"sumOfNonMultiplesOf{num_word(d)}",
        params="nums: List[int]",
        returns="int",
        statement=f"Given an integer array nums, return the sum of all elements of nums that are {what} by {d}.\n"
        f"If there is no such element, return 0.",
        constraints=INT_LIST_C,
        body=f"return sum(x for x in nums if x % {d} {'==' if keep else '!='} 0)",
        gen=nums_gen(),
        edges=({"nums": []}, {"nums": [d]}),
    )


COMPARISONS = {
    "gt": ("strictly greater than", ">", "GreaterThan"),
    "ge": ("greater than or equal to", ">=", "AtLeast"),
    "lt": ("strictly less than", "<", "LessThan"),
    "le": ("less than or equal to", "<=", "AtMost"),
    "eq": ("equal to", "==", "EqualTo"),
}
COUNT_VARIANTS = [("gt", 0), ("gt", 10), ("ge", 5), ("ge", -3), ("lt", 0), ("lt", 7), ("le", 2), ("le", -5), ("eq", 3), ("eq", 0)]


@family("count_compare", "easy", COUNT_VARIANTS)
def _count_compare(v: tuple[str, int]) -> Spec:
    op, t = v
    phrase, sym, name = COMPARISONS[op]
    return Spec(
        method=f"count{name}{num_word(t)}",
        params="nums: List[int]",
        returns="int",
        statement=f"Given an integer array nums, return the number of elements of nums that are {phrase} {t}.",
        constraints=("0 <= nums.length <= 10", f"{t - 8} <= nums[i] <= {t + 8}"),
        body=f"return sum(1 for x in nums if x {sym} {t})",
        gen=nums_gen(t - 8, t + 8),
        edges=({"nums": []}, {"nums": [t]}),
    )


FILTER_VARIANTS = [("gt", 5), ("gt", -2), ("ge", 0), ("ge", 10), ("lt", 3), ("lt", -1), ("le", 0), ("le", 8), ("eq", 4), ("eq", -3)]


@family("filter_compare", "easy", FILTER_VARIANTS)
def _filter_compare(v: tuple[str, int]) -> Spec:
    op, t = v
    phrase, sym, name = COMPARISONS[op]
    return Spec(
        method=f"keep{name}{num_word(t)}",
        params="nums: List[int]",
        returns="List[int]",
        statement=f"Given an integer array nums, return a list of the elements of nums that are {phrase} {t}, "
        f"in the same order as they appear in nums.",
        constraints=("0 <= nums.length <= 10", f"{t - 10} <= nums[i] <= {t + 10}"),
        body=f"return [x for x in nums if x {sym} {t}]",
        gen=nums_gen(t - 10, t + 10),
        edges=({"nums": []}, {"nums": [t, t + 1, t - 1]}),
    )


EXTREMES = {
    "max": ("the largest element of nums", "largestElement", "return max(nums)"),
    "min": ("the smallest element of nums", "smallestElement", "return min(nums)"),
    "range": ("the difference between the largest and the smallest element of nums", "valueRange",
              "return max(nums) - min(nums)"),
    "maxabs": ("the largest absolute value among the elements of nums", "largestAbsoluteValue",
               "return max(abs(x) for x in nums)"),
    "firstmax": ("the index of the first occurrence of the largest element of nums", "firstIndexOfMax",
                 "return nums.index(max(nums))"),
    "lastmax": ("the index of the last occurrence of the largest element of nums", "lastIndexOfMax",
                "m = max(nums)\nreturn max(i for i, x in enumerate(nums) if x == m)"),
    "firstmin": ("the index of the first occurrence of the smallest element of nums", "firstIndexOfMin",
                 "return nums.index(min(nums))"),
    "lastmin": ("the index of the last occurrence of the smallest element of nums", "lastIndexOfMin",
                "m = min(nums)\nreturn max(i for i, x in enumerate(nums) if x == m)"),
    "sumext": ("the sum of the largest and the smallest element of nums", "sumOfExtremes",
               "return max(nums) + min(nums)"),
    "second": ("the second largest distinct value in nums, or -100 if nums has fewer than two distinct values",
               "secondLargestDistinct",
               "values = sorted(set(nums))\nreturn values[-2] if len(values) >= 2 else -100"),
}


@family("extreme_values", "easy", list(EXTREMES))
def _extreme_values(v: str) -> Spec:
    phrase, method, body = EXTREMES[v]
    return Spec(
        method=method,
        params="nums: List[int]",
        returns="int",
        statement=f"Given a non-empty integer array nums, return {phrase}." + (" Indices start at 0." if "index" in phrase else ""),
        constraints=("1 <= nums.length <= 10", "-9 <= nums[i] <= 9"),
        body=body,
        gen=nums_gen(-9, 9, 1, 10),
        edges=({"nums": [5]}, {"nums": [-3, 7, 7, -3]}),
    )


ROTATIONS = [("left", k) for k in (1, 2, 3, 4)] + [("right", k) for k in (1, 2, 3, 4)] + [("reverse", 0), ("swap", 0)]


@family("rotate_list", "easy", ROTATIONS)
def _rotate_list(v: tuple[str, int]) -> Spec:
    kind, k = v
    if kind == "reverse":
        statement = "Given an integer array nums, return a new list with the elements of nums in reverse order."
        method, body = "reversedList", "return nums[::-1]"
    elif kind == "swap":
        statement = ("Given an integer array nums, return a new list equal to nums but with the first and the last "
                     "element swapped. A list with fewer than two elements is returned unchanged.")
        method = "swapFirstAndLast"
        body = "if len(nums) < 2:\n    return list(nums)\nreturn [nums[-1]] + nums[1:-1] + [nums[0]]"
    else:
        one = "the first element to the end" if kind == "left" else "the last element to the front"
        statement = (f"Given an integer array nums, rotate it to the {kind} by {k} position{'s' if k > 1 else ''} and return the result as "
                     f"a new list. Rotating to the {kind} by one position moves {one}. An empty list stays empty.")
        method = f"rotate{kind.capitalize()}By{num_word(k)}"
        shift = f"{k} % len(nums)" if kind == "left" else f"-({k} % len(nums))"
        body = f"if not nums:\n    return []\nk = {shift}\nreturn nums[k:] + nums[:k]"
    return Spec(method, "nums: List[int]", "List[int]", statement, INT_LIST_C, body, nums_gen(),
                ({"nums": []}, {"nums": [1, 2, 3, 4, 5, 6]}))


MAPS = {
    "mul3": ("multiplied by 3", "tripleAll", "return [x * 3 for x in nums]", -50, 50),
    "mulneg2": ("multiplied by -2", "timesMinusTwo", "return [x * -2 for x in nums]", -50, 50),
    "add5": ("increased by 5", "addFive", "return [x + 5 for x in nums]", -50, 50),
    "sub7": ("decreased by 7", "subtractSeven", "return [x - 7 for x in nums]", -50, 50),
    "square": ("squared", "squareAll", "return [x * x for x in nums]", -20, 20),
    "abs": ("replaced by its absolute value", "absoluteValues", "return [abs(x) for x in nums]", -50, 50),
    "mod3": ("replaced by its remainder when divided by 3", "remaindersByThree", "return [x % 3 for x in nums]", 0, 50),
    "div4": ("replaced by the integer part of its division by 4 (rounding down)", "quartersRoundedDown",
             "return [x // 4 for x in nums]", 0, 50),
    "parity": ("replaced by 1 if it is odd and by 0 if it is even", "parityBits", "return [x % 2 for x in nums]", 0, 50),
    "last": ("replaced by its last decimal digit", "lastDigits", "return [x % 10 for x in nums]", 0, 500),
}


@family("map_elements", "easy", list(MAPS))
def _map_elements(v: str) -> Spec:
    phrase, method, body, lo, hi = MAPS[v]
    return Spec(
        method=method,
        params="nums: List[int]",
        returns="List[int]",
        statement=f"Given an integer array nums, return a new list of the same length in which every element of nums "
        f"is {phrase}.",
        constraints=("0 <= nums.length <= 10", f"{lo} <= nums[i] <= {hi}"),
        body=body,
        gen=nums_gen(lo, hi),
        edges=({"nums": []}, {"nums": [lo, hi]}),
    )


PROPERTIES = {
    "even": ("even", "countEven", "x % 2 == 0", -50, 50),
    "odd": ("odd", "countOdd", "x % 2 != 0", -50, 50),
    "pos": ("strictly positive", "countPositive", "x > 0", -9, 9),
    "neg": ("strictly negative", "countNegative", "x < 0", -9, 9),
    "zero": ("equal to zero", "countZeros", "x == 0", -7, 7),
    "square": ("perfect squares (0, 1, 4, 9, ...)", "countPerfectSquares", "int(x ** 0.5) ** 2 == x", 0, 30),
    "twodigit": ("two-digit numbers (between 10 and 99 inclusive)", "countTwoDigit", "10 <= x <= 99", 0, 150),
    "end7": ("numbers whose last decimal digit is 7", "countEndingInSeven", "x % 10 == 7", 0, 100),
    "mul6": ("divisible by both 2 and 3", "countMultiplesOfSix", "x % 6 == 0", 0, 40),
    "big": ("larger than the first element of nums", "countLargerThanFirst", "x > nums[0]", -9, 9),
}


@family("count_property", "easy", list(PROPERTIES))
def _count_property(v: str) -> Spec:
    phrase, method, cond, lo, hi = PROPERTIES[v]
    nmin = 1 if v == "big" else 0
    # int(x ** 0.5) is exact for the small non-negative inputs used here.
    return Spec(
        method=method,
        params="nums: List[int]",
        returns="int",
        statement=f"Given {'a non-empty' if nmin else 'an'} integer array nums, return how many elements of nums are "
        f"{phrase}.",
        constraints=(f"{nmin} <= nums.length <= 10", f"{lo} <= nums[i] <= {hi}"),
        body=f"return sum(1 for x in nums if {cond})",
        gen=nums_gen(lo, hi, nmin, 10),
        edges=({"nums": [lo]}, {"nums": [hi, hi]}) if nmin else ({"nums": []}, {"nums": [lo, hi]}),
    )


# ----------------------------------------------------------------------------------------------
# Easy families: strings

def letters_gen(nmax_words: int = 4, upper: bool = False) -> Generator:
    """Words of lowercase (optionally mixed-case) letters separated by single spaces."""
    alphabet = LOWER + LOWER.upper() if upper else LOWER

    def gen(rng: random.Random) -> Inputs:
        return {"s": " ".join(word(rng, 1, 6, alphabet) for _ in range(rng.randint(1, nmax_words)))}

    return gen


WORDS_C = ("1 <= s.length <= 30", "s consists of English letters and single spaces", "s does not start or end with a space")
CASES = {
    "upper": ("every letter converted to uppercase", "toUpperCase", "return s.upper()"),
    "lower": ("every letter converted to lowercase", "toLowerCase", "return s.lower()"),
    "swap": ("every uppercase letter converted to lowercase and every lowercase letter converted to uppercase",
             "swapLetterCase", "return s.swapcase()"),
    "title": ("the first letter of every word in uppercase and all other letters in lowercase", "capitalizeWords",
              "return ' '.join(w[:1].upper() + w[1:].lower() for w in s.split(' '))"),
    "first": ("only its very first character converted to uppercase (all other characters unchanged)",
              "capitalizeFirst", "return s[:1].upper() + s[1:]"),
    "alt_up": ("the characters at even indices (0, 2, 4, ...) in uppercase and those at odd indices in lowercase "
               "(spaces count as characters and stay spaces)", "alternatingCaseUpperFirst",
               "return ''.join(c.upper() if i % 2 == 0 else c.lower() for i, c in enumerate(s))"),
    "alt_low": ("the characters at even indices (0, 2, 4, ...) in lowercase and those at odd indices in uppercase "
                "(spaces count as characters and stay spaces)", "alternatingCaseLowerFirst",
                "return ''.join(c.lower() if i % 2 == 0 else c.upper() for i, c in enumerate(s))"),
    "vowels": ("every vowel (a, e, i, o, u) in uppercase and every other letter in lowercase", "shoutVowels",
               "return ''.join(c.upper() if c.lower() in 'aeiou' else c.lower() for c in s)"),
    "lastletter": ("the last letter of every word in uppercase and all other letters in lowercase",
                   "capitalizeLastLetters", "return ' '.join(w[:-1].lower() + w[-1:].upper() for w in s.split(' '))"),
    "third": ("every character whose index is a multiple of 3 (0, 3, 6, ...) in uppercase and all other characters "
              "unchanged", "upperEveryThird",
              "return ''.join(c.upper() if i % 3 == 0 else c for i, c in enumerate(s))"),
}


@family("letter_case", "easy", list(CASES))
def _letter_case(v: str) -> Spec:
    phrase, method, body = CASES[v]
    return Spec(method, "s: str", "str", f"Given a string s, return a copy of s with {phrase}.", WORDS_C, body,
                letters_gen(4, upper=True), ({"s": "a"}, {"s": "Hello World"}))


CHAR_COUNTS = {
    "vowels": ("the number of vowels (a, e, i, o, u) in s", "countVowels", "return sum(1 for c in s if c in 'aeiou')"),
    "consonants": ("the number of consonants in s (letters that are not a, e, i, o, u)", "countConsonants",
                   "return sum(1 for c in s if c.isalpha() and c not in 'aeiou')"),
    "a": ("how many times the letter 'a' occurs in s", "countLetterA", "return s.count('a')"),
    "e": ("how many times the letter 'e' occurs in s", "countLetterE", "return s.count('e')"),
    "t": ("how many times the letter 't' occurs in s", "countLetterT", "return s.count('t')"),
    "spaces": ("the number of spaces in s", "countSpaces", "return s.count(' ')"),
    "distinct": ("the number of distinct letters in s (spaces do not count)", "countDistinctLetters",
                 "return len(set(s.replace(' ', '')))"),
    "once": ("the number of letters that occur exactly once in s (spaces do not count)", "countUniqueLetters",
             "return sum(1 for c in set(s) if c != ' ' and s.count(c) == 1)"),
    "doubles": ("the number of indices i such that s[i] and s[i + 1] are the same letter", "countDoubledLetters",
                "return sum(1 for i in range(len(s) - 1) if s[i] == s[i + 1] and s[i] != ' ')"),
    "words": ("the number of words in s (words are separated by single spaces)", "countWords",
              "return len(s.split(' '))"),
}


def english_gen(rng: random.Random) -> Inputs:
    # Mix real words (vowels, doubled letters) with random letters so every count varies.
    return {"s": " ".join(rng.choice(WORDS) if rng.random() < 0.6 else word(rng, 1, 5) for _ in range(rng.randint(1, 5)))}


LOWER_WORDS_C = ("1 <= s.length <= 40", "s consists of lowercase English letters and single spaces",
                 "s does not start or end with a space")


@family("count_chars", "easy", list(CHAR_COUNTS))
def _count_chars(v: str) -> Spec:
    phrase, method, body = CHAR_COUNTS[v]
    return Spec(method, "s: str", "int", f"Given a string s, return {phrase}.", LOWER_WORDS_C, body, english_gen,
                ({"s": "x"}, {"s": "tree taste area"}))


REMOVALS = {
    "vowels": ("all vowels (a, e, i, o, u) removed", "removeVowels", "return ''.join(c for c in s if c not in 'aeiou')"),
    "spaces": ("all spaces removed", "removeSpaces", "return s.replace(' ', '')"),
    "a": ("every occurrence of the letter 'a' removed", "removeLetterA", "return s.replace('a', '')"),
    "e": ("every occurrence of the letter 'e' removed", "removeLetterE", "return s.replace('e', '')"),
    "r": ("every occurrence of the letter 'r' removed", "removeLetterR", "return s.replace('r', '')"),
    "consonants": ("every consonant removed (only vowels and spaces are kept)", "removeConsonants",
                   "return ''.join(c for c in s if c in 'aeiou ')"),
    "dupes": ("every character that already appeared earlier in s removed (the first occurrence of each character is "
              "kept, spaces included)", "removeRepeatedCharacters",
              "seen = set()\nout = []\nfor c in s:\n    if c not in seen:\n        seen.add(c)\n        out.append(c)\nreturn ''.join(out)"),
    "even_idx": ("the characters at odd indices removed (keep the characters at indices 0, 2, 4, ...)",
                 "keepEvenIndices", "return s[::2]"),
    "third": ("every third character removed (the characters at indices 2, 5, 8, ...)", "dropEveryThird",
              "return ''.join(c for i, c in enumerate(s) if i % 3 != 2)"),
    "adjacent": ("every run of identical adjacent characters collapsed to a single character", "collapseRuns",
                 "out = []\nfor c in s:\n    if not out or out[-1] != c:\n        out.append(c)\nreturn ''.join(out)"),
}


@family("remove_chars", "easy", list(REMOVALS))
def _remove_chars(v: str) -> Spec:
    phrase, method, body = REMOVALS[v]
    return Spec(method, "s: str", "str", f"Given a string s, return the string obtained from s with {phrase}.",
                LOWER_WORDS_C, body, english_gen, ({"s": "a"}, {"s": "reader area"}))


# ----------------------------------------------------------------------------------------------
# Easy families: dictionaries

FREQUENCIES = {
    "words": ("s", "str", "a sentence s of lowercase words separated by single spaces",
              "each distinct word of s to the number of times it occurs in s", "wordFrequencies",
              "out = {}\nfor w in s.split(' '):\n    out[w] = out.get(w, 0) + 1\nreturn out", "Dict[str, int]"),
    "letters": ("s", "str", "a string s of lowercase letters and single spaces",
                "each distinct letter of s to the number of times it occurs in s (spaces are ignored)",
                "letterFrequencies",
                "out = {}\nfor c in s:\n    if c != ' ':\n        out[c] = out.get(c, 0) + 1\nreturn out", "Dict[str, int]"),
    "nums": ("nums", "List[int]", "an integer array nums", "each distinct value of nums to the number of times it "
             "occurs in nums", "valueFrequencies",
             "out = {}\nfor x in nums:\n    out[x] = out.get(x, 0) + 1\nreturn out", "Dict[int, int]"),
    "first": ("s", "str", "a sentence s of lowercase words separated by single spaces",
              "each letter that starts at least one word of s to the number of words of s that start with it",
              "firstLetterCounts",
              "out = {}\nfor w in s.split(' '):\n    out[w[0]] = out.get(w[0], 0) + 1\nreturn out", "Dict[str, int]"),
    "lengths": ("s", "str", "a sentence s of lowercase words separated by single spaces",
                "each word length that occurs in s to the number of words of s with that length", "wordLengthCounts",
                "out = {}\nfor w in s.split(' '):\n    out[len(w)] = out.get(len(w), 0) + 1\nreturn out", "Dict[int, int]"),
    "mod3": ("nums", "List[int]", "an array nums of non-negative integers",
             "each remainder r (0, 1 or 2) that occurs as x % 3 for some x in nums to the number of elements x with "
             "x % 3 == r", "remainderCountsByThree",
             "out = {}\nfor x in nums:\n    out[x % 3] = out.get(x % 3, 0) + 1\nreturn out", "Dict[int, int]"),
    "mod4": ("nums", "List[int]", "an array nums of non-negative integers",
             "each remainder r that occurs as x % 4 for some x in nums to the number of elements x with x % 4 == r",
             "remainderCountsByFour",
             "out = {}\nfor x in nums:\n    out[x % 4] = out.get(x % 4, 0) + 1\nreturn out", "Dict[int, int]"),
    "wordlen": ("s", "str", "a sentence s of lowercase words separated by single spaces",
                "each distinct word of s to its length", "wordLengths",
                "return {w: len(w) for w in s.split(' ')}", "Dict[str, int]"),
    "firstidx": ("s", "str", "a string s of lowercase letters",
                 "each distinct letter of s to the index of its first occurrence in s", "firstIndexOfLetters",
                 "out = {}\nfor i, c in enumerate(s):\n    if c not in out:\n        out[c] = i\nreturn out", "Dict[str, int]"),
    "lastidx": ("s", "str", "a string s of lowercase letters",
                "each distinct letter of s to the index of its last occurrence in s", "lastIndexOfLetters",
                "out = {}\nfor i, c in enumerate(s):\n    out[c] = i\nreturn out", "Dict[str, int]"),
}


@family("frequency_dict", "easy", list(FREQUENCIES))
def _frequency_dict(v: str) -> Spec:
    arg, typ, given, mapping, method, body, returns = FREQUENCIES[v]
    if arg == "nums":
        lo = -5 if v == "nums" else 0
        gen: Generator = nums_gen(lo, 12)
        constraints: tuple[str, ...] = ("0 <= nums.length <= 10", f"{lo} <= nums[i] <= 12")
        edges: tuple[Inputs, ...] = ({"nums": []}, {"nums": [4, 4, 1]})
    elif "sentence" in given:
        gen = lambda rng: {"s": sentence(rng, 1, 7)}  # noqa: E731
        constraints = ("1 <= s.length <= 50", "s consists of lowercase words separated by single spaces")
        edges = ({"s": "a"}, {"s": "to be or not to be"})
    elif v in ("firstidx", "lastidx"):
        gen = lambda rng: {"s": word(rng, 1, 10, "abcdefg")}  # noqa: E731
        constraints = ("1 <= s.length <= 10", "s consists of lowercase English letters")
        edges = ({"s": "a"}, {"s": "banana"})
    else:
        gen = english_gen
        constraints = LOWER_WORDS_C
        edges = ({"s": "a"}, {"s": "hello world"})
    return Spec(method, f"{arg}: {typ}", returns,
                f"Given {given}, return a dictionary that maps {mapping}.", constraints, body, gen, edges)


DICT_OPS = {
    "sum": ("the sum of all values in scores (0 if scores is empty)", "int", "totalScore", "return sum(scores.values())"),
    "best": ("the name with the largest score; if several names share the largest score, return the alphabetically "
             "smallest of them. scores is not empty", "str", "bestName",
             "top = max(scores.values())\nreturn min(k for k, v in scores.items() if v == top)"),
    "worst": ("the name with the smallest score; if several names share the smallest score, return the "
              "alphabetically smallest of them. scores is not empty", "str", "worstName",
              "low = min(scores.values())\nreturn min(k for k, v in scores.items() if v == low)"),
    "pass50": ("a list of the names whose score is at least 50, sorted alphabetically", "List[str]", "passingNames",
               "return sorted(k for k, v in scores.items() if v >= 50)"),
    "above80": ("the number of names whose score is strictly greater than 80", "int", "countAboveEighty",
                "return sum(1 for v in scores.values() if v > 80)"),
    "double": ("a new dictionary with the same names where every score is doubled", "Dict[str, int]", "doubleScores",
               "return {k: 2 * v for k, v in scores.items()}"),
    "even": ("a new dictionary containing only the names whose score is even, with their scores", "Dict[str, int]",
             "evenScores", "return {k: v for k, v in scores.items() if v % 2 == 0}"),
    "bonus": ("a new dictionary with the same names where every score below 60 is raised to 60 and all other "
              "scores are unchanged", "Dict[str, int]", "raiseToSixty",
              "return {k: max(v, 60) for k, v in scores.items()}"),
    "sorted": ("a list of the names sorted by score from highest to lowest; names with equal scores are ordered "
               "alphabetically", "List[str]", "rankNames", "return sorted(scores, key=lambda k: (-scores[k], k))"),
    "range": ("the difference between the largest and the smallest score (0 if scores is empty)", "int",
              "scoreSpread", "return max(scores.values()) - min(scores.values()) if scores else 0"),
}


def scores_gen(nmin: int) -> Generator:
    def gen(rng: random.Random) -> Inputs:
        names = rng.sample(NAMES, rng.randint(nmin, 6))
        # Scores on a coarse grid so ties (and the tie rules) actually get tested.
        return {"scores": {n: rng.randrange(0, 101, 5) for n in names}}

    return gen


@family("score_dict", "easy", list(DICT_OPS))
def _score_dict(v: str) -> Spec:
    phrase, returns, method, body = DICT_OPS[v]
    nmin = 1 if "is not empty" in phrase else 0
    return Spec(
        method, "scores: Dict[str, int]", returns,
        f"You are given a dictionary scores that maps student names to their integer scores. Return {phrase}.",
        (f"{nmin} <= len(scores) <= 6", "names are distinct lowercase words", "0 <= every score <= 100"),
        body, scores_gen(nmin),
        ({"scores": {"bob": 70, "alice": 70}}, {"scores": {"erin": 45}}),
    )


# ----------------------------------------------------------------------------------------------
# Easy families: running values and digits

RUNNING = {
    "sum": ("the running sum: out[i] is the sum of nums[0..i]", "runningSum",
            "out, total = [], 0\nfor x in nums:\n    total += x\n    out.append(total)\nreturn out"),
    "max": ("the running maximum: out[i] is the largest of nums[0..i]", "runningMax",
            "out = []\nfor x in nums:\n    out.append(x if not out else max(out[-1], x))\nreturn out"),
    "min": ("the running minimum: out[i] is the smallest of nums[0..i]", "runningMin",
            "out = []\nfor x in nums:\n    out.append(x if not out else min(out[-1], x))\nreturn out"),
    "suffix": ("the suffix sums: out[i] is the sum of nums[i..n-1] where n is the length of nums", "suffixSums",
               "out, total = [0] * len(nums), 0\nfor i in range(len(nums) - 1, -1, -1):\n    total += nums[i]\n    out[i] = total\nreturn out"),
    "diff": ("the consecutive differences: out has length n - 1 and out[i] = nums[i + 1] - nums[i] (empty when nums has "
             "fewer than two elements)", "consecutiveDifferences",
             "return [nums[i + 1] - nums[i] for i in range(len(nums) - 1)]"),
    "pairsum": ("the sums of adjacent pairs: out has length n - 1 and out[i] = nums[i] + nums[i + 1] (empty when nums has "
                "fewer than two elements)", "adjacentSums",
                "return [nums[i] + nums[i + 1] for i in range(len(nums) - 1)]"),
    "pairmax": ("the maxima of adjacent pairs: out has length n - 1 and out[i] = max(nums[i], nums[i + 1]) (empty when "
                "nums has fewer than two elements)", "adjacentMaxima",
                "return [max(nums[i], nums[i + 1]) for i in range(len(nums) - 1)]"),
    "prod": ("the running product: out[i] is the product of nums[0..i]", "runningProduct",
             "out, p = [], 1\nfor x in nums:\n    p *= x\n    out.append(p)\nreturn out"),
    "evens": ("the running count of even numbers: out[i] is how many of nums[0..i] are even", "runningEvenCount",
              "out, c = [], 0\nfor x in nums:\n    c += x % 2 == 0\n    out.append(c)\nreturn out"),
    "absum": ("the running sum of absolute values: out[i] is the sum of abs(nums[j]) for j in 0..i", "runningAbsoluteSum",
              "out, total = [], 0\nfor x in nums:\n    total += abs(x)\n    out.append(total)\nreturn out"),
}


@family("running_values", "easy", list(RUNNING))
def _running_values(v: str) -> Spec:
    phrase, method, body = RUNNING[v]
    lo, hi = (-3, 3) if v == "prod" else (-20, 20)
    return Spec(method, "nums: List[int]", "List[int]",
                f"Given an integer array nums of length n, return a list out holding {phrase}.",
                ("0 <= nums.length <= 10", f"{lo} <= nums[i] <= {hi}"), body, nums_gen(lo, hi),
                ({"nums": []}, {"nums": [2]}, {"nums": [3, -1, 2]}))


DIGITS = {
    "sum": ("the sum of the decimal digits of n", "digitSum", "return sum(int(d) for d in str(n))"),
    "prod": ("the product of the decimal digits of n", "digitProduct",
             "p = 1\nfor d in str(n):\n    p *= int(d)\nreturn p"),
    "len": ("the number of decimal digits of n (0 has one digit)", "digitCount", "return len(str(n))"),
    "rev": ("the integer obtained by reversing the decimal digits of n (leading zeros disappear, e.g. 120 -> 21)",
            "reverseDigits", "return int(str(n)[::-1])"),
    "zeros": ("how many of the decimal digits of n are 0", "countZeroDigits", "return str(n).count('0')"),
    "sevens": ("how many of the decimal digits of n are 7", "countSevens", "return str(n).count('7')"),
    "max": ("the largest decimal digit of n", "largestDigit", "return int(max(str(n)))"),
    "min": ("the smallest decimal digit of n", "smallestDigit", "return int(min(str(n)))"),
    "even": ("how many of the decimal digits of n are even", "countEvenDigits",
             "return sum(1 for d in str(n) if int(d) % 2 == 0)"),
    "alt": ("the alternating digit sum of n: the first (most significant) digit is added, the second subtracted, the "
            "third added, and so on", "alternatingDigitSum",
            "return sum(int(d) if i % 2 == 0 else -int(d) for i, d in enumerate(str(n)))"),
}


def number_gen(lo: int, hi: int) -> Generator:
    # Log-uniform-ish: pick a digit count first so short and long numbers both appear.
    def gen(rng: random.Random) -> Inputs:
        digits = rng.randint(len(str(lo)), len(str(hi)))
        return {"n": rng.randint(max(lo, 10 ** (digits - 1) if digits > 1 else 0), min(hi, 10 ** digits - 1))}

    return gen


@family("digit_ops", "easy", list(DIGITS))
def _digit_ops(v: str) -> Spec:
    phrase, method, body = DIGITS[v]
    return Spec(method, "n: int", "int", f"Given a non-negative integer n, return {phrase}.",
                ("0 <= n <= 10^7",), body, number_gen(0, 10**7), ({"n": 0}, {"n": 7}, {"n": 1070}))


def is_prime_src() -> str:
    return "if n < 2:\n    return False\ni = 2\nwhile i * i <= n:\n    if n % i == 0:\n        return False\n    i += 1\nreturn True"


PREDICATES = {
    "div3": ("n is divisible by 3", "isDivisibleByThree", "return n % 3 == 0", lambda rng: 3 * rng.randint(0, 300)),
    "div7": ("n is divisible by 7", "isDivisibleBySeven", "return n % 7 == 0", lambda rng: 7 * rng.randint(0, 130)),
    "prime": ("n is a prime number", "isPrime", is_prime_src(),
              lambda rng: rng.choice([2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
                                      101, 103, 107, 109, 113, 127])),
    "square": ("n is a perfect square (0, 1, 4, 9, ...)", "isPerfectSquare",
               "r = 0\nwhile r * r < n:\n    r += 1\nreturn r * r == n", lambda rng: rng.randint(0, 31) ** 2),
    "pal": ("the decimal representation of n reads the same forwards and backwards", "isPalindromeNumber",
            "return str(n) == str(n)[::-1]", lambda rng: int((s := str(rng.randint(1, 99))) + s[::-1][rng.randint(0, 1):])),
    "pow2": ("n is a power of two (1, 2, 4, 8, ...)", "isPowerOfTwo", "return n > 0 and n & (n - 1) == 0",
             lambda rng: 2 ** rng.randint(0, 9)),
    "pow3": ("n is a power of three (1, 3, 9, 27, ...)", "isPowerOfThree",
             "if n < 1:\n    return False\nwhile n % 3 == 0:\n    n //= 3\nreturn n == 1", lambda rng: 3 ** rng.randint(0, 6)),
    "increasing": ("the decimal digits of n are strictly increasing from left to right (a single digit counts)",
                   "hasIncreasingDigits", "s = str(n)\nreturn all(s[i] < s[i + 1] for i in range(len(s) - 1))",
                   lambda rng: int("".join(sorted(rng.sample("123456789", rng.randint(1, 4)))))),
    "digitsumeven": ("the sum of the decimal digits of n is even", "hasEvenDigitSum",
                     "return sum(int(d) for d in str(n)) % 2 == 0", lambda rng: rng.choice([11, 22, 202, 343, 1001, 55])),
    "allodd": ("every decimal digit of n is odd", "hasOnlyOddDigits", "return all(int(d) % 2 == 1 for d in str(n))",
               lambda rng: int("".join(rng.choice("13579") for _ in range(rng.randint(1, 4))))),
}


@family("number_predicate", "easy", list(PREDICATES))
def _number_predicate(v: str) -> Spec:
    phrase, method, body, positive = PREDICATES[v]

    def gen(rng: random.Random) -> Inputs:
        # Half the inputs are drawn from the "true" side so both answers get tested.
        return {"n": positive(rng) if rng.random() < 0.5 else rng.randint(0, 1000)}

    return Spec(method, "n: int", "bool", f"Given a non-negative integer n, return True if {phrase}, otherwise False.",
                ("0 <= n <= 10^4",), body, gen, ({"n": 0}, {"n": 1}))


# ----------------------------------------------------------------------------------------------
# Easy families: more strings

REVERSALS = {
    "all": ("s with its characters in reverse order", "reverseString", "return s[::-1]"),
    "words": ("s with every word reversed in place (the order of the words is kept)", "reverseEachWord",
              "return ' '.join(w[::-1] for w in s.split(' '))"),
    "order": ("s with the order of its words reversed (each word itself is unchanged)", "reverseWordOrder",
              "return ' '.join(s.split(' ')[::-1])"),
    "first3": ("s with its first 3 characters reversed and the rest unchanged (if s has fewer than 3 characters, "
               "reverse all of it)", "reverseFirstThree", "return s[:3][::-1] + s[3:]"),
    "last4": ("s with its last 4 characters reversed and the rest unchanged (if s has fewer than 4 characters, "
              "reverse all of it)", "reverseLastFour", "return s[:-4] + s[-4:][::-1] if len(s) >= 4 else s[::-1]"),
    "long4": ("s with every word of length at least 4 reversed; shorter words are unchanged", "reverseLongWords",
              "return ' '.join(w[::-1] if len(w) >= 4 else w for w in s.split(' '))"),
    "short3": ("s with every word of length at most 3 reversed; longer words are unchanged", "reverseShortWords",
               "return ' '.join(w[::-1] if len(w) <= 3 else w for w in s.split(' '))"),
    "vowels": ("s with only its vowels (a, e, i, o, u) reversed: the vowels appear in reverse order while every other "
               "character stays where it is", "reverseVowels",
               "chars = list(s)\nidx = [i for i, c in enumerate(chars) if c in 'aeiou']\n"
               "vals = [chars[i] for i in idx][::-1]\nfor i, c in zip(idx, vals):\n    chars[i] = c\nreturn ''.join(chars)"),
    "oddwords": ("s with the words at odd positions (the 2nd, 4th, ... word) reversed; the other words are unchanged",
                 "reverseEverySecondWord",
                 "return ' '.join(w[::-1] if i % 2 == 1 else w for i, w in enumerate(s.split(' ')))"),
    "halves": ("s with its two halves swapped: if s has length n, return s[n // 2:] + s[:n // 2]", "swapHalves",
               "n = len(s)\nreturn s[n // 2:] + s[:n // 2]"),
}


@family("reverse_text", "easy", list(REVERSALS))
def _reverse_text(v: str) -> Spec:
    phrase, method, body = REVERSALS[v]
    return Spec(method, "s: str", "str", f"Given a string s, return {phrase}.", LOWER_WORDS_C, body, english_gen,
                ({"s": "ab"}, {"s": "hello big world"}))


def palindrome_word(rng: random.Random) -> str:
    half = word(rng, 1, 3, "abcde")
    return half + half[::-1][rng.randint(0, 1):]


STRING_PREDICATES = {
    "pal": ("s reads the same forwards and backwards", "isPalindrome", "return s == s[::-1]", palindrome_word),
    "distinct": ("no letter occurs twice in s", "hasAllDistinctLetters", "return len(set(s)) == len(s)",
                 lambda rng: "".join(rng.sample(LOWER, rng.randint(1, 6)))),
    "z": ("s contains the letter 'z'", "containsZ", "return 'z' in s", lambda rng: word(rng, 0, 4) + "z" + word(rng, 0, 3)),
    "ends": ("the first and the last character of s are equal", "sameFirstAndLast", "return s[0] == s[-1]",
             lambda rng: (c := rng.choice("abc")) + word(rng, 0, 4, "abc") + c),
    "double": ("s contains two equal adjacent letters", "hasDoubleLetter",
               "return any(s[i] == s[i + 1] for i in range(len(s) - 1))",
               lambda rng: word(rng, 0, 3) + (c := rng.choice(LOWER)) + c + word(rng, 0, 3)),
    "sorted": ("the letters of s are in non-decreasing alphabetical order", "isAlphabetical",
               "return list(s) == sorted(s)", lambda rng: "".join(sorted(word(rng, 1, 7)))),
    "vowelstart": ("s starts with a vowel (a, e, i, o, u)", "startsWithVowel", "return s[0] in 'aeiou'",
                   lambda rng: rng.choice(VOWELS) + word(rng, 0, 5)),
    "evenlen": ("the length of s is even", "hasEvenLength", "return len(s) % 2 == 0", lambda rng: word(rng, 1, 4) * 2),
    "ab": ("s contains the substring \"ab\"", "containsAb", "return 'ab' in s",
           lambda rng: word(rng, 0, 4, "abc") + "ab" + word(rng, 0, 3, "abc")),
    "morevowels": ("s contains strictly more vowels (a, e, i, o, u) than consonants", "hasMoreVowels",
                   "v = sum(1 for c in s if c in 'aeiou')\nreturn v > len(s) - v",
                   lambda rng: word(rng, 2, 5, VOWELS) + word(rng, 0, 1)),
}


@family("string_predicate", "easy", list(STRING_PREDICATES))
def _string_predicate(v: str) -> Spec:
    phrase, method, body, positive = STRING_PREDICATES[v]
    alphabet = "abc" if v in ("ab", "ends") else LOWER

    def gen(rng: random.Random) -> Inputs:
        return {"s": positive(rng) if rng.random() < 0.5 else word(rng, 1, 7, alphabet)}

    return Spec(method, "s: str", "bool", f"Given a non-empty string s of lowercase letters, return True if {phrase}, "
                f"otherwise False.", ("1 <= s.length <= 12", "s consists of lowercase English letters"), body, gen,
                ({"s": "a"}, {"s": "abba"}, {"s": "xyz"}, {"s": "abca"}, {"s": "aab"}))


# ----------------------------------------------------------------------------------------------
# Easy families: more lists

CLAMPS = [("clamp", 0, 10), ("clamp", -5, 5), ("clamp", 3, 8), ("clamp", -10, 0), ("clamp", 1, 20),
          ("cap", 0, 10), ("cap", 0, 25), ("floor", -5, 0), ("floor", 4, 0), ("replace", 3, 0)]


@family("clamp_values", "easy", CLAMPS)
def _clamp_values(v: tuple[str, int, int]) -> Spec:
    kind, a, b = v
    if kind == "clamp":
        statement = (f"every element smaller than {a} replaced by {a}, every element larger than {b} replaced by {b}, "
                     f"and all other elements unchanged")
        method, body = f"clampBetween{num_word(a)}And{num_word(b)}", f"return [min(max(x, {a}), {b}) for x in nums]"
    elif kind == "cap":
        statement = f"every element larger than {b} replaced by {b} and all other elements unchanged"
        method, body = f"capAt{num_word(b)}", f"return [min(x, {b}) for x in nums]"
    elif kind == "floor":
        statement = f"every element smaller than {a} replaced by {a} and all other elements unchanged"
        method, body = f"raiseTo{num_word(a)}", f"return [max(x, {a}) for x in nums]"
    else:
        statement = f"every occurrence of {a} replaced by {b} and all other elements unchanged"
        method, body = f"replace{num_word(a)}With{num_word(b)}", f"return [{b} if x == {a} else x for x in nums]"
    lo, hi = (-4, 8) if kind == "replace" else (-30, 30)
    return Spec(method, "nums: List[int]", "List[int]",
                f"Given an integer array nums, return a new list equal to nums with {statement}.",
                ("0 <= nums.length <= 10", f"{lo} <= nums[i] <= {hi}"), body, nums_gen(lo, hi),
                ({"nums": []}, {"nums": [lo, a, b, hi]}))


FIZZ = [(3, 5, "Fizz", "Buzz"), (2, 3, "Foo", "Bar"), (3, 7, "Tic", "Tac"), (4, 6, "Ping", "Pong"),
        (2, 5, "Hip", "Hop"), (5, 7, "Zip", "Zap"), (3, 4, "Red", "Blue"), (2, 7, "Up", "Down"),
        (4, 5, "Yin", "Yang"), (3, 8, "Sun", "Moon")]


@family("fizzbuzz_words", "easy", FIZZ)
def _fizzbuzz_words(v: tuple[int, int, str, str]) -> Spec:
    a, b, wa, wb = v
    statement = (f"Given an integer n, return a list of strings answer for the numbers 1 to n (answer[i - 1] belongs to "
                 f"the number i) where:\n"
                 f"- answer[i - 1] == \"{wa}{wb}\" if i is divisible by both {a} and {b},\n"
                 f"- answer[i - 1] == \"{wa}\" if i is divisible by {a} but not by {b},\n"
                 f"- answer[i - 1] == \"{wb}\" if i is divisible by {b} but not by {a},\n"
                 f"- answer[i - 1] == str(i) otherwise.\n"
                 f"If n is 0, return an empty list.")
    body = (f"out = []\nfor i in range(1, n + 1):\n    word = ('{wa}' if i % {a} == 0 else '') + ('{wb}' if i % {b} == 0 else '')\n"
            f"    out.append(word or str(i))\nreturn out")
    return Spec(f"{wa.lower()}{wb}", "n: int", "List[str]", statement, ("0 <= n <= 25",), body,
                lambda rng: {"n": rng.randint(1, 25)}, ({"n": 0}, {"n": 1}, {"n": a * b}))


PAIR_RULES = [("sum_eq", 10), ("sum_eq", 0), ("sum_gt", 12), ("sum_lt", -3), ("diff_eq", 1), ("diff_eq", 3),
              ("sum_div", 3), ("sum_div", 5), ("equal", 0), ("prod_neg", 0)]


@family("count_pairs", "easy", PAIR_RULES)
def _count_pairs(v: tuple[str, int]) -> Spec:
    rule, t = v
    phrase, cond, method = {
        "sum_eq": (f"nums[i] + nums[j] == {t}", f"nums[i] + nums[j] == {t}", f"countPairsSummingTo{num_word(t)}"),
        "sum_gt": (f"nums[i] + nums[j] > {t}", f"nums[i] + nums[j] > {t}", f"countPairsAbove{num_word(t)}"),
        "sum_lt": (f"nums[i] + nums[j] < {t}", f"nums[i] + nums[j] < {t}", f"countPairsBelow{num_word(t)}"),
        "diff_eq": (f"the absolute difference of nums[i] and nums[j] is exactly {t}", f"abs(nums[i] - nums[j]) == {t}",
                    f"countPairsWithDifference{num_word(t)}"),
        "sum_div": (f"nums[i] + nums[j] is divisible by {t}", f"(nums[i] + nums[j]) % {t} == 0",
                    f"countPairsDivisibleBy{num_word(t)}"),
        "equal": ("nums[i] == nums[j]", "nums[i] == nums[j]", "countEqualPairs"),
        "prod_neg": ("nums[i] * nums[j] < 0 (one is positive and the other negative)", "nums[i] * nums[j] < 0",
                     "countOppositeSignPairs"),
    }[rule]
    return Spec(method, "nums: List[int]", "int",
                f"Given an integer array nums, return the number of index pairs (i, j) with i < j such that {phrase}.",
                ("0 <= nums.length <= 10", "-10 <= nums[i] <= 10"),
                f"n = len(nums)\nreturn sum(1 for i in range(n) for j in range(i + 1, n) if {cond})",
                nums_gen(-10, 10), ({"nums": []}, {"nums": [5, 5, 5]}))


BUILDS = {
    "double": ("each character of s repeated twice", "doubleChars", "return ''.join(c * 2 for c in s)"),
    "triple": ("each character of s repeated three times", "tripleChars", "return ''.join(c * 3 for c in s)"),
    "dash": ("the characters of s with a '-' inserted between every two adjacent characters", "dashBetween",
             "return '-'.join(s)"),
    "star": ("the characters of s with a '*' inserted between every two adjacent characters", "starBetween",
             "return '*'.join(s)"),
    "mirror": ("s followed by its reverse", "mirrorString", "return s + s[::-1]"),
    "twice": ("s repeated twice with a single space between the two copies", "repeatWithSpace",
              "return s + ' ' + s"),
    "brackets": ("s wrapped in square brackets, e.g. \"ab\" becomes \"[ab]\"", "wrapInBrackets",
                 "return '[' + s + ']'"),
    "growing": ("the concatenation of all prefixes of s from shortest to longest, e.g. \"abc\" becomes \"aababc\"",
                "prefixChain", "return ''.join(s[:i] for i in range(1, len(s) + 1))"),
    "indexed": ("each character of s followed by its index, e.g. \"xyz\" becomes \"x0y1z2\"", "tagWithIndex",
                "return ''.join(c + str(i) for i, c in enumerate(s))"),
    "pairs": ("the characters of s swapped in adjacent pairs (s[0] with s[1], s[2] with s[3], ...); if the length "
              "is odd the last character stays at the end", "swapAdjacentPairs",
              "chars = list(s)\nfor i in range(0, len(chars) - 1, 2):\n    chars[i], chars[i + 1] = chars[i + 1], chars[i]\nreturn ''.join(chars)"),
}


@family("string_build", "easy", list(BUILDS))
def _string_build(v: str) -> Spec:
    phrase, method, body = BUILDS[v]
    return Spec(method, "s: str", "str", f"Given a string s of lowercase letters, return the string made of {phrase}.",
                ("1 <= s.length <= 8", "s consists of lowercase English letters"), body,
                lambda rng: {"s": word(rng, 1, 8)}, ({"s": "a"}, {"s": "abc"}))


TWO_LISTS = {
    "add": ("a list c of the same length with c[i] = a[i] + b[i]", "List[int]", "addElementwise",
            "return [x + y for x, y in zip(a, b)]", True),
    "mul": ("a list c of the same length with c[i] = a[i] * b[i]", "List[int]", "multiplyElementwise",
            "return [x * y for x, y in zip(a, b)]", True),
    "max": ("a list c of the same length with c[i] = max(a[i], b[i])", "List[int]", "maxElementwise",
            "return [max(x, y) for x, y in zip(a, b)]", True),
    "dot": ("the sum of a[i] * b[i] over all indices i (0 for empty lists)", "int", "dotProduct",
            "return sum(x * y for x, y in zip(a, b))", True),
    "same": ("the number of indices i with a[i] == b[i]", "int", "countMatchingPositions",
             "return sum(1 for x, y in zip(a, b) if x == y)", True),
    "interleave": ("a list that alternates elements of a and b (a[0], b[0], a[1], b[1], ...); when one list runs out, "
                   "the remaining elements of the other follow in order", "List[int]", "interleaveLists",
                   "out = []\nfor i in range(max(len(a), len(b))):\n    if i < len(a):\n        out.append(a[i])\n"
                   "    if i < len(b):\n        out.append(b[i])\nreturn out", False),
    "common": ("a list of the distinct values that occur in both a and b, sorted in increasing order", "List[int]",
               "commonValues", "return sorted(set(a) & set(b))", False),
    "union": ("a list of the distinct values that occur in a or in b (or both), sorted in increasing order",
              "List[int]", "unionValues", "return sorted(set(a) | set(b))", False),
    "minus": ("a list of the elements of a that do not occur in b, in their original order (duplicates in a are kept)",
              "List[int]", "removeValuesOf", "bs = set(b)\nreturn [x for x in a if x not in bs]", False),
    "concat": ("the list b followed by the list a", "List[int]", "concatReversedOrder", "return b + a", False),
}


@family("two_lists", "easy", list(TWO_LISTS))
def _two_lists(v: str) -> Spec:
    phrase, returns, method, body, same_len = TWO_LISTS[v]

    def gen(rng: random.Random) -> Inputs:
        n = rng.randint(0, 7)
        return {"a": int_list(rng, -9, 9, n, n), "b": int_list(rng, -9, 9, *((n, n) if same_len else (0, 7)))}

    given = "two integer arrays a and b of the same length" if same_len else "two integer arrays a and b"
    constraints = ("0 <= a.length == b.length <= 7",) if same_len else ("0 <= a.length, b.length <= 7",)
    return Spec(method, "a: List[int], b: List[int]", returns, f"Given {given}, return {phrase}.",
                constraints + ("-9 <= a[i], b[i] <= 9",), body, gen,
                ({"a": [], "b": []}, {"a": [1, 2, 3], "b": [3, 2, 1]}))


GRIDS = {
    "rows": ("a list with the sum of each row", "List[int]", "rowSums", "return [sum(r) for r in grid]"),
    "cols": ("a list with the sum of each column", "List[int]", "columnSums",
             "return [sum(r[j] for r in grid) for j in range(len(grid[0]))]"),
    "transpose": ("the transpose of grid (row i of the result is column i of grid)", "List[List[int]]", "transpose",
                  "return [[r[j] for r in grid] for j in range(len(grid[0]))]"),
    "rowmax": ("a list with the largest value of each row", "List[int]", "rowMaxima", "return [max(r) for r in grid]"),
    "flatten": ("all values of grid in one list, row by row from top to bottom, left to right", "List[int]",
                "flattenGrid", "return [x for r in grid for x in r]"),
    "zeros": ("the number of cells equal to 0", "int", "countZeroCells", "return sum(r.count(0) for r in grid)"),
    "border": ("the sum of the cells on the border of grid (first and last row, first and last column; each cell "
               "counted once)", "int", "borderSum",
               "m, n = len(grid), len(grid[0])\nreturn sum(grid[i][j] for i in range(m) for j in range(n) "
               "if i in (0, m - 1) or j in (0, n - 1))"),
    "colmin": ("a list with the smallest value of each column", "List[int]", "columnMinima",
               "return [min(r[j] for r in grid) for j in range(len(grid[0]))]"),
    "flip": ("grid mirrored left to right (every row reversed)", "List[List[int]]", "mirrorRows",
             "return [r[::-1] for r in grid]"),
    "bestrow": ("the index of the row with the largest sum (the smallest such index if there is a tie)", "int",
                "richestRow", "sums = [sum(r) for r in grid]\nreturn sums.index(max(sums))"),
}


@family("grid_ops", "easy", list(GRIDS))
def _grid_ops(v: str) -> Spec:
    phrase, returns, method, body = GRIDS[v]

    def gen(rng: random.Random) -> Inputs:
        m, n = rng.randint(1, 4), rng.randint(1, 4)
        return {"grid": [int_list(rng, 0, 6, n, n) for _ in range(m)]}

    return Spec(method, "grid: List[List[int]]", returns,
                f"You are given an m x n integer matrix grid (a list of m rows, each of length n). Return {phrase}.",
                ("1 <= m, n <= 4", "0 <= grid[i][j] <= 6"), body, gen,
                ({"grid": [[5]]}, {"grid": [[1, 2, 3], [4, 0, 6]]}))


CHUNKS = [("list", 2), ("list", 3), ("list", 4), ("sum", 2), ("sum", 3), ("max", 2), ("max", 3), ("sum", 4),
          ("first", 3), ("len", 5)]


@family("chunk_list", "easy", CHUNKS)
def _chunk_list(v: tuple[str, int]) -> Spec:
    kind, k = v
    split = (f"Split nums into consecutive chunks of {k} elements (the last chunk may be shorter when the length of "
             f"nums is not a multiple of {k}).")
    what, returns, method, body = {
        "list": ("the list of chunks", "List[List[int]]", f"chunksOf{num_word(k)}",
                 f"return [nums[i:i + {k}] for i in range(0, len(nums), {k})]"),
        "sum": ("a list with the sum of each chunk", "List[int]", f"chunkSumsOf{num_word(k)}",
                f"return [sum(nums[i:i + {k}]) for i in range(0, len(nums), {k})]"),
        "max": ("a list with the largest element of each chunk", "List[int]", f"chunkMaximaOf{num_word(k)}",
                f"return [max(nums[i:i + {k}]) for i in range(0, len(nums), {k})]"),
        "first": ("a list with the first element of each chunk", "List[int]", f"chunkLeadersOf{num_word(k)}",
                  f"return nums[::{k}]"),
        "len": ("the number of chunks", "int", f"chunkCountOf{num_word(k)}", f"return (len(nums) + {k - 1}) // {k}"),
    }[kind]
    return Spec(method, "nums: List[int]", returns, f"You are given an integer array nums. {split} Return {what}.",
                ("0 <= nums.length <= 12", "-20 <= nums[i] <= 20"), body, nums_gen(-20, 20, 0, 12),
                ({"nums": []}, {"nums": list(range(1, k + 2))}))


SENTENCES = {
    "longest": ("the longest word of s (the first one if several have the same length)", "str", "longestWord",
                "return max(s.split(' '), key=len)"),
    "shortest": ("the shortest word of s (the first one if several have the same length)", "str", "shortestWord",
                 "return min(s.split(' '), key=len)"),
    "acronym": ("the acronym of s: the first letter of every word, in uppercase", "str", "acronym",
                "return ''.join(w[0].upper() for w in s.split(' '))"),
    "lastlen": ("the length of the last word of s", "int", "lengthOfLastWord", "return len(s.split(' ')[-1])"),
    "evenwords": ("the number of words of s whose length is even", "int", "countEvenLengthWords",
                  "return sum(1 for w in s.split(' ') if len(w) % 2 == 0)"),
    "startb": ("the number of words of s that start with the letter 'b'", "int", "countWordsStartingWithB",
               "return sum(1 for w in s.split(' ') if w[0] == 'b')"),
    "withe": ("a list of the words of s that contain the letter 'e', in order", "List[str]", "wordsWithE",
              "return [w for w in s.split(' ') if 'e' in w]"),
    "long5": ("a list of the words of s that have at least 5 letters, in order", "List[str]", "wordsOfFivePlus",
              "return [w for w in s.split(' ') if len(w) >= 5]"),
    "lengths": ("a list with the length of every word of s, in order", "List[int]", "wordLengthList",
                "return [len(w) for w in s.split(' ')]"),
    "firstlast": ("the first word of s followed by a single space and the last word of s (the same word twice if s "
                  "has one word)", "str", "firstAndLastWord", "words = s.split(' ')\nreturn words[0] + ' ' + words[-1]"),
}


@family("sentence_words", "easy", list(SENTENCES))
def _sentence_words(v: str) -> Spec:
    phrase, returns, method, body = SENTENCES[v]
    return Spec(method, "s: str", returns, f"Given a sentence s of lowercase words separated by single spaces, "
                f"return {phrase}.", ("1 <= s.length <= 60", "s consists of lowercase words separated by single spaces"),
                body, lambda rng: {"s": sentence(rng, 1, 7)}, ({"s": "a"}, {"s": "the bee sees blue eel"}))


SEQUENCES = {
    "sum": ("the sum 1 + 2 + ... + n (0 when n is 0)", "int", "sumUpTo", "return n * (n + 1) // 2", 50),
    "squares": ("the sum of the squares 1^2 + 2^2 + ... + n^2", "int", "sumOfSquares",
                "return sum(i * i for i in range(1, n + 1))", 30),
    "fact": ("n! (the product 1 * 2 * ... * n, with 0! = 1)", "int", "factorial",
             "p = 1\nfor i in range(2, n + 1):\n    p *= i\nreturn p", 12),
    "fib": ("the n-th Fibonacci number F(n), where F(0) = 0, F(1) = 1 and F(n) = F(n - 1) + F(n - 2)", "int", "fibonacci",
            "a, b = 0, 1\nfor _ in range(n):\n    a, b = b, a + b\nreturn a", 30),
    "evens": ("the sum of all even numbers between 1 and n inclusive", "int", "sumOfEvens",
              "return sum(i for i in range(2, n + 1, 2))", 50),
    "divisors": ("the number of positive divisors of n (0 has none: return 0)", "int", "countDivisors",
                 "return sum(1 for d in range(1, n + 1) if n % d == 0)", 100),
    "proper": ("the sum of the proper divisors of n (positive divisors smaller than n; 0 for n <= 1)", "int",
               "sumOfProperDivisors", "return sum(d for d in range(1, n) if n % d == 0)", 100),
    "odds": ("a list of the first n odd positive numbers in increasing order", "List[int]", "firstOdds",
             "return [2 * i + 1 for i in range(n)]", 15),
    "cubes": ("a list of the cubes 1^3, 2^3, ..., n^3", "List[int]", "cubesUpTo", "return [i ** 3 for i in range(1, n + 1)]", 12),
    "tri": ("a list of the first n triangular numbers 1, 3, 6, 10, ... (the i-th is 1 + 2 + ... + i)", "List[int]",
            "triangularNumbers", "return [i * (i + 1) // 2 for i in range(1, n + 1)]", 15),
}


@family("number_sequence", "easy", list(SEQUENCES))
def _number_sequence(v: str) -> Spec:
    phrase, returns, method, body, hi = SEQUENCES[v]
    return Spec(method, "n: int", returns, f"Given a non-negative integer n, return {phrase}.", (f"0 <= n <= {hi}",),
                body, lambda rng: {"n": rng.randint(2, hi)}, ({"n": 0}, {"n": 1}))


SHIFTS = [(1, "forward"), (2, "forward"), (3, "forward"), (5, "forward"), (13, "forward"), (1, "backward"),
          (2, "backward"), (3, "backward"), (7, "backward"), (0, "atbash")]


@family("caesar_shift", "easy", SHIFTS)
def _caesar_shift(v: tuple[int, str]) -> Spec:
    k, direction = v
    if direction == "atbash":
        statement = ("Given a string s of lowercase letters and spaces, return the string in which every letter is "
                     "replaced by its mirror in the alphabet ('a' <-> 'z', 'b' <-> 'y', 'c' <-> 'x', ...). Spaces stay "
                     "unchanged.")
        method = "mirrorAlphabet"
        body = "return ''.join(chr(ord('a') + 25 - (ord(c) - ord('a'))) if c != ' ' else c for c in s)"
    else:
        sign = 1 if direction == "forward" else -1
        example = "'a' becomes 'b' and 'z' becomes 'a'" if sign == 1 else "'b' becomes 'a' and 'a' becomes 'z'"
        statement = (f"Given a string s of lowercase letters and spaces, return the string in which every letter is "
                     f"shifted {k} position{'s' if k > 1 else ''} {direction} in the alphabet, wrapping around (for a "
                     f"shift of one {direction}, {example}). Spaces stay unchanged.")
        method = f"shift{'Forward' if sign == 1 else 'Backward'}{num_word(k)}"
        body = f"return ''.join(chr((ord(c) - ord('a') + {sign * k}) % 26 + ord('a')) if c != ' ' else c for c in s)"
    return Spec(method, "s: str", "str", statement, LOWER_WORDS_C, body, english_gen,
                ({"s": "a"}, {"s": "xyz abc"}))


UNIQUES = {
    "dedupe": ("nums with duplicates removed, keeping the first occurrence of each value in the original order",
               "List[int]", "removeDuplicates",
               "seen, out = set(), []\nfor x in nums:\n    if x not in seen:\n        seen.add(x)\n        out.append(x)\nreturn out"),
    "once": ("a list of the values that occur exactly once in nums, in their original order", "List[int]",
             "singleOccurrences", "return [x for x in nums if nums.count(x) == 1]"),
    "repeated": ("a list of the distinct values that occur more than once in nums, sorted in increasing order",
                 "List[int]", "repeatedValues", "return sorted({x for x in nums if nums.count(x) > 1})"),
    "distinct": ("the number of distinct values in nums", "int", "countDistinct", "return len(set(nums))"),
    "mode": ("the value that occurs most often in nums (the smallest such value if there is a tie); nums is not empty",
             "int", "mostFrequent", "return min(set(nums), key=lambda x: (-nums.count(x), x))"),
    "rare": ("the value that occurs least often in nums (the smallest such value if there is a tie); nums is not empty",
             "int", "leastFrequent", "return min(set(nums), key=lambda x: (nums.count(x), x))"),
    "firstuniq": ("the first value in nums that occurs exactly once, or -1 if there is none", "int", "firstUnique",
                  "for x in nums:\n    if nums.count(x) == 1:\n        return x\nreturn -1"),
    "hasdup": ("True if some value occurs at least twice in nums, otherwise False", "bool", "containsDuplicate",
               "return len(set(nums)) < len(nums)"),
    "maxcount": ("the largest number of times any single value occurs in nums (0 for an empty array)", "int",
                 "highestFrequency", "return max((nums.count(x) for x in nums), default=0)"),
    "dupcount": ("the number of elements that would have to be removed from nums so that every value occurs only once",
                 "int", "extraCopies", "return len(nums) - len(set(nums))"),
}


@family("unique_values", "easy", list(UNIQUES))
def _unique_values(v: str) -> Spec:
    phrase, returns, method, body = UNIQUES[v]
    nmin = 1 if "nums is not empty" in phrase else 0
    return Spec(method, "nums: List[int]", returns, f"Given an integer array nums, return {phrase}.",
                (f"{nmin} <= nums.length <= 10", "0 <= nums[i] <= 9"), body, nums_gen(0, 9, nmin, 10),
                ({"nums": [7]}, {"nums": [3, 1, 3, 2, 1]}) if nmin else ({"nums": []}, {"nums": [3, 1, 3, 2, 1]}))


BITS = {
    "ones": ("the number of 1 bits in the binary representation of n", "int", "countOneBits", "return bin(n).count('1')"),
    "zeros": ("the number of 0 bits in the binary representation of n without leading zeros (0 is written \"0\")", "int",
              "countZeroBits", "return bin(n)[2:].count('0')"),
    "binary": ("the binary representation of n as a string without leading zeros (0 is \"0\")", "str", "toBinary",
               "return bin(n)[2:]"),
    "bit0": ("True if the lowest bit (bit 0) of n is set, otherwise False", "bool", "isBitZeroSet", "return n & 1 == 1"),
    "bit2": ("True if bit 2 of n (the bit worth 4) is set, otherwise False", "bool", "isBitTwoSet",
             "return (n >> 2) & 1 == 1"),
    "trailing": ("the number of trailing zero bits of n (n >= 1)", "int", "trailingZeroBits",
                 "count = 0\nwhile n % 2 == 0:\n    n //= 2\n    count += 1\nreturn count"),
    "flip": ("the number obtained by flipping every bit of n's binary representation (without leading zeros), e.g. 5 "
             "(101) becomes 2 (010); n >= 1", "int", "flipBits", "return n ^ ((1 << n.bit_length()) - 1)"),
    "clearlow": ("n with its lowest set bit cleared (n >= 1), e.g. 12 (1100) becomes 8 (1000)", "int",
                 "clearLowestSetBit", "return n & (n - 1)"),
    "highpow": ("the largest power of two that is less than or equal to n (n >= 1)", "int", "highestPowerOfTwo",
                "return 1 << (n.bit_length() - 1)"),
    "length": ("the number of digits of n in binary (0 has one digit)", "int", "binaryLength",
               "return len(bin(n)) - 2"),
}


@family("binary_bits", "easy", list(BITS))
def _binary_bits(v: str) -> Spec:
    phrase, returns, method, body = BITS[v]
    lo = 1 if "n >= 1" in phrase else 0
    return Spec(method, "n: int", returns, f"Given an integer n, return {phrase}.", (f"{lo} <= n <= 1000",), body,
                lambda rng: {"n": rng.randint(lo, 1000)}, ({"n": lo}, {"n": 12}, {"n": 255}))


POSITIONS = {
    "first_a": ("the index of the first occurrence of the letter 'a' in s, or -1 if s has no 'a'", "int",
                "firstIndexOfA", "return s.find('a')"),
    "last_a": ("the index of the last occurrence of the letter 'a' in s, or -1 if s has no 'a'", "int",
               "lastIndexOfA", "return s.rfind('a')"),
    "first_o": ("the index of the first occurrence of the letter 'o' in s, or -1 if s has no 'o'", "int",
                "firstIndexOfO", "return s.find('o')"),
    "all_e": ("a list of all indices i with s[i] == 'e', in increasing order", "List[int]", "indicesOfE",
              "return [i for i, c in enumerate(s) if c == 'e']"),
    "all_space": ("a list of the indices of all spaces in s, in increasing order", "List[int]", "indicesOfSpaces",
                  "return [i for i, c in enumerate(s) if c == ' ']"),
    "first_vowel": ("the index of the first vowel (a, e, i, o, u) in s, or -1 if there is none", "int",
                    "firstVowelIndex",
                    "for i, c in enumerate(s):\n    if c in 'aeiou':\n        return i\nreturn -1"),
    "last_vowel": ("the index of the last vowel (a, e, i, o, u) in s, or -1 if there is none", "int", "lastVowelIndex",
                   "for i in range(len(s) - 1, -1, -1):\n    if s[i] in 'aeiou':\n        return i\nreturn -1"),
    "first_repeat": ("the index of the first character of s that already occurred earlier in s, or -1 if all characters "
                     "are different", "int", "firstRepeatIndex",
                     "seen = set()\nfor i, c in enumerate(s):\n    if c in seen:\n        return i\n    seen.add(c)\nreturn -1"),
    "word_starts": ("a list of the indices where the words of s start, in increasing order", "List[int]",
                    "wordStartIndices", "return [i for i, c in enumerate(s) if c != ' ' and (i == 0 or s[i - 1] == ' ')]"),
    "between_a": ("the number of characters strictly between the first and the last 'a' in s, or -1 if s contains fewer "
                  "than two 'a'", "int", "gapBetweenAs",
                  "return s.rfind('a') - s.find('a') - 1 if s.count('a') >= 2 else -1"),
}


@family("char_positions", "easy", list(POSITIONS))
def _char_positions(v: str) -> Spec:
    phrase, returns, method, body = POSITIONS[v]
    return Spec(method, "s: str", returns, f"Given a string s, return {phrase}. Indices start at 0.", LOWER_WORDS_C,
                body, english_gen, ({"s": "x"}, {"s": "banana boat"}))


# ----------------------------------------------------------------------------------------------
# Easy families: numbers and small conversions

UNITS = {
    "hms": ("seconds", "a number of seconds", "the same duration as a list [hours, minutes, seconds] with "
            "0 <= minutes, seconds < 60", "List[int]", "splitSeconds", "return [seconds // 3600, seconds % 3600 // 60, seconds % 60]", 100000),
    "hmm": ("minutes", "a number of minutes", "the duration as a string \"H:MM\" (hours without leading zeros, minutes "
            "always two digits), e.g. 75 becomes \"1:15\"", "str", "formatMinutes",
            "return f'{minutes // 60}:{minutes % 60:02d}'", 3000),
    "hhmmss": ("seconds", "a number of seconds less than one day", "the time of day as a string \"HH:MM:SS\" with two "
               "digits each, e.g. 3725 becomes \"01:02:05\"", "str", "clockTime",
               "return f'{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'", 86399),
    "feet": ("inches", "a length in inches", "the same length as a list [feet, inches] where one foot is 12 inches and "
             "0 <= inches < 12", "List[int]", "toFeetAndInches", "return [inches // 12, inches % 12]", 500),
    "weeks": ("days", "a number of days", "the same duration as a list [weeks, days] with 0 <= days < 7", "List[int]",
              "toWeeksAndDays", "return [days // 7, days % 7]", 400),
    "money": ("cents", "an amount of money in cents", "the amount as a string \"D.CC\" (dollars without leading zeros, "
              "always two digits of cents), e.g. 305 becomes \"3.05\"", "str", "formatCents",
              "return f'{cents // 100}.{cents % 100:02d}'", 100000),
    "coins": ("cents", "an amount of money in cents", "the smallest number of coins worth 25, 10, 5 and 1 cents that add "
              "up to exactly that amount", "int", "fewestCoins",
              "count = 0\nfor coin in (25, 10, 5, 1):\n    count += cents // coin\n    cents %= coin\nreturn count", 500),
    "grams": ("grams", "a mass in grams", "the same mass as a list [kilograms, grams] with 0 <= grams < 1000",
              "List[int]", "toKilograms", "return [grams // 1000, grams % 1000]", 20000),
    "minutes_total": ("time", "a time of day as a string \"HH:MM\" (24-hour clock, two digits each)",
                      "the number of minutes since midnight", "int", "minutesSinceMidnight",
                      "return int(time[:2]) * 60 + int(time[3:])", 0),
    "eggs": ("eggs", "a number of eggs", "the number of cartons needed to pack all of them when one carton holds 12 eggs",
             "int", "cartonsNeeded", "return (eggs + 11) // 12", 300),
}


@family("unit_convert", "easy", list(UNITS))
def _unit_convert(v: str) -> Spec:
    arg, given, what, returns, method, body, hi = UNITS[v]
    if arg == "time":
        gen: Generator = lambda rng: {"time": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"}  # noqa: E731
        constraints: tuple[str, ...] = ("time has the form \"HH:MM\" with 00 <= HH <= 23 and 00 <= MM <= 59",)
        edges: tuple[Inputs, ...] = ({"time": "00:00"}, {"time": "23:59"})
        typ = "str"
    else:
        gen = lambda rng: {arg: rng.randint(0, hi)}  # noqa: E731
        constraints = (f"0 <= {arg} <= {hi}",)
        edges = ({arg: 0}, {arg: 61})
        typ = "int"
    return Spec(method, f"{arg}: {typ}", returns, f"You are given {arg}, {given}. Return {what}.", constraints, body, gen,
                edges)


LIST_BUILDS = {
    "upto": ("the list [1, 2, ..., n]", "countUp", "return list(range(1, n + 1))"),
    "down": ("the list [n, n - 1, ..., 1]", "countDown", "return list(range(n, 0, -1))"),
    "squares": ("the list of the squares of 1, 2, ..., n", "squaresUpTo", "return [i * i for i in range(1, n + 1)]"),
    "mult3": ("the list of all positive multiples of 3 that are at most n, in increasing order", "multiplesOfThree",
              "return list(range(3, n + 1, 3))"),
    "mult4": ("the list of all positive multiples of 4 that are at most n, in increasing order", "multiplesOfFour",
              "return list(range(4, n + 1, 4))"),
    "pow2": ("the list of the first n powers of two, starting with 1", "powersOfTwo", "return [2 ** i for i in range(n)]"),
    "evens": ("the list of all even numbers between 0 and n inclusive, in increasing order", "evenNumbers",
              "return list(range(0, n + 1, 2))"),
    "zigzag": ("the list [1, -2, 3, -4, ...] of length n (odd positions positive, even positions negative)",
               "alternatingSigns", "return [i if i % 2 == 1 else -i for i in range(1, n + 1)]"),
    "repeat": ("the list in which each number i from 1 to n appears i times, in increasing order (e.g. n = 3 gives "
               "[1, 2, 2, 3, 3, 3])", "staircase", "return [i for i in range(1, n + 1) for _ in range(i)]"),
    "step5": ("the list [n, n - 5, n - 10, ...] containing every such number that is greater than 0", "countDownByFive",
              "return list(range(n, 0, -5))"),
}


@family("list_build", "easy", list(LIST_BUILDS))
def _list_build(v: str) -> Spec:
    phrase, method, body = LIST_BUILDS[v]
    hi = 6 if v == "repeat" else 12 if v in ("upto", "down", "squares", "pow2", "zigzag") else 40
    return Spec(method, "n: int", "List[int]", f"Given a non-negative integer n, return {phrase}.", (f"0 <= n <= {hi}",),
                body, lambda rng: {"n": rng.randint(2, hi)}, ({"n": 0}, {"n": 1}))


INDEX_OPS = {
    "even": ("the sum of the elements at even indices (0, 2, 4, ...)", "int", "sumAtEvenIndices", "return sum(nums[::2])"),
    "odd": ("the sum of the elements at odd indices (1, 3, 5, ...)", "int", "sumAtOddIndices", "return sum(nums[1::2])"),
    "third": ("a list of the elements at indices 0, 3, 6, ...", "List[int]", "everyThirdElement", "return nums[::3]"),
    "alt": ("the alternating sum nums[0] - nums[1] + nums[2] - nums[3] + ... (0 for an empty array)", "int",
            "alternatingSum", "return sum(x if i % 2 == 0 else -x for i, x in enumerate(nums))"),
    "fixed": ("the number of indices i with nums[i] == i", "int", "countFixedPoints",
              "return sum(1 for i, x in enumerate(nums) if x == i)"),
    "bigger": ("a list of the indices i with nums[i] > i, in increasing order", "List[int]", "indicesAboveIndex",
               "return [i for i, x in enumerate(nums) if x > i]"),
    "weighted": ("the sum of i * nums[i] over all indices i", "int", "indexWeightedSum",
                 "return sum(i * x for i, x in enumerate(nums))"),
    "evenpos": ("a list of the indices of the even elements, in increasing order", "List[int]", "indicesOfEvens",
                "return [i for i, x in enumerate(nums) if x % 2 == 0]"),
    "lasthalf": ("the sum of the last half of nums (the elements at indices n // 2 to n - 1, where n is the length)",
                 "int", "sumOfSecondHalf", "return sum(nums[len(nums) // 2:])"),
    "mirror": ("the number of indices i < n - 1 - i with nums[i] == nums[n - 1 - i], where n is the length", "int",
               "countMirroredPairs", "n = len(nums)\nreturn sum(1 for i in range(n // 2) if nums[i] == nums[n - 1 - i])"),
}


@family("index_ops", "easy", list(INDEX_OPS))
def _index_ops(v: str) -> Spec:
    phrase, returns, method, body = INDEX_OPS[v]
    lo, hi = (0, 9) if v in ("fixed", "bigger", "mirror") else (-20, 20)
    return Spec(method, "nums: List[int]", returns, f"Given an integer array nums, return {phrase}. Indices start at 0.",
                ("0 <= nums.length <= 10", f"{lo} <= nums[i] <= {hi}"), body, nums_gen(lo, hi),
                ({"nums": []}, {"nums": [0, 1, 5, 3, 0]}))


def sorted_list(rng: random.Random) -> list[int]:
    return sorted(int_list(rng, -9, 9, 1, 8))


LIST_PREDICATES = {
    "nondec": ("the elements of nums are in non-decreasing order", "isSortedAscending",
               "return all(nums[i] <= nums[i + 1] for i in range(len(nums) - 1))", sorted_list),
    "inc": ("the elements of nums are strictly increasing", "isStrictlyIncreasing",
            "return all(nums[i] < nums[i + 1] for i in range(len(nums) - 1))",
            lambda rng: sorted(set(int_list(rng, -9, 9, 1, 8)))),
    "noninc": ("the elements of nums are in non-increasing order", "isSortedDescending",
               "return all(nums[i] >= nums[i + 1] for i in range(len(nums) - 1))", lambda rng: sorted_list(rng)[::-1]),
    "alleven": ("every element of nums is even", "allEven", "return all(x % 2 == 0 for x in nums)",
                lambda rng: [2 * x for x in int_list(rng, -4, 4, 1, 6)]),
    "anyneg": ("nums contains at least one negative number", "hasNegative", "return any(x < 0 for x in nums)",
               lambda rng: int_list(rng, -9, 9, 1, 6)),
    "distinct": ("all elements of nums are different", "allDistinct", "return len(set(nums)) == len(nums)",
                 lambda rng: rng.sample(range(-9, 10), rng.randint(1, 6))),
    "has7": ("nums contains the value 7", "containsSeven", "return 7 in nums",
             lambda rng: int_list(rng, -9, 9, 0, 4) + [7] + int_list(rng, -9, 9, 0, 3)),
    "adjacent": ("nums contains two equal adjacent elements", "hasEqualNeighbors",
                 "return any(nums[i] == nums[i + 1] for i in range(len(nums) - 1))",
                 lambda rng: int_list(rng, -9, 9, 0, 3) + [x := rng.randint(-9, 9), x] + int_list(rng, -9, 9, 0, 3)),
    "ends": ("the first and the last element of nums are equal", "sameEnds", "return nums[0] == nums[-1]",
             lambda rng: [x := rng.randint(-9, 9)] + int_list(rng, -9, 9, 0, 5) + [x]),
    "sumeven": ("the sum of the elements of nums is even", "hasEvenSum", "return sum(nums) % 2 == 0",
                lambda rng: int_list(rng, -9, 9, 1, 8)),
}


@family("list_predicate", "easy", list(LIST_PREDICATES))
def _list_predicate(v: str) -> Spec:
    phrase, method, body, positive = LIST_PREDICATES[v]

    def gen(rng: random.Random) -> Inputs:
        return {"nums": positive(rng) if rng.random() < 0.5 else int_list(rng, -9, 9, 1, 8)}

    return Spec(method, "nums: List[int]", "bool",
                f"Given a non-empty integer array nums, return True if {phrase}, otherwise False.",
                ("1 <= nums.length <= 10", "-9 <= nums[i] <= 9"), body, gen,
                ({"nums": [4]}, {"nums": [1, 2, 2, 1]}, {"nums": [-1, 3, 3, 8]}))


WORD_LISTS = {
    "longest": ("the longest word (the first one if several have the same length), or \"\" if words is empty", "str",
                "longestString", "best = ''\nfor w in words:\n    if len(w) > len(best):\n        best = w\nreturn best"),
    "vowel": ("the number of words that start with a vowel (a, e, i, o, u)", "int", "countVowelStarts",
              "return sum(1 for w in words if w[0] in 'aeiou')"),
    "total": ("the total number of letters in all words", "int", "totalLetters", "return sum(len(w) for w in words)"),
    "join": ("all words joined into one string with \", \" (a comma and a space) between them", "str", "joinWithCommas",
             "return ', '.join(words)"),
    "upper": ("a list with every word converted to uppercase", "List[str]", "upperAll", "return [w.upper() for w in words]"),
    "sorted": ("the words sorted alphabetically", "List[str]", "sortWords", "return sorted(words)"),
    "bylen": ("the words sorted by length, shortest first; words of equal length keep their original order",
              "List[str]", "sortByLength", "return sorted(words, key=len)"),
    "endse": ("a list of the words that end with the letter 'e', in order", "List[str]", "wordsEndingInE",
              "return [w for w in words if w.endswith('e')]"),
    "lens": ("a list with the length of each word", "List[int]", "lengthsOfWords", "return [len(w) for w in words]"),
    "firsts": ("the string formed by the first letter of each word, in order", "str", "firstLetters",
               "return ''.join(w[0] for w in words)"),
}


@family("word_list_ops", "easy", list(WORD_LISTS))
def _word_list_ops(v: str) -> Spec:
    phrase, returns, method, body = WORD_LISTS[v]
    return Spec(method, "words: List[str]", returns, f"Given a list of lowercase words, return {phrase}.",
                ("0 <= words.length <= 6", "1 <= words[i].length <= 8", "words[i] consists of lowercase English letters"),
                body, lambda rng: {"words": word_list(rng, 1, 6)}, ({"words": []}, {"words": ["apple", "ice", "tree"]}))


GCDS = {
    "gcd": ("a: int, b: int", "the greatest common divisor of a and b", "int", "greatestCommonDivisor",
            "while b:\n    a, b = b, a % b\nreturn a"),
    "lcm": ("a: int, b: int", "the least common multiple of a and b", "int", "leastCommonMultiple",
            "x, y = a, b\nwhile y:\n    x, y = y, x % y\nreturn a * b // x"),
    "coprime": ("a: int, b: int", "True if a and b have no common divisor greater than 1, otherwise False", "bool",
                "areCoprime", "while b:\n    a, b = b, a % b\nreturn a == 1"),
    "gcdlist": ("nums: List[int]", "the greatest common divisor of all elements of nums", "int", "gcdOfList",
                "g = 0\nfor x in nums:\n    a, b = g, x\n    while b:\n        a, b = b, a % b\n    g = a\nreturn g"),
    "lcmlist": ("nums: List[int]", "the least common multiple of all elements of nums", "int", "lcmOfList",
                "l = 1\nfor x in nums:\n    a, b = l, x\n    while b:\n        a, b = b, a % b\n    l = l * x // a\nreturn l"),
    "phi": ("n: int", "how many integers k with 1 <= k <= n have no common divisor with n greater than 1", "int",
            "countCoprimeBelow",
            "count = 0\nfor k in range(1, n + 1):\n    a, b = k, n\n    while b:\n        a, b = b, a % b\n    count += a == 1\nreturn count"),
    "common": ("a: int, b: int", "the number of positive integers that divide both a and b", "int", "countCommonDivisors",
               "return sum(1 for d in range(1, min(a, b) + 1) if a % d == 0 and b % d == 0)"),
}


@family("gcd_lcm", "easy", list(GCDS))
def _gcd_lcm(v: str) -> Spec:
    params, phrase, returns, method, body = GCDS[v]
    if params.startswith("nums"):
        def gen(rng: random.Random) -> Inputs:
            base = rng.choice([1, 2, 3, 4, 6])
            return {"nums": [base * rng.randint(1, 6) for _ in range(rng.randint(1, 5))]}

        constraints: tuple[str, ...] = ("1 <= nums.length <= 5", "1 <= nums[i] <= 36")
        edges: tuple[Inputs, ...] = ({"nums": [6]}, {"nums": [4, 6, 8]})
        given = "a non-empty array nums of positive integers"
    elif params.startswith("n"):
        gen = lambda rng: {"n": rng.randint(1, 60)}  # noqa: E731
        constraints, edges, given = ("1 <= n <= 60",), ({"n": 1}, {"n": 12}), "a positive integer n"

    else:
        def gen(rng: random.Random) -> Inputs:
            k = rng.choice([1, 1, 2, 3, 5])
            return {"a": k * rng.randint(1, 20), "b": k * rng.randint(1, 20)}

        constraints, edges, given = ("1 <= a, b <= 100",), ({"a": 1, "b": 1}, {"a": 12, "b": 18}), "two positive integers a and b"
    return Spec(method, params, returns, f"Given {given}, return {phrase}.", constraints, body, gen, edges)


PATTERNS = [("ab", True), ("aa", True), ("aba", True), ("abc", True), ("ba", True),
            ("aa", False), ("aba", False), ("bab", False), ("aaa", False), ("cc", False)]


@family("count_substring", "easy", PATTERNS)
def _count_substring(v: tuple[str, bool]) -> Spec:
    pattern, overlapping = v
    if overlapping:
        how = "Occurrences may overlap (e.g. \"aaa\" contains \"aa\" twice)."
        body = f"p = '{pattern}'\nreturn sum(1 for i in range(len(s) - len(p) + 1) if s[i:i + len(p)] == p)"
        method = f"countOverlapping{pattern.capitalize()}"
    else:
        how = ("Count non-overlapping occurrences, scanning from left to right (e.g. \"aaa\" contains \"aa\" once): "
               "after a match, the search continues after its end.")
        body = f"return s.count('{pattern}')"
        method = f"countSeparate{pattern.capitalize()}"
    return Spec(method, "s: str", "int",
                f"Given a string s, return how many times the substring \"{pattern}\" occurs in s. {how}",
                ("0 <= s.length <= 15", "s consists of the letters 'a', 'b' and 'c'"), body,
                lambda rng: {"s": word(rng, 1, 15, "aabc")},
                ({"s": ""}, {"s": pattern * 3}, {"s": pattern[:-1] * 3 + pattern[-1]}))


BASES = [("to", 2), ("to", 3), ("to", 5), ("to", 7), ("to", 8), ("from", 2), ("from", 3), ("from", 6), ("digits", 4),
         ("digitsum", 9)]


@family("base_convert", "easy", BASES)
def _base_convert(v: tuple[str, int]) -> Spec:
    kind, b = v
    to_digits = f"digits = []\nwhile n > 0:\n    digits.append(n % {b})\n    n //= {b}\n"
    if kind == "to":
        statement = (f"Given a non-negative integer n, return its representation in base {b} as a string of digits "
                     f"without leading zeros (0 is \"0\").")
        return Spec(f"toBase{num_word(b)}", "n: int", "str", statement, ("0 <= n <= 5000",),
                    to_digits + "return ''.join(str(d) for d in reversed(digits)) or '0'",
                    lambda rng: {"n": rng.randint(0, 5000)}, ({"n": 0}, {"n": b}, {"n": b * b - 1}))
    if kind == "from":
        statement = (f"Given a string s that is the base-{b} representation of a non-negative integer (digits 0 to "
                     f"{b - 1}, most significant first), return that integer.")
        return Spec(f"fromBase{num_word(b)}", "s: str", "int", statement,
                    ("1 <= s.length <= 8", f"s consists of the digits 0 to {b - 1}"),
                    f"value = 0\nfor c in s:\n    value = value * {b} + int(c)\nreturn value",
                    lambda rng: {"s": word(rng, 1, 8, "0123456789"[:b])}, ({"s": "0"}, {"s": "10"}))
    if kind == "digits":
        statement = (f"Given a non-negative integer n, return the list of its digits in base {b}, most significant "
                     f"first (0 gives [0]).")
        return Spec(f"digitsInBase{num_word(b)}", "n: int", "List[int]", statement, ("0 <= n <= 5000",),
                    to_digits + "return digits[::-1] or [0]", lambda rng: {"n": rng.randint(0, 5000)},
                    ({"n": 0}, {"n": b + 1}))
    statement = f"Given a non-negative integer n, return the sum of its digits when n is written in base {b}."
    return Spec(f"digitSumInBase{num_word(b)}", "n: int", "int", statement, ("0 <= n <= 5000",),
                to_digits + "return sum(digits)", lambda rng: {"n": rng.randint(0, 5000)}, ({"n": 0}, {"n": b - 1}))


# ----------------------------------------------------------------------------------------------
# Easy families: small simulations

POINTS = [(3, 1, 0), (2, 1, 0), (1, 0, -1), (5, 2, 0), (4, 2, 1), (3, 0, -2)]
RESULTS = [("points", p) for p in POINTS] + [("streak", "W"), ("streak", "L"), ("unbeaten", None), ("wins", None)]


@family("match_results", "easy", RESULTS)
def _match_results(v: tuple[str, Any]) -> Spec:
    kind, arg = v
    given = ("You are given a string results describing the matches of a team, one character per match: 'W' for a "
             "win, 'D' for a draw and 'L' for a loss.")
    if kind == "points":
        w, d, l = arg
        what = f"the team's total points, where a win is worth {w} point{'s' if w != 1 else ''}, a draw {d} and a loss {l}"
        method, body = f"totalPoints{num_word(w)}{num_word(d)}{num_word(l)}", \
            f"value = {{'W': {w}, 'D': {d}, 'L': {l}}}\nreturn sum(value[c] for c in results)"
    elif kind == "streak":
        name = "wins" if arg == "W" else "losses"
        what = f"the length of the longest run of consecutive {name} (0 if there is none)"
        method = f"longest{'Win' if arg == 'W' else 'Losing'}Streak"
        body = f"best = run = 0\nfor c in results:\n    run = run + 1 if c == '{arg}' else 0\n    best = max(best, run)\nreturn best"
    elif kind == "unbeaten":
        what = "the length of the longest run of consecutive matches without a loss"
        method = "longestUnbeatenRun"
        body = "best = run = 0\nfor c in results:\n    run = run + 1 if c != 'L' else 0\n    best = max(best, run)\nreturn best"
    else:
        what = "a list [wins, draws, losses] with the number of matches of each kind"
        method, body = "winDrawLoss", "return [results.count('W'), results.count('D'), results.count('L')]"
    return Spec(method, "results: str", "List[int]" if kind == "wins" else "int", f"{given} Return {what}.",
                ("0 <= results.length <= 12", "results consists of the characters 'W', 'D' and 'L'"), body,
                lambda rng: {"results": word(rng, 1, 12, "WWDLL")}, ({"results": ""}, {"results": "WWDLW"}))


MOVES = {
    "final": ("the final position as a list [x, y]", "List[int]", "finalPosition", "return [x, y]"),
    "dist": ("the Manhattan distance |x| + |y| between the final position and the origin", "int", "distanceFromStart",
             "return abs(x) + abs(y)"),
    "home": ("True if the robot ends where it started, otherwise False", "bool", "returnsHome", "return x == 0 and y == 0"),
    "far": ("the largest Manhattan distance from the origin reached at any moment (the start counts as 0)", "int",
            "farthestDistance", "return best"),
    "visits": ("the number of times the robot is back at the origin after a move", "int", "originVisits",
               "return visits"),
    "top": ("the largest y coordinate reached at any moment (the start counts, so the answer is at least 0)", "int",
            "highestPoint", "return top"),
}


@family("robot_moves", "easy", list(MOVES))
def _robot_moves(v: str) -> Spec:
    phrase, returns, method, tail = MOVES[v]
    walk = ("x = y = best = visits = top = 0\nfor m in moves:\n    if m == 'U':\n        y += 1\n    elif m == 'D':\n"
            "        y -= 1\n    elif m == 'L':\n        x -= 1\n    else:\n        x += 1\n    best = max(best, abs(x) + abs(y))\n"
            "    visits += x == 0 and y == 0\n    top = max(top, y)\n")
    statement = ("A robot starts at the origin (0, 0) and follows the string moves: 'U' moves it one step up (y + 1), "
                 "'D' one step down (y - 1), 'L' one step left (x - 1) and 'R' one step right (x + 1). "
                 f"Return {phrase}.")
    return Spec(method, "moves: str", returns, statement,
                ("0 <= moves.length <= 12", "moves consists of the characters 'U', 'D', 'L' and 'R'"), walk + tail,
                lambda rng: {"moves": word(rng, 1, 12, "UDLR")}, ({"moves": ""}, {"moves": "UDLR"}, {"moves": "UUR"}))


LEDGER = [("final", 0), ("final", 100), ("min", 0), ("min", 50), ("max", 20), ("negatives", 0), ("negatives", 30),
          ("firstneg", 0), ("firstneg", 25), ("deposits", 0)]


@family("bank_ledger", "easy", LEDGER)
def _bank_ledger(v: tuple[str, int]) -> Spec:
    kind, start = v
    given = (f"An account starts with a balance of {start}. You are given the list changes of its transactions in "
             f"order (a positive value is a deposit, a negative value a withdrawal, applied to the balance one after "
             f"another).")
    what, returns, method, body = {
        "final": ("the final balance", "int", f"finalBalanceFrom{num_word(start)}", f"return {start} + sum(changes)"),
        "min": ("the smallest balance the account ever has, including the starting balance", "int",
                f"lowestBalanceFrom{num_word(start)}",
                f"b = low = {start}\nfor c in changes:\n    b += c\n    low = min(low, b)\nreturn low"),
        "max": ("the largest balance the account ever has, including the starting balance", "int",
                f"highestBalanceFrom{num_word(start)}",
                f"b = high = {start}\nfor c in changes:\n    b += c\n    high = max(high, b)\nreturn high"),
        "negatives": ("how many transactions leave the balance below zero", "int",
                      f"countOverdraftsFrom{num_word(start)}",
                      f"b, count = {start}, 0\nfor c in changes:\n    b += c\n    count += b < 0\nreturn count"),
        "firstneg": ("the index of the first transaction after which the balance is below zero, or -1 if that never "
                     "happens", "int", f"firstOverdraftFrom{num_word(start)}",
                     f"b = {start}\nfor i, c in enumerate(changes):\n    b += c\n    if b < 0:\n        return i\nreturn -1"),
        "deposits": ("the total amount deposited (the sum of the positive changes)", "int", "totalDeposits",
                     "return sum(c for c in changes if c > 0)"),
    }[kind]
    return Spec(method, "changes: List[int]", returns, f"{given} Return {what}.",
                ("0 <= changes.length <= 10", "-60 <= changes[i] <= 60"), body,
                lambda rng: {"changes": int_list(rng, -60, 60, 1, 10)}, ({"changes": []}, {"changes": [-10, 5]}))


STRING_PAIRS = {
    "hamming": ("the number of positions at which s and t differ (they have the same length)", "int",
                "hammingDistance", "return sum(1 for a, b in zip(s, t) if a != b)", True),
    "merge": ("a string that alternates the characters of s and t (s[0], t[0], s[1], t[1], ...); when one string runs "
              "out, the rest of the other follows", "str", "mergeAlternately",
              "out = []\nfor i in range(max(len(s), len(t))):\n    out.append(s[i:i + 1] + t[i:i + 1])\nreturn ''.join(out)", False),
    "common": ("a string of the distinct letters that occur in both s and t, in alphabetical order", "str",
               "commonLetters", "return ''.join(sorted(set(s) & set(t)))", False),
    "only_s": ("the characters of s that do not occur in t, in their original order", "str", "lettersOnlyInFirst",
               "return ''.join(c for c in s if c not in t)", False),
    "anagram": ("True if t is a rearrangement of the letters of s (an anagram), otherwise False", "bool", "isAnagram",
                "return sorted(s) == sorted(t)", False),
    "prefix": ("the longest common prefix of s and t", "str", "commonPrefix",
               "i = 0\nwhile i < min(len(s), len(t)) and s[i] == t[i]:\n    i += 1\nreturn s[:i]", False),
    "rotation": ("True if t can be obtained by rotating s (moving some characters from the front of s to its end), "
                 "otherwise False", "bool", "isRotation", "return len(s) == len(t) and t in s + s", False),
    "longer": ("the longer of the two strings, or s if they have the same length", "str", "longerString",
               "return t if len(t) > len(s) else s", False),
    "contains": ("True if t occurs as a contiguous substring of s, otherwise False", "bool", "containsSubstring",
                 "return t in s", False),
    "sameset": ("True if s and t use exactly the same set of letters (counts do not matter), otherwise False", "bool",
                "sameLetterSet", "return set(s) == set(t)", False),
}


@family("string_pairs", "easy", list(STRING_PAIRS))
def _string_pairs(v: str) -> Spec:
    phrase, returns, method, body, same_len = STRING_PAIRS[v]

    def gen(rng: random.Random) -> Inputs:
        s = word(rng, 1, 7, "abcde")
        roll = rng.random()
        if same_len:
            t = "".join(c if rng.random() < 0.5 else rng.choice("abcde") for c in s)
        elif roll < 0.25:  # related strings so the True answers and long prefixes actually occur
            t = "".join(rng.sample(s, len(s)))
        elif roll < 0.5:
            k = rng.randint(0, len(s))
            t = s[k:] + s[:k]
        elif roll < 0.7:
            t = s[rng.randint(0, len(s) - 1):][: rng.randint(1, len(s))]
        else:
            t = word(rng, 1, 7, "abcde")
        return {"s": s, "t": t}

    constraints = ("1 <= s.length == t.length <= 7",) if same_len else ("1 <= s.length, t.length <= 7",)
    return Spec(method, "s: str, t: str", returns, f"Given two strings s and t of lowercase letters, return {phrase}.",
                constraints + ("s and t consist of the letters 'a' to 'e'",), body, gen,
                ({"s": "abc", "t": "abc"}, {"s": "abcd", "t": "dcba"})
                + (() if same_len else ({"s": "aab", "t": "abb"}, {"s": "abcde", "t": "bc"})))


LEAP = "(y % 4 == 0 and y % 100 != 0) or y % 400 == 0"
DATES = {
    "leap": ("y: int", "True if year y is a leap year, otherwise False", "bool", "isLeapYear", f"return {LEAP}"),
    "yeardays": ("y: int", "the number of days in year y", "int", "daysInYear", f"return 366 if {LEAP} else 365"),
    "monthdays": ("y: int, m: int", "the number of days in month m (1 = January, ..., 12 = December) of year y", "int",
                  "daysInMonth",
                  f"if m == 2:\n    return 29 if {LEAP} else 28\nreturn 30 if m in (4, 6, 9, 11) else 31"),
    "dayofyear": ("y: int, m: int, d: int", "the day of the year of the date y-m-d (January 1st is day 1)", "int",
                  "dayOfYear",
                  f"days = [31, 29 if {LEAP} else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]\nreturn sum(days[:m - 1]) + d"),
    "leapcount": ("a: int, b: int", "the number of leap years y with a <= y <= b", "int", "countLeapYears",
                  "return sum(1 for y in range(a, b + 1) if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0)"),
    "century": ("y: int", "the century of year y (years 1 to 100 are century 1, 101 to 200 century 2, and so on)",
                "int", "centuryOf", "return (y + 99) // 100"),
}


@family("calendar_dates", "easy", list(DATES))
def _calendar_dates(v: str) -> Spec:
    params, phrase, returns, method, body = DATES[v]
    rule = ("A year is a leap year if it is divisible by 4, except years divisible by 100, which are leap years only if "
            "they are also divisible by 400. ")

    def year(rng: random.Random) -> int:
        return rng.choice([rng.randint(1800, 2100), 4 * rng.randint(450, 525), 100 * rng.randint(16, 24)])

    if v == "monthdays":
        gen: Generator = lambda rng: {"y": year(rng), "m": rng.randint(1, 12)}  # noqa: E731
        constraints: tuple[str, ...] = ("1800 <= y <= 2400", "1 <= m <= 12")
        edges: tuple[Inputs, ...] = ({"y": 1900, "m": 2}, {"y": 2000, "m": 2})
    elif v == "dayofyear":
        gen = lambda rng: {"y": year(rng), "m": rng.randint(1, 12), "d": rng.randint(1, 28)}  # noqa: E731
        constraints = ("1800 <= y <= 2400", "1 <= m <= 12", "d is a valid day of month m in year y")
        edges = ({"y": 2001, "m": 1, "d": 1}, {"y": 2024, "m": 12, "d": 31})
    elif v == "leapcount":
        def gen(rng: random.Random) -> Inputs:
            a = year(rng)
            return {"a": a, "b": a + rng.randint(0, 120)}

        constraints, edges = ("1800 <= a <= b <= 2600",), ({"a": 1900, "b": 1900}, {"a": 1896, "b": 1904})
    else:
        gen = lambda rng: {"y": year(rng) if v != "century" else rng.randint(1, 2500)}  # noqa: E731
        constraints = ("1 <= y <= 2500",)
        edges = ({"y": 2000}, {"y": 1900}, {"y": 100})
    return Spec(method, params, returns, f"{rule if 'century' not in v else ''}Return {phrase}.", constraints, body,
                gen, edges)


# ----------------------------------------------------------------------------------------------
# Medium families: sorting with keys, runs, prefix sums, two pointers, simple DP, intervals

SORTS = {
    "abs": ("nums", "by absolute value, and by value when two absolute values are equal", "sortByAbsoluteValue",
            "return sorted(nums, key=lambda x: (abs(x), x))"),
    "lastdigit": ("nums", "by last decimal digit, and by value when two last digits are equal", "sortByLastDigit",
                  "return sorted(nums, key=lambda x: (x % 10, x))"),
    "desc": ("nums", "in decreasing order", "sortDescending", "return sorted(nums, reverse=True)"),
    "evenfirst": ("nums", "so that all even numbers come first in increasing order, followed by all odd numbers in "
                  "increasing order", "evensThenOdds", "return sorted(nums, key=lambda x: (x % 2, x))"),
    "bits": ("nums", "by the number of 1 bits in their binary representation, and by value when those counts are equal",
             "sortByBitCount", "return sorted(nums, key=lambda x: (bin(x).count('1'), x))"),
    "near5": ("nums", "by their distance to 5 (|x - 5|), and by value when two distances are equal", "sortByDistanceToFive",
              "return sorted(nums, key=lambda x: (abs(x - 5), x))"),
    "digitsum": ("nums", "by the sum of their decimal digits, and by value when two digit sums are equal",
                 "sortByDigitSum", "return sorted(nums, key=lambda x: (sum(int(d) for d in str(x)), x))"),
    "len_alpha": ("words", "by length, and alphabetically when two words have the same length", "sortByLengthThenAlpha",
                  "return sorted(words, key=lambda w: (len(w), w))"),
    "lastchar": ("words", "by their last letter, and alphabetically when two last letters are equal", "sortByLastLetter",
                 "return sorted(words, key=lambda w: (w[-1], w))"),
    "longfirst": ("words", "by length from longest to shortest, and alphabetically when two words have the same length",
                  "sortLongestFirst", "return sorted(words, key=lambda w: (-len(w), w))"),
    "vowels": ("words", "by the number of vowels (a, e, i, o, u) they contain, and alphabetically when two counts are "
               "equal", "sortByVowelCount", "return sorted(words, key=lambda w: (sum(c in 'aeiou' for c in w), w))"),
}


@family("sort_by_key", "medium", list(SORTS))
def _sort_by_key(v: str) -> Spec:
    arg, how, method, body = SORTS[v]
    if arg == "nums":
        lo = 0 if v in ("lastdigit", "bits", "digitsum") else -20
        return Spec(method, "nums: List[int]", "List[int]", f"Given an integer array nums, return its elements sorted {how}.",
                    ("0 <= nums.length <= 10", f"{lo} <= nums[i] <= 60"), body, nums_gen(lo, 60),
                    ({"nums": []}, {"nums": [13, 3, 8, 5, 21]}))
    return Spec(method, "words: List[str]", "List[str]", f"Given a list of lowercase words, return the words sorted {how}.",
                ("0 <= words.length <= 8", "1 <= words[i].length <= 8"), body,
                lambda rng: {"words": word_list(rng, 1, 8)}, ({"words": []}, {"words": ["bee", "ant", "zebra", "cat"]}))


RUNS = {
    "encode": ("the run-length encoding of s: every maximal run of equal characters becomes the character followed by "
               "the length of the run, e.g. \"aaabcc\" becomes \"a3b1c2\"", "str", "runLengthEncode",
               "out, i = [], 0\nwhile i < len(s):\n    j = i\n    while j < len(s) and s[j] == s[i]:\n        j += 1\n"
               "    out.append(s[i] + str(j - i))\n    i = j\nreturn ''.join(out)"),
    "compress": ("the compressed form of s: every maximal run of equal characters becomes the character followed by the "
                 "length of the run, but the length is omitted when it is 1, e.g. \"aaabcc\" becomes \"a3bc2\"", "str",
                 "compressRuns",
                 "out, i = [], 0\nwhile i < len(s):\n    j = i\n    while j < len(s) and s[j] == s[i]:\n        j += 1\n"
                 "    out.append(s[i] + (str(j - i) if j - i > 1 else ''))\n    i = j\nreturn ''.join(out)"),
    "longest": ("the length of the longest run of equal adjacent characters in s (0 for an empty string)", "int",
                "longestRun",
                "best = run = 0\nfor i, c in enumerate(s):\n    run = run + 1 if i > 0 and s[i - 1] == c else 1\n"
                "    best = max(best, run)\nreturn best"),
    "count": ("the number of maximal runs of equal adjacent characters in s (\"aabccc\" has 3 runs)", "int", "countRuns",
              "return sum(1 for i in range(len(s)) if i == 0 or s[i] != s[i - 1])"),
    "lengths": ("a list with the length of every maximal run of equal adjacent characters in s, from left to right",
                "List[int]", "runLengths",
                "out = []\nfor i, c in enumerate(s):\n    if i > 0 and s[i - 1] == c:\n        out[-1] += 1\n    else:\n"
                "        out.append(1)\nreturn out"),
    "longestchar": ("the character of the longest run of equal adjacent characters in s (the leftmost such run if there "
                    "is a tie)", "str", "longestRunCharacter",
                    "best, best_c, run = 0, '', 0\nfor i, c in enumerate(s):\n    run = run + 1 if i > 0 and s[i - 1] == c else 1\n"
                    "    if run > best:\n        best, best_c = run, c\nreturn best_c"),
    "decode": ("the decoded string, where s is a run-length encoding made of pairs of a letter followed by a single "
               "digit (the number of repetitions), e.g. \"a3b1c2\" decodes to \"aaabcc\"", "str", "runLengthDecode",
               "return ''.join(s[i] * int(s[i + 1]) for i in range(0, len(s), 2))"),
    "long_b": ("the length of the longest run of consecutive 'b' characters in s (0 if s has no 'b')", "int",
               "longestRunOfB",
               "best = run = 0\nfor c in s:\n    run = run + 1 if c == 'b' else 0\n    best = max(best, run)\nreturn best"),
}


@family("run_length", "medium", list(RUNS))
def _run_length(v: str) -> Spec:
    phrase, returns, method, body = RUNS[v]
    if v == "decode":
        gen: Generator = lambda rng: {"s": "".join(rng.choice("abc") + str(rng.randint(1, 4)) for _ in range(rng.randint(1, 4)))}  # noqa: E731
        constraints: tuple[str, ...] = ("2 <= s.length <= 8", "s alternates lowercase letters and digits 1 to 9, starting with a letter")
        edges: tuple[Inputs, ...] = ({"s": "a1"}, {"s": "z9"})
    else:
        nonempty = v == "longestchar"
        gen = lambda rng: {"s": "".join(rng.choice("abc") * rng.randint(1, 3) for _ in range(rng.randint(1, 5)))}  # noqa: E731
        constraints = (f"{int(nonempty)} <= s.length <= 15", "s consists of lowercase English letters")
        edges = ({"s": "a"}, {"s": "abbccc"}) if nonempty else ({"s": ""}, {"s": "abbccc"})
    return Spec(method, "s: str", returns, f"Given a string s, return {phrase}.", constraints, body, gen, edges)


RANGE_QUERIES = {
    "sum": ("the sum of nums[l..r]", "rangeSums", "sum(nums[l:r + 1])"),
    "max": ("the largest element of nums[l..r]", "rangeMaxima", "max(nums[l:r + 1])"),
    "min": ("the smallest element of nums[l..r]", "rangeMinima", "min(nums[l:r + 1])"),
    "even": ("the number of even elements in nums[l..r]", "rangeEvenCounts", "sum(1 for x in nums[l:r + 1] if x % 2 == 0)"),
    "spread": ("the largest minus the smallest element of nums[l..r]", "rangeSpreads",
               "max(nums[l:r + 1]) - min(nums[l:r + 1])"),
    "positive": ("the sum of the positive elements of nums[l..r] (0 if there are none)", "rangePositiveSums",
                 "sum(x for x in nums[l:r + 1] if x > 0)"),
    "len": ("the number of elements of nums[l..r] that are greater than nums[l]", "rangeCountAboveFirst",
            "sum(1 for x in nums[l:r + 1] if x > nums[l])"),
    "xor": ("the bitwise XOR of nums[l..r]", "rangeXors", "reduce(lambda a, b: a ^ b, nums[l:r + 1])"),
}


@family("range_queries", "medium", list(RANGE_QUERIES))
def _range_queries(v: str) -> Spec:
    phrase, method, expr = RANGE_QUERIES[v]
    lo = 0 if v == "xor" else -20

    def gen(rng: random.Random) -> Inputs:
        nums = int_list(rng, lo, 20, 1, 10)
        queries = []
        for _ in range(rng.randint(1, 5)):
            l = rng.randint(0, len(nums) - 1)
            queries.append([l, rng.randint(l, len(nums) - 1)])
        return {"nums": nums, "queries": queries}

    return Spec(method, "nums: List[int], queries: List[List[int]]", "List[int]",
                f"You are given an integer array nums and a list of queries, where queries[i] = [l, r] with "
                f"0 <= l <= r < nums.length, and nums[l..r] denotes the elements with indices l to r inclusive. For each "
                f"query compute {phrase}. Return the list of answers in the order of the queries.",
                ("1 <= nums.length <= 10", f"{lo} <= nums[i] <= 20", "1 <= queries.length <= 5",
                 "0 <= l <= r < nums.length"),
                f"return [{expr} for l, r in queries]", gen,
                ({"nums": [4], "queries": [[0, 0]]}, {"nums": [1, 2, 3, 4], "queries": [[0, 3], [1, 2], [3, 3]]}))


SUBARRAYS = {
    "maxsum": ("the largest sum of a non-empty contiguous subarray of nums", "maxSubarraySum",
               "best = cur = nums[0]\nfor x in nums[1:]:\n    cur = max(x, cur + x)\n    best = max(best, cur)\nreturn best"),
    "minsum": ("the smallest sum of a non-empty contiguous subarray of nums", "minSubarraySum",
               "best = cur = nums[0]\nfor x in nums[1:]:\n    cur = min(x, cur + x)\n    best = min(best, cur)\nreturn best"),
    "inc": ("the length of the longest contiguous strictly increasing subarray", "longestIncreasingRun",
            "best = run = 1\nfor i in range(1, len(nums)):\n    run = run + 1 if nums[i] > nums[i - 1] else 1\n"
            "    best = max(best, run)\nreturn best"),
    "nondec": ("the length of the longest contiguous non-decreasing subarray", "longestNonDecreasingRun",
               "best = run = 1\nfor i in range(1, len(nums)):\n    run = run + 1 if nums[i] >= nums[i - 1] else 1\n"
               "    best = max(best, run)\nreturn best"),
    "dec": ("the length of the longest contiguous strictly decreasing subarray", "longestDecreasingRun",
            "best = run = 1\nfor i in range(1, len(nums)):\n    run = run + 1 if nums[i] < nums[i - 1] else 1\n"
            "    best = max(best, run)\nreturn best"),
    "pos": ("the length of the longest contiguous subarray whose elements are all strictly positive (0 if there is "
            "none)", "longestPositiveRun",
            "best = run = 0\nfor x in nums:\n    run = run + 1 if x > 0 else 0\n    best = max(best, run)\nreturn best"),
    "alt": ("the length of the longest contiguous subarray in which adjacent elements alternate in parity (even, odd, "
            "even, ... or odd, even, odd, ...)", "longestAlternatingParity",
            "best = run = 1\nfor i in range(1, len(nums)):\n    run = run + 1 if (nums[i] - nums[i - 1]) % 2 else 1\n"
            "    best = max(best, run)\nreturn best"),
    "posum": ("the largest sum of a contiguous subarray made only of strictly positive elements (0 if there is none)",
              "maxPositiveBlockSum",
              "best = cur = 0\nfor x in nums:\n    cur = cur + x if x > 0 else 0\n    best = max(best, cur)\nreturn best"),
    "zerosum": ("the number of non-empty contiguous subarrays whose sum is 0", "countZeroSumSubarrays",
                "seen, total, count = {0: 1}, 0, 0\nfor x in nums:\n    total += x\n    count += seen.get(total, 0)\n"
                "    seen[total] = seen.get(total, 0) + 1\nreturn count"),
}


@family("subarray_runs", "medium", list(SUBARRAYS))
def _subarray_runs(v: str) -> Spec:
    phrase, method, body = SUBARRAYS[v]
    lo, hi = (-3, 3) if v == "zerosum" else (-10, 10)
    return Spec(method, "nums: List[int]", "int", f"Given a non-empty integer array nums, return {phrase}.",
                ("1 <= nums.length <= 12", f"{lo} <= nums[i] <= {hi}"), body, nums_gen(lo, hi, 1, 12),
                ({"nums": [-2]}, {"nums": [1, 2, -1, 3, 0]}))


STEPS = [(1, 2), (1, 3), (1, 2, 3), (2, 3), (1, 4), (1, 2, 4), (2, 5), (1, 5), (3, 4), (1, 3, 5)]


@family("step_ways", "medium", STEPS)
def _step_ways(v: tuple[int, ...]) -> Spec:
    steps = ", ".join(map(str, v[:-1])) + f" or {v[-1]}"
    return Spec(
        f"waysToClimbWith{''.join(num_word(s) for s in v)}", "n: int", "int",
        f"You are climbing a staircase with n steps. Each move climbs exactly {steps} steps. Return the number of "
        f"distinct sequences of moves that reach exactly step n (for n = 0 there is one way: make no move).",
        ("0 <= n <= 30",),
        f"ways = [1] + [0] * n\nfor i in range(1, n + 1):\n    ways[i] = sum(ways[i - s] for s in {v!r} if s <= i)\nreturn ways[n]",
        lambda rng: {"n": rng.randint(1, 30)}, ({"n": 0}, {"n": 1}, {"n": v[-1] + 1}),
    )


INTERVALS = {
    "merge": ("the union of the intervals as a list of disjoint intervals sorted by start, where intervals that overlap "
              "or touch (share an endpoint) are merged into one", "List[List[int]]", "mergeIntervals",
              "out = []\nfor a, b in sorted(intervals):\n    if out and a <= out[-1][1]:\n        out[-1][1] = max(out[-1][1], b)\n"
              "    else:\n        out.append([a, b])\nreturn out"),
    "covered": ("the total length covered by the union of the intervals (the interval [a, b] has length b - a)", "int",
                "coveredLength",
                "total, end = 0, None\nfor a, b in sorted(intervals):\n    if end is None or a > end:\n        total += b - a\n"
                "        end = b\n    elif b > end:\n        total += b - end\n        end = b\nreturn total"),
    "overlap": ("True if any two intervals share at least one point, otherwise False", "bool", "anyOverlap",
                "s = sorted(intervals)\nreturn any(s[i + 1][0] <= s[i][1] for i in range(len(s) - 1))"),
    "depth": ("the largest number of intervals that contain a common integer point", "int", "maxOverlapDepth",
              "if not intervals:\n    return 0\nreturn max(sum(1 for a, b in intervals if a <= p <= b) "
              "for p in range(min(a for a, _ in intervals), max(b for _, b in intervals) + 1))"),
    "point5": ("the number of intervals that contain the point 5", "int", "countContainingFive",
               "return sum(1 for a, b in intervals if a <= 5 <= b)"),
    "gaps": ("the total length of the gaps between the union of the intervals, from the smallest start to the largest "
             "end (0 if the union has no gap)", "int", "totalGapLength",
             "if not intervals:\n    return 0\ncovered, end = 0, None\nfor a, b in sorted(intervals):\n"
             "    if end is None or a > end:\n        covered += b - a\n        end = b\n    elif b > end:\n"
             "        covered += b - end\n        end = b\nreturn max(b for _, b in intervals) - min(a for a, _ in intervals) - covered"),
    "pairs": ("the number of pairs of intervals (i < j) that share at least one point", "int", "countOverlappingPairs",
              "n = len(intervals)\nreturn sum(1 for i in range(n) for j in range(i + 1, n) "
              "if max(intervals[i][0], intervals[j][0]) <= min(intervals[i][1], intervals[j][1]))"),
    "longest": ("the length of the longest interval in the union of the intervals, where intervals that overlap or "
                "touch are merged (0 if there are no intervals)", "int", "longestMergedLength",
                "best, cur = 0, None\nfor a, b in sorted(intervals):\n    if cur and a <= cur[1]:\n        cur[1] = max(cur[1], b)\n"
                "    else:\n        cur = [a, b]\n    best = max(best, cur[1] - cur[0])\nreturn best"),
}


@family("intervals", "medium", list(INTERVALS))
def _intervals(v: str) -> Spec:
    phrase, returns, method, body = INTERVALS[v]

    def gen(rng: random.Random) -> Inputs:
        out = []
        for _ in range(rng.randint(1, 5)):
            a = rng.randint(0, 12)
            out.append([a, a + rng.randint(0, 5)])
        return {"intervals": out}

    return Spec(method, "intervals: List[List[int]]", returns,
                f"You are given a list of closed intervals, where intervals[i] = [start, end] with start <= end. "
                f"Return {phrase}.", ("0 <= intervals.length <= 5", "0 <= start <= end <= 20"), body, gen,
                ({"intervals": []}, {"intervals": [[1, 3], [3, 5], [8, 9]]}))


BRACKETS = {
    "all": ("()[]{}", "True if s is balanced, otherwise False", "bool", "isBalancedAll"),
    "angle": ("<>{}", "True if s is balanced, otherwise False", "bool", "isBalancedAngleCurly"),
    "unmatched": ("()", "the number of closing brackets that have no matching opening bracket before them (every "
                  "opening bracket can match at most one later closing bracket)", "int", "countUnmatchedClosing"),
    "score": ("()", "the score of s, where s is guaranteed to be balanced: \"()\" has score 1, a concatenation AB has "
              "score A + B, and (A) has score 2 * A (the empty string has score 0)", "int", "bracketScore"),
    "depth": ("()", "the maximum nesting depth of s, where s is guaranteed to be balanced (\"(())()\" has depth 2)",
              "int", "maxNestingDepth"),
    "fix": ("()", "the minimum number of brackets that must be inserted (anywhere) to make s balanced", "int",
            "minInsertionsToBalance"),
    "groups": ("()", "the number of top-level groups of s, where s is guaranteed to be balanced (\"(())()\" has 2)",
               "int", "countTopLevelGroups"),
    "prefix": ("()", "the length of the longest prefix of s that is balanced (0 if only the empty prefix is)", "int",
               "longestBalancedPrefix"),
}


@family("brackets", "medium", list(BRACKETS))
def _brackets(v: str) -> Spec:
    pairs, phrase, returns, method = BRACKETS[v]
    opens, closes = pairs[::2], pairs[1::2]
    if returns == "bool":
        body = (f"match = {dict(zip(closes, opens))!r}\nstack = []\nfor c in s:\n    if c in match:\n"
                f"        if not stack or stack.pop() != match[c]:\n            return False\n    else:\n"
                f"        stack.append(c)\nreturn not stack")
    elif v == "unmatched":
        body = ("open_ = unmatched = 0\nfor c in s:\n    if c == '(':\n        open_ += 1\n    elif open_:\n        open_ -= 1\n"
                "    else:\n        unmatched += 1\nreturn unmatched")
    elif v == "score":
        body = ("stack = [0]\nfor c in s:\n    if c == '(':\n        stack.append(0)\n    else:\n        inner = stack.pop()\n"
                "        stack[-1] += max(2 * inner, 1)\nreturn stack[0]")
    elif v == "depth":
        body = "depth = best = 0\nfor c in s:\n    depth += 1 if c == '(' else -1\n    best = max(best, depth)\nreturn best"
    elif v == "fix":
        body = ("open_ = added = 0\nfor c in s:\n    if c == '(':\n        open_ += 1\n    elif open_:\n        open_ -= 1\n"
                "    else:\n        added += 1\nreturn added + open_")
    elif v == "groups":
        body = "depth = groups = 0\nfor c in s:\n    depth += 1 if c == '(' else -1\n    groups += depth == 0\nreturn groups"
    else:
        body = ("depth = best = 0\nfor i, c in enumerate(s):\n    depth += 1 if c == '(' else -1\n    if depth < 0:\n"
                "        break\n    if depth == 0:\n        best = i + 1\nreturn best")
    balanced_only = v in ("depth", "groups", "score")

    def balanced(rng: random.Random, n: int) -> str:
        if n == 0:
            return ""
        k = rng.randint(0, n - 1)
        i = rng.randrange(len(opens))
        return opens[i] + balanced(rng, k) + closes[i] + balanced(rng, n - 1 - k)

    def gen(rng: random.Random) -> Inputs:
        s = balanced(rng, rng.randint(1, 5))
        if not balanced_only and rng.random() < 0.5:  # break it: drop, add or swap one bracket
            chars = list(s)
            i = rng.randrange(len(chars))
            roll = rng.random()
            if roll < 0.4:
                del chars[i]
            elif roll < 0.7:
                chars.insert(i, rng.choice(pairs))
            else:
                chars[i] = rng.choice(pairs)
            s = "".join(chars)
        return {"s": s}

    kinds = " ".join(f"'{o}{c}'" for o, c in zip(opens, closes))
    statement = (f"Given a string s consisting only of the bracket characters {', '.join(repr(c) for c in pairs)}, "
                 f"return {phrase}. A string is balanced when every opening bracket is closed by the matching closing "
                 f"bracket of the same kind ({kinds}) in the correct order.")
    return Spec(method, "s: str", returns, statement, ("0 <= s.length <= 12",), body, gen,
                ({"s": opens[0] + closes[0]}, {"s": closes[0] + opens[0]}) if not balanced_only
                else ({"s": ""}, {"s": "(())()"}))


WINDOWS = [("sums", 2), ("sums", 3), ("max", 2), ("max", 3), ("max", 4), ("min", 3), ("evensum", 2), ("evensum", 3),
           ("allpos", 2), ("maxdiff", 3)]


@family("sliding_window", "medium", WINDOWS)
def _sliding_window(v: tuple[str, int]) -> Spec:
    kind, k = v
    windows = f"[nums[i:i + {k}] for i in range(len(nums) - {k} + 1)]"
    what, returns, method, tail = {
        "sums": ("a list with the sum of every window, from left to right", "List[int]", f"windowSumsOf{num_word(k)}",
                 "return [sum(w) for w in windows]"),
        "max": ("the largest sum of any window", "int", f"maxWindowSumOf{num_word(k)}", "return max(sum(w) for w in windows)"),
        "min": ("the smallest sum of any window", "int", f"minWindowSumOf{num_word(k)}", "return min(sum(w) for w in windows)"),
        "evensum": ("the number of windows whose sum is even", "int", f"evenWindowsOf{num_word(k)}",
                    "return sum(1 for w in windows if sum(w) % 2 == 0)"),
        "allpos": ("the number of windows whose elements are all strictly positive", "int",
                   f"positiveWindowsOf{num_word(k)}", "return sum(1 for w in windows if all(x > 0 for x in w))"),
        "maxdiff": ("the largest value of max(window) - min(window) over all windows", "int",
                    f"maxWindowSpreadOf{num_word(k)}", "return max(max(w) - min(w) for w in windows)"),
    }[kind]
    return Spec(method, "nums: List[int]", returns,
                f"Given an integer array nums with at least {k} elements, consider every window of {k} consecutive "
                f"elements (nums[i..i + {k - 1}] for each valid i). Return {what}.",
                (f"{k} <= nums.length <= 12", "-10 <= nums[i] <= 10"), f"windows = {windows}\n{tail}",
                nums_gen(-10, 10, k, 12), ({"nums": list(range(1, k + 1))}, {"nums": [3, -1, 4, 1, -5, 9, 2][: max(k + 2, 5)]}))


GRID_PATHS = {
    "count": ("the number of different paths", "int", "countPaths",
              "ways = [[1] * n for _ in range(m)]\nfor i in range(1, m):\n    for j in range(1, n):\n"
              "        ways[i][j] = ways[i - 1][j] + ways[i][j - 1]\nreturn ways[m - 1][n - 1]"),
    "obstacles": ("the number of different paths that avoid every cell with value 1 (cells with value 0 are free; if the "
                  "start or the end is blocked the answer is 0)", "int", "countPathsAvoidingRocks", None),
    "minsum": ("the smallest possible sum of the values of the cells on the path (start and end included)", "int",
               "minPathSum", None),
    "maxsum": ("the largest possible sum of the values of the cells on the path (start and end included)", "int",
               "maxPathSum", None),
    "diag": ("the number of different paths", "int",
             "countPathsWithDiagonals",
             "ways = [[0] * n for _ in range(m)]\nfor i in range(m):\n    for j in range(n):\n        if i == 0 and j == 0:\n"
             "            ways[i][j] = 1\n        else:\n            ways[i][j] = (ways[i - 1][j] if i else 0) + (ways[i][j - 1] if j else 0) "
             "+ (ways[i - 1][j - 1] if i and j else 0)\nreturn ways[m - 1][n - 1]"),
    "mincount": ("the number of paths whose sum of cell values is the smallest possible", "int", "countCheapestPaths", None),
}
GRID_DP = {
    "obstacles": "m, n = len(grid), len(grid[0])\nways = [[0] * n for _ in range(m)]\nfor i in range(m):\n    for j in range(n):\n"
                 "        if grid[i][j] == 1:\n            continue\n        if i == 0 and j == 0:\n            ways[i][j] = 1\n"
                 "        else:\n            ways[i][j] = (ways[i - 1][j] if i else 0) + (ways[i][j - 1] if j else 0)\n"
                 "return ways[m - 1][n - 1]",
    "minsum": "m, n = len(grid), len(grid[0])\nbest = [[0] * n for _ in range(m)]\nfor i in range(m):\n    for j in range(n):\n"
              "        prev = [best[i - 1][j]] if i else []\n        prev += [best[i][j - 1]] if j else []\n"
              "        best[i][j] = grid[i][j] + (min(prev) if prev else 0)\nreturn best[m - 1][n - 1]",
    "maxsum": "m, n = len(grid), len(grid[0])\nbest = [[0] * n for _ in range(m)]\nfor i in range(m):\n    for j in range(n):\n"
              "        prev = [best[i - 1][j]] if i else []\n        prev += [best[i][j - 1]] if j else []\n"
              "        best[i][j] = grid[i][j] + (max(prev) if prev else 0)\nreturn best[m - 1][n - 1]",
    "mincount": "m, n = len(grid), len(grid[0])\nbest = [[0] * n for _ in range(m)]\ncount = [[0] * n for _ in range(m)]\n"
                "for i in range(m):\n    for j in range(n):\n        prev = ([(best[i - 1][j], count[i - 1][j])] if i else []) + "
                "([(best[i][j - 1], count[i][j - 1])] if j else [])\n        if not prev:\n"
                "            best[i][j], count[i][j] = grid[i][j], 1\n            continue\n        low = min(b for b, _ in prev)\n"
                "        best[i][j] = grid[i][j] + low\n        count[i][j] = sum(c for b, c in prev if b == low)\n"
                "return count[m - 1][n - 1]",
}


@family("grid_paths", "medium", list(GRID_PATHS))
def _grid_paths(v: str) -> Spec:
    phrase, returns, method, body = GRID_PATHS[v]
    moves = "each move goes one cell down or one cell right" + (" or one cell diagonally down-right" if v == "diag" else "")
    if body is not None:
        return Spec(method, "m: int, n: int", returns,
                    f"A robot starts in the top-left cell of an m x n grid and wants to reach the bottom-right cell; "
                    f"{moves}. Return {phrase}.", ("1 <= m, n <= 8",), body,
                    lambda rng: {"m": rng.randint(1, 8), "n": rng.randint(1, 8)}, ({"m": 1, "n": 1}, {"m": 3, "n": 3}))
    hi = 1 if v == "obstacles" else 3 if v == "mincount" else 9

    def gen(rng: random.Random) -> Inputs:
        m, n = rng.randint(1, 4), rng.randint(1, 4)
        if v == "obstacles":
            return {"grid": [[int(rng.random() < 0.25) for _ in range(n)] for _ in range(m)]}
        return {"grid": [int_list(rng, 0, hi, n, n) for _ in range(m)]}

    return Spec(method, "grid: List[List[int]]", returns,
                f"You are given an m x n integer matrix grid. A path starts in the top-left cell and ends in the "
                f"bottom-right cell, and {moves}. Return {phrase}.",
                ("1 <= m, n <= 4", f"0 <= grid[i][j] <= {hi}"), GRID_DP[v], gen,
                ({"grid": [[0]]}, {"grid": [[0, 1, 0], [0, 0, 0]]}))


STOCKS = [("one", 0), ("many", 0), ("fee", 1), ("fee", 2), ("fee", 3), ("drop", 0), ("bestday", 0), ("cooldown", 0)]


@family("stock_profit", "medium", STOCKS)
def _stock_profit(v: tuple[str, int]) -> Spec:
    kind, fee = v
    given = "You are given an array prices where prices[i] is the price of a stock on day i."
    what, method, body = {
        "one": ("the maximum profit from buying on one day and selling on a later day (0 if no profit is possible)",
                "maxProfitOneTrade",
                "best, low = 0, None\nfor p in prices:\n    if low is not None:\n        best = max(best, p - low)\n"
                "    low = p if low is None else min(low, p)\nreturn best"),
        "many": ("the maximum total profit when you may complete as many buy-then-sell trades as you like, holding at "
                 "most one share at a time (buying and selling on the same day is allowed)", "maxProfitManyTrades",
                 "return sum(max(0, prices[i] - prices[i - 1]) for i in range(1, len(prices)))"),
        "fee": (f"the maximum total profit when you may complete as many trades as you like, holding at most one share "
                f"at a time, and every completed trade (a buy followed by a sell) costs a fee of {fee}",
                f"maxProfitWithFee{num_word(fee)}",
                f"cash, hold = 0, None\nfor p in prices:\n    if hold is not None:\n        cash = max(cash, hold + p - {fee})\n"
                f"    hold = cash - p if hold is None else max(hold, cash - p)\nreturn cash"),
        "drop": ("the largest drop prices[i] - prices[j] over all days i < j (0 if the price never goes down)",
                 "largestDrop",
                 "best, high = 0, None\nfor p in prices:\n    if high is not None:\n        best = max(best, high - p)\n"
                 "    high = p if high is None else max(high, p)\nreturn best"),
        "bestday": ("the day on which to sell to make the largest profit from a single buy on an earlier day; if no "
                    "profit is possible return -1, and if several days give the same largest profit return the earliest",
                    "bestSellDay",
                    "best, day, low = 0, -1, None\nfor i, p in enumerate(prices):\n    if low is not None and p - low > best:\n"
                    "        best, day = p - low, i\n    low = p if low is None else min(low, p)\nreturn day"),
        "cooldown": ("the maximum total profit when you may complete as many trades as you like, holding at most one "
                     "share at a time, but after selling you cannot buy on the next day", "maxProfitWithCooldown",
                     "sold, held, rest = 0, None, 0\nfor p in prices:\n    prev_sold = sold\n"
                     "    sold = held + p if held is not None else 0\n    held = rest - p if held is None else max(held, rest - p)\n"
                     "    rest = max(rest, prev_sold)\nreturn max(sold, rest)"),
    }[kind]
    return Spec(method, "prices: List[int]", "int", f"{given} Return {what}.",
                ("1 <= prices.length <= 10", "1 <= prices[i] <= 30"), body,
                lambda rng: {"prices": int_list(rng, 1, 30, 1, 10)}, ({"prices": [7]}, {"prices": [9, 7, 4, 1]}))


SORTED_PAIRS = {
    "haspair": ("nums: List[int], target: int", "True if two elements at different indices sum to target, otherwise False",
                "bool", "hasPairWithSum",
                "i, j = 0, len(nums) - 1\nwhile i < j:\n    s = nums[i] + nums[j]\n    if s == target:\n        return True\n"
                "    if s < target:\n        i += 1\n    else:\n        j -= 1\nreturn False"),
    "countle": ("nums: List[int], target: int", "the number of index pairs (i, j) with i < j and nums[i] + nums[j] <= "
                "target", "int", "countPairsAtMost",
                "count, i, j = 0, 0, len(nums) - 1\nwhile i < j:\n    if nums[i] + nums[j] <= target:\n        count += j - i\n"
                "        i += 1\n    else:\n        j -= 1\nreturn count"),
    "closest": ("nums: List[int], target: int", "the sum of two elements at different indices that is closest to target "
                "(if two sums are equally close, return the smaller sum); nums has at least two elements", "int",
                "closestPairSum",
                "best = nums[0] + nums[1]\nfor i in range(len(nums)):\n    for j in range(i + 1, len(nums)):\n"
                "        s = nums[i] + nums[j]\n        if (abs(s - target), s) < (abs(best - target), best):\n            best = s\nreturn best"),
    "merge": ("a: List[int], b: List[int]", "a single list with all elements of a and b in non-decreasing order",
              "List[int]", "mergeSorted",
              "out, i, j = [], 0, 0\nwhile i < len(a) and j < len(b):\n    if a[i] <= b[j]:\n        out.append(a[i])\n        i += 1\n"
              "    else:\n        out.append(b[j])\n        j += 1\nreturn out + a[i:] + b[j:]"),
    "squares": ("nums: List[int]", "the squares of the elements of nums, in non-decreasing order", "List[int]",
                "sortedSquares", "return sorted(x * x for x in nums)"),
    "dedupe": ("nums: List[int]", "the distinct values of nums in increasing order", "List[int]", "uniqueSorted",
               "out = []\nfor x in nums:\n    if not out or out[-1] != x:\n        out.append(x)\nreturn out"),
    "subseq": ("s: str, t: str", "True if s is a subsequence of t (s can be obtained from t by deleting some characters "
               "without reordering the rest), otherwise False", "bool", "isSubsequence",
               "i = 0\nfor c in t:\n    if i < len(s) and s[i] == c:\n        i += 1\nreturn i == len(s)"),
}


@family("sorted_pairs", "medium", list(SORTED_PAIRS))
def _sorted_pairs(v: str) -> Spec:
    params, phrase, returns, method, body = SORTED_PAIRS[v]
    if params.startswith("s:"):
        def gen(rng: random.Random) -> Inputs:
            t = word(rng, 0, 10, "abc")
            s = "".join(c for c in t if rng.random() < 0.4) if rng.random() < 0.5 else word(rng, 0, 4, "abc")
            return {"s": s, "t": t}

        return Spec(method, params, returns, f"Given two strings s and t, return {phrase}.",
                    ("0 <= s.length <= 4", "0 <= t.length <= 10", "s and t consist of the letters 'a', 'b' and 'c'"),
                    body, gen, ({"s": "", "t": "abc"}, {"s": "ac", "t": "abc"}, {"s": "ca", "t": "abc"}))
    if params.startswith("a:"):
        gen = lambda rng: {"a": sorted(int_list(rng, -9, 9, 0, 6)), "b": sorted(int_list(rng, -9, 9, 0, 6))}  # noqa: E731
        return Spec(method, params, returns, f"Given two integer arrays a and b, each sorted in non-decreasing order, "
                    f"return {phrase}.", ("0 <= a.length, b.length <= 6", "-9 <= a[i], b[i] <= 9"), body, gen,
                    ({"a": [], "b": [1]}, {"a": [1, 3], "b": [2, 2, 4]}))
    nmin = 2 if v == "closest" else 0
    has_target = "target" in params

    def gen(rng: random.Random) -> Inputs:
        nums = sorted(int_list(rng, -10, 10, max(nmin, 1), 9))
        return {"nums": nums, "target": rng.randint(-12, 12)} if has_target else {"nums": nums}

    edges: tuple[Inputs, ...] = ({"nums": [-4, -1, 0, 3]},) + (({"nums": [1, 1], "target": 2},) if has_target else ({"nums": []},))
    if has_target:
        edges = ({"nums": [-4, -1, 0, 3], "target": -1}, {"nums": [1, 1], "target": 2})
    return Spec(method, params, returns, f"Given an integer array nums sorted in non-decreasing order"
                f"{' and an integer target' if has_target else ''}, return {phrase}.",
                (f"{nmin} <= nums.length <= 9", "-10 <= nums[i] <= 10") + (("-12 <= target <= 12",) if has_target else ()),
                body, gen, edges)


MATRIX = {
    "spiral": ("all elements of matrix in spiral order: start at the top-left corner, go right along the top row, then "
               "down the right column, then left along the bottom row, then up, and continue inward", "spiralOrder",
               "out = []\nm = [row[:] for row in matrix]\nwhile m:\n    out += m.pop(0)\n    m = [list(r) for r in zip(*m)][::-1]\nreturn out"),
    "snake": ("all elements of matrix read row by row, where even-indexed rows (0, 2, ...) are read left to right and "
              "odd-indexed rows right to left", "snakeOrder",
              "out = []\nfor i, row in enumerate(matrix):\n    out += row if i % 2 == 0 else row[::-1]\nreturn out"),
    "columns": ("all elements of matrix read column by column, each column from top to bottom", "columnOrder",
                "return [matrix[i][j] for j in range(len(matrix[0])) for i in range(len(matrix))]"),
    "diagonals": ("all elements of matrix grouped by anti-diagonal: first the elements with i + j == 0, then i + j == 1, "
                  "and so on, where within one anti-diagonal the elements are listed by increasing row index i",
                  "antiDiagonalOrder",
                  "m, n = len(matrix), len(matrix[0])\nreturn [matrix[i][d - i] for d in range(m + n - 1) "
                  "for i in range(m) if 0 <= d - i < n]"),
    "boundary": ("the elements on the border of matrix in clockwise order, starting at the top-left corner and listing "
                 "each cell once", "boundaryClockwise",
                 "m, n = len(matrix), len(matrix[0])\nif m == 1:\n    return list(matrix[0])\nif n == 1:\n    return [r[0] for r in matrix]\n"
                 "top = list(matrix[0])\nright = [matrix[i][n - 1] for i in range(1, m)]\nbottom = matrix[m - 1][:n - 1][::-1]\n"
                 "left = [matrix[i][0] for i in range(m - 2, 0, -1)]\nreturn top + right + bottom + left"),
    "reverse": ("all elements of matrix read from the bottom-right corner backwards: the last row right to left, then "
                "the row above it right to left, and so on", "reverseRowOrder",
                "return [x for row in matrix[::-1] for x in row[::-1]]"),
}


@family("matrix_traversal", "medium", list(MATRIX))
def _matrix_traversal(v: str) -> Spec:
    phrase, method, body = MATRIX[v]

    def gen(rng: random.Random) -> Inputs:
        m, n = rng.randint(1, 4), rng.randint(1, 4)
        return {"matrix": [int_list(rng, 1, 9, n, n) for _ in range(m)]}

    return Spec(method, "matrix: List[List[int]]", "List[int]",
                f"You are given an m x n integer matrix (a list of m rows of length n). Return a list of {phrase}.",
                ("1 <= m, n <= 4", "1 <= matrix[i][j] <= 9"), body, gen,
                ({"matrix": [[5]]}, {"matrix": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}))
