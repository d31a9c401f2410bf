"""MATH-style answers (data.source math500): the final \\boxed{...} of a response, checked for LaTeX equivalence.

Extraction: the content of the last \\boxed{...} (or \\fbox{...}), braces balanced; without one, the text after
the last "answer is" / "Answer:" on its line (Minerva's "The final answer is $x$. I hope it is correct."
included), its $...$ dropped.

Equivalence: first a normalised exact match (`normalize`: \\left/\\right, thin spaces, \\dfrac, degrees,
trailing units in \\text{...}, \\frac12 -> \\frac{1}{2}, "x = 5" -> "5", ...), then, when the package is
installed, math-verify (HuggingFace's LaTeX parser + sympy comparison: 0.5 = \\frac12, 2\\sqrt3 = \\sqrt{12},
(x+1)^2 = x^2+2x+1, lists in any order). Without math-verify only the normalised match runs: it undoes notation and
never does algebra, so it calls right answers wrong whenever the equality needs algebra (0.5 vs \\frac12):
accuracy undercounts; `checker()` says which is in use and the run logs it once.
"""
from __future__ import annotations

import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
from functools import cache, lru_cache

SOURCE = "math500"
_MAX_PARSED = 400  # longer answers skip math-verify: model garbage, not a final answer
_TIMEOUT = 5  # seconds per math-verify parse / comparison (sympy on "10^{10^{10}}" never returns by itself)
_WORKER_START = 120  # seconds a fresh checker process may take to import sympy and answer (a busy 2-core machine)

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_MARKER = re.compile(r"answer\s+is\b|\banswer\s*[:=]", re.IGNORECASE)
_THIN_SPACES = re.compile(r"\\\\|\\[!,;: ]|~")  # a LaTeX row break "\\\\" is matched whole and kept
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree")
_UNIT = re.compile(r"(?<=\S)\s*\\(?:text|mbox|textrm|mathrm)\s*\{\s*[A-Za-z][A-Za-z ]*\}(?:\^\{?\d\}?)?$")
_TEXT = re.compile(r"\\(?:text|textbf|textrm|mbox|mathrm)\s*\{([^{}]*)\}")
_VARIABLE_LHS = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=(?!=)")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_PLAIN_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)")
_log = logging.getLogger("selfimprove")


def last_boxed(text: str | None) -> str | None:
    """The content of the last \\boxed{...} / \\fbox{...}, nested braces kept; None without one (or unclosed).

    >>> last_boxed(r"so $\\boxed{\\frac{1}{2}}$, not \\boxed{3}? No: \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.")
    '\\\\left( 3, \\\\frac{\\\\pi}{2} \\\\right)'
    >>> last_boxed("no box"), last_boxed(r"\\boxed{unclosed")
    (None, None)
    """
    starts = list(_BOX.finditer(text or ""))
    if not starts:
        return None
    depth, begin = 0, starts[-1].end()
    for i in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth < 0:
            return text[begin:i]
    return None


def extract(text: str | None) -> str | None:
    """The final answer a response states (see the module doc); None when it states none.

    >>> extract("Final Answer: The final answer is $[2,5)$. I hope it is correct.")
    '[2,5)'
    >>> extract("x = 4, so the answer is 4."), extract(r"It is \\boxed{}."), extract("I give up")
    ('4', None, None)
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip() or None
    markers = list(_MARKER.finditer(text or ""))
    if not markers:
        return None
    rest = text[markers[-1].end():].lstrip(" :*")
    math = re.match(r"\s*(\$+|\\\()(.+?)(\$+|\\\))", rest)
    body = math.group(2) if math else rest.split("\n", 1)[0]
    body = body.strip().rstrip(".").strip()
    return body or None


def normalize(answer: str) -> str:
    """A canonical spelling for exact matching; conservative: it only undoes notation, never does algebra.

    >>> normalize(r"\\left( 3, \\dfrac{\\pi}{2} \\right)"), normalize(r"90^\\circ"), normalize(r"10,\\!080.")
    ('(3,\\\\frac{\\\\pi}{2})', '90', '10080')
    >>> normalize(r"\\frac43"), normalize(r"11\\sqrt2"), normalize(r"\\text{Evelyn}"), normalize(r"x = 5")
    ('\\\\frac{4}{3}', '11\\\\sqrt{2}', 'Evelyn', '5')
    >>> normalize(r"864 \\mbox{ inches}^2"), normalize(r"\\$32,\\!348"), normalize(r"\\cot x"), normalize("2.50")
    ('864', '32348', '\\\\cot x', '2.5')
    """
    s = answer.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left): len(s) - len(right)].strip()
    s = _LEFT_RIGHT.sub("", _THIN_SPACES.sub(lambda m: m.group(0) if m.group(0) == "\\\\" else " ", s))
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = _DEGREES.sub("", s)
    s = _UNIT.sub("", s.strip())  # "864 \mbox{ inches}^2" -> "864"; a whole "\text{east}" has nothing before it
    s = _TEXT.sub(r"\1", s)
    s = s.replace("\\$", "").replace("\\%", "").replace("%", "")
    s = _squeeze_spaces(s).rstrip(".")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\d)", r"\\sqrt{\1}", s)
    s = _VARIABLE_LHS.sub("", s)  # "x=5" states 5; a longer left side ("5x-7y+4=0") is the answer itself
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if _PLAIN_NUMBER.fullmatch(s):
        s = _canonical_number(s)
    return s


def equivalent(answer: str, reference: str) -> bool:
    """Is `answer` the same value as `reference`? Normalised match, then math-verify when installed.

    >>> equivalent(r"\\dfrac{1}{2}", r"\\frac12"), equivalent(r"\\frac{2}{3}", r"-\\frac23")
    (True, False)
    """
    if normalize(answer) == normalize(reference):
        return True
    if _math_verify() is None or len(answer) > _MAX_PARSED:
        return False
    return _verified(answer, reference)


def grade(text: str | None, reference: str | None) -> tuple[str | None, bool | None]:
    """(the normalised final answer, whether it is correct); the same contract as answers.grade.

    The normalised spelling is what is stored and voted on, so "\\dfrac12" and "\\frac{1}{2}" count as one
    answer in a majority vote.
    """
    answer = extract(text)
    shown = (normalize(answer) or None) if answer is not None else None  # "\\boxed{\\,}" states nothing
    if reference is None:
        return shown, None
    if shown is None:
        return None, False
    return shown, equivalent(answer, reference)


def checker() -> str:
    """Which equivalence check grades MATH answers here."""
    found = _math_verify()
    if found is None:
        return "normalised exact match only (math-verify not installed: right answers needing algebra count wrong)"
    return f"math-verify {found}"


def warn_if_undercounting() -> None:
    """Log once per process when MATH answers are graded without math-verify."""
    if _math_verify() is None:
        _warn_once()


# --- internals ------------------------------------------------------------------------------------------------------

@cache
def _warn_once() -> None:
    _log.warning("data.source math500: %s; install math-verify for a real equivalence check", checker())


@cache
def _math_verify() -> str | None:
    """math-verify's version when it imports, else None."""
    from importlib.metadata import version

    try:
        import math_verify  # noqa: F401
    except ImportError:
        return None
    return version("math-verify")


@lru_cache(maxsize=65536)
def _verified(answer: str, reference: str) -> bool:
    """math-verify's verdict. Its timeout is signal.alarm, which Python allows only in the main thread; in any
    other thread (Prefect may run tasks in worker threads) the check runs in a separate process instead, which
    is killed when it overruns: without a timeout one answer such as "10^{10^{10}}" would hang the stage."""
    if threading.current_thread() is threading.main_thread():
        return _verify_here(answer, reference)
    return _WORKER.check(answer, reference)


def _verify_here(answer: str, reference: str) -> bool:
    from math_verify import parse, verify

    # Wrapped in \\boxed{} so math-verify reads each whole string as one LaTeX answer.
    try:
        gold = parse("\\boxed{" + reference + "}", parsing_timeout=_TIMEOUT)
        guess = parse("\\boxed{" + answer + "}", parsing_timeout=_TIMEOUT)
        return bool(gold and guess and verify(gold, guess, timeout_seconds=_TIMEOUT))
    except Exception:  # noqa: BLE001 - a checker failure on odd model output is a wrong answer, not a crash
        return False


class _Worker:
    """One checker subprocess (`python -m selfimprove.tasks.math_answers`: no fork of a parent that may hold CUDA
    and vLLM state, no re-import of the parent's main script), serving _verify_here from its own main thread,
    so math-verify's signal timeouts work there; the parent kills it when it overruns even so."""

    def __init__(self):
        self.lock = threading.Lock()
        self.proc = None

    def check(self, answer: str, reference: str) -> bool:
        with self.lock:  # one request in flight on the pipe
            fresh = self.proc is None or self.proc.poll() is not None
            try:
                if fresh:
                    self._start()
                self.proc.stdin.write(json.dumps([answer, reference]) + "\n")
                self.proc.stdin.flush()
                ready, _, _ = select.select([self.proc.stdout], [], [], _WORKER_START if fresh else 4 * _TIMEOUT)
                if ready:
                    line = self.proc.stdout.readline()
                    if not line:
                        raise EOFError(f"checker process exited with {self.proc.wait(5)}")
                    return json.loads(line) is True
                _log.warning("math-verify took over %ss on %r; graded wrong", 4 * _TIMEOUT, answer[:80])
            except Exception as exc:  # noqa: BLE001 - a broken checker grades wrong, it does not stop the stage
                _log.warning("math-verify checker process failed (%s: %s); graded wrong", type(exc).__name__, exc)
            self._stop()
            return False

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "selfimprove.tasks.math_answers"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc.stdin.close()
            self.proc.stdout.close()
        self.proc = None


def _serve() -> None:
    """The checker process: one JSON [answer, reference] per line in, one JSON verdict per line out, until stdin
    closes (also when the parent dies). Anything else printed goes to stderr, so it cannot break the protocol."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    for line in sys.stdin:
        answer, reference = json.loads(line)
        replies.write(json.dumps(_verify_here(answer, reference)) + "\n")


_WORKER = _Worker()


def _squeeze_spaces(s: str) -> str:
    """Drop whitespace, except one space ending a LaTeX command before a letter ("\\cot x" stays)."""
    return re.sub(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])|\s+", lambda m: m.group(1) + " " if m.group(1) else "", s)


def _canonical_number(s: str) -> str:
    sign = "-" if s.startswith("-") else ""
    whole, _, frac = s.lstrip("-").partition(".")
    whole, frac = whole.lstrip("0") or "0", frac.rstrip("0")
    text = f"{whole}.{frac}" if frac else whole
    return text if text == "0" else sign + text


if __name__ == "__main__":
    _serve()
