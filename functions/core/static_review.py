"""Static review of one Python function: specific findings with no network and no LLM.

``analyze_function`` parses the source of ONE function (a method with leading indentation,
decorators and ``async def`` are fine) and reports what is wrong with it, naming the parameter,
variable or call at fault. The ``offline`` LLM provider turns the findings into its answer, and
the other providers get them merged into theirs to ground them. Pure: no IO, no subprocess.

Every finding must be true of the code: the checks would rather miss a problem than report one
that is not there. When a function has no findings the result is an empty list; nothing
positive is invented, and the caller decides what to say about a clean function.

Suggestion format (stable; clients and prompts rely on it)::

    [<category>] Line <line>: <message>

for example ``[typing] Line 1: add type hints to parameters `a`, `b` and the return value of
`add`.`` ``line`` is 1-based and counts lines of the source as given (its leading indentation
and blank lines included). Findings are ordered by severity (error, warning, info), then line.

Checks (rule: category/severity):

- syntax-error: bug/error (the source does not parse, or is nested too deeply to parse)
- eval-exec, subprocess-shell, hardcoded-secret, sql-injection, unsafe-deserialization:
  security/error (``subprocess-shell`` with a literal command: security/warning)
- mutable-default, bare-except, swallowed-exception, broad-except, inconsistent-return,
  open-without-with: bug/warning (a bare ``except:`` that re-raises: bug/info)
- blocking-sleep-in-async, blocking-http-in-async, string-concat-in-loop: performance/warning
- too-long (> 50 statements or > 60 lines, docstring excluded), too-complex (cyclomatic
  complexity > 10), too-many-parameters (> 6), deep-nesting (> 4 levels), unused-parameter,
  global-statement, shadowed-builtin: readability/warning; too-deeply-nested (parses, but
  deeper than the recursion limit allows to analyse): readability/warning
- missing-type-hints: typing/info; missing-docstring: docs/info
- assert-validation: bug/info; none-comparison, print-call, empty-function: readability/info
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

SUGGESTION_FORMAT: Final = "[{category}] Line {line}: {message}"
SYNTAX_ERROR: Final = "syntax-error"

MAX_STATEMENTS: Final = 50
MAX_LINES: Final = 60
MAX_COMPLEXITY: Final = 10
MAX_PARAMETERS: Final = 6
MAX_NESTING: Final = 4


class Category(StrEnum):
    """What kind of problem a finding is."""

    BUG = "bug"
    SECURITY = "security"
    PERFORMANCE = "performance"
    READABILITY = "readability"
    TYPING = "typing"
    DOCS = "docs"


class Severity(StrEnum):
    """How urgent a finding is; findings are ordered error, warning, info."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Sort position: 0 for the most urgent."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK: Final = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True)
class Finding:
    """One problem in the function: which rule, how bad, where, and what to change."""

    rule: str
    category: Category
    severity: Severity
    line: int
    message: str

    def as_suggestion(self) -> str:
        """Format as ``[<category>] Line <line>: <message>`` (see the module docstring)."""
        return SUGGESTION_FORMAT.format(
            category=self.category.value, line=self.line, message=self.message
        )


# Rules that report the same problem as another rule (ruff codes -> this module's rules), so a
# merge keeps one of them. Groups named in _PER_FUNCTION report at most once per function and
# the tools disagree on the line (ruff puts RET503 on the first decorator), so they match on
# the group alone.
_EQUIVALENT_RULES: Final[dict[str, str]] = {
    "B006": "mutable-default",
    "bare-except": "except-handler",
    "swallowed-exception": "except-handler",
    "broad-except": "except-handler",
    "E722": "except-handler",
    "S110": "except-handler",
    "S112": "except-handler",
    "BLE001": "except-handler",
    "S102": "eval-exec",
    "S307": "eval-exec",
    "S602": "subprocess-shell",
    "S604": "subprocess-shell",
    "S605": "subprocess-shell",
    "S301": "unsafe-deserialization",
    "S506": "unsafe-deserialization",
    "S608": "sql-injection",
    "S105": "hardcoded-secret",
    "S106": "hardcoded-secret",
    "S107": "hardcoded-secret",
    "E711": "none-comparison",
    "SIM115": "open-without-with",
    "ARG001": "unused-parameter",
    "ARG002": "unused-parameter",
    "ARG003": "unused-parameter",
    "ARG004": "unused-parameter",
    "RET502": "inconsistent-return",
    "RET503": "inconsistent-return",
    "PLW0603": "global-statement",
    "ASYNC251": "blocking-sleep-in-async",
    "ASYNC210": "blocking-http-in-async",
    "A001": "shadowed-builtin",
    "A002": "shadowed-builtin",
    "T201": "print-call",
    "S101": "assert-validation",
    "C901": "too-complex",
    "PLR0915": "too-long",
    "PLR0913": "too-many-parameters",
    "PLR0917": "too-many-parameters",
    "D102": "missing-docstring",
    "D103": "missing-docstring",
}
_PER_FUNCTION: Final = frozenset(
    {"inconsistent-return", "too-complex", "too-long", "too-many-parameters", "missing-docstring"}
)


def _merge_key(finding: Finding) -> tuple[str, int]:
    group = _EQUIVALENT_RULES.get(finding.rule, finding.rule)
    return group, 0 if group in _PER_FUNCTION else finding.line


def merge_findings(*sources: Iterable[Finding]) -> list[Finding]:
    """Merge finding lists, earlier lists winning over later ones on the same problem; sorted.

    Within one list only exact repeats are dropped (two parameters on one line are two
    findings); a finding of a later list is dropped when an earlier list already reports the
    same problem on the same line (ruff's B006 and ``mutable-default``, say).
    """
    kept: list[Finding] = []
    seen: set[tuple[str, int, str]] = set()
    earlier_keys: set[tuple[str, int]] = set()
    for source in sources:
        keys: set[tuple[str, int]] = set()
        for finding in source:
            exact = (finding.rule, finding.line, finding.message)
            key = _merge_key(finding)
            if exact in seen or key in earlier_keys:
                continue
            seen.add(exact)
            keys.add(key)
            kept.append(finding)
        earlier_keys |= keys
    return sorted(kept, key=lambda f: (f.severity.rank, f.line, f.rule))


def findings_to_suggestions(findings: Iterable[Finding], limit: int = 20) -> list[str]:
    """Format the ``limit`` most urgent findings as suggestion strings, most urgent first.

    No findings give an empty list: no positive suggestion is made up, the caller decides how
    to present a function with nothing to fix.
    """
    if limit <= 0:
        return []
    return [finding.as_suggestion() for finding in merge_findings(findings)[:limit]]


def dedent_source(source: str) -> str:
    """Remove the indentation of the first code line from every line that starts with it.

    Unlike ``textwrap.dedent`` this keeps every line (so line numbers stay those of the given
    source) and leaves alone lines that are less indented, which can only be comments or the
    inside of multi-line strings in a valid function, instead of giving up on the whole text.
    """
    lines = source.split("\n")
    prefix = ""
    for line in lines:
        stripped = line.lstrip(" \t")
        if stripped.strip() and not stripped.startswith("#"):
            prefix = line[: len(line) - len(stripped)]
            break
    if not prefix:
        return source
    return "\n".join(line[len(prefix) :] if line.startswith(prefix) else line for line in lines)


def analyze_function(source: str) -> list[Finding]:
    """Return the findings for the first function in ``source``, most urgent first; never raise.

    Source that does not parse gives a single ``syntax-error`` finding; source without any
    function gives an empty list.
    """
    text = dedent_source(source)
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:  # also IndentationError, and NUL bytes on Python >= 3.11.4
        return [_syntax_error(text, exc.msg, exc.lineno)]
    except ValueError as exc:  # NUL bytes on older Pythons
        return [_syntax_error(text, str(exc), None)]
    except (RecursionError, MemoryError) as exc:
        # The parser gives up on very deep nesting this way; MemoryError carries no message.
        return [_syntax_error(text, str(exc) or "the parser ran out of memory", None, deep=True)]
    func = _first_function(tree)
    if func is None:
        return []
    try:
        findings = _Analyzer(func, text).run()
    except RecursionError:
        # Every traversal here is iterative, so this is a last line of defence for trees that
        # parse but are deeper than the interpreter's recursion limit.
        findings = [
            Finding(
                "too-deeply-nested",
                Category.READABILITY,
                Severity.WARNING,
                func.lineno,
                f"`{func.name}` nests expressions too deeply to analyse; split the nested "
                "expressions into named intermediate variables.",
            )
        ]
    return merge_findings(findings)


def _syntax_error(text: str, message: str, line: int | None, *, deep: bool = False) -> Finding:
    if line is None and "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
    line = max(line or 1, 1)
    if deep:
        message = f"the code is nested too deeply for the Python parser ({message})"
    return Finding(
        SYNTAX_ERROR,
        Category.BUG,
        Severity.ERROR,
        line,
        f"Python cannot parse this function: {message} (line {line}); fix the syntax error "
        "first, nothing else can be checked until it parses.",
    )


_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
_SCOPES: Final = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_LOOPS: Final = (ast.For, ast.AsyncFor, ast.While)


def _first_function(tree: ast.Module) -> _FunctionNode | None:
    # No top-level def: take the first one anywhere (say, the method of a pasted class).
    for candidate in (*tree.body, *_walk(tree)):
        if isinstance(candidate, ast.FunctionDef | ast.AsyncFunctionDef):
            return candidate
    return None


def _walk(root: ast.AST, *, own_scope: bool = False) -> Iterator[ast.AST]:
    """Yield the descendants of ``root`` in source order, iteratively (no recursion limit).

    With ``own_scope`` nested functions, lambdas and classes are yielded but not entered.
    """
    stack = list(reversed(list(ast.iter_child_nodes(root))))
    while stack:
        node = stack.pop()
        yield node
        if not (own_scope and isinstance(node, _SCOPES)):
            stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _dotted_name(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _call_name(node: ast.AST) -> str | None:
    return _dotted_name(node.func) if isinstance(node, ast.Call) else None


def _is_none(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _is_str(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _code_list(names: Sequence[str], limit: int = 5) -> str:
    quoted = ", ".join(f"`{name}`" for name in names[:limit])
    return quoted + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _line_list(lines: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(line) for line in lines[:limit])
    word = "line" if len(lines) == 1 else "lines"
    return f"{word} {shown}" + (", ..." if len(lines) > limit else "")


_IMPLICIT_FIRST: Final = frozenset({"self", "cls", "mcs", "metacls"})
_STUB_DECORATORS: Final = frozenset({"abstractmethod", "overload", "override"})
_NO_RETURN_CALLS: Final = frozenset(
    {
        "sys.exit",
        "exit",
        "quit",
        "os._exit",
        "os.abort",
        "abort",
        "flask.abort",
        "pytest.fail",
        "pytest.skip",
        "pytest.exit",
        "self.fail",
        "assert_never",
        "typing.assert_never",
    }
)
# The builtins people actually shadow (not `license`, `credits`, ...). A word list reads better
# here than seventy quoted strings.
_BUILTINS: Final = frozenset(
    """abs all any ascii bin bool breakpoint bytearray bytes callable chr classmethod compile
    complex delattr dict dir divmod enumerate eval exec filter float format frozenset getattr
    globals hasattr hash help hex id input int isinstance issubclass iter len list locals map max
    memoryview min next object oct open ord pow print property range repr reversed round set
    setattr slice sorted staticmethod str sum super tuple type vars zip""".split()  # noqa: SIM905
)
_MUTABLE_CALLS: Final = frozenset(
    {"list", "dict", "set", "bytearray", "defaultdict", "OrderedDict", "deque", "Counter"}
)
_SECRET_NAME_RE: Final = re.compile(
    r"(?:^|_)(?:password|passwd|pwd|secret|token|api_?key|apikey|secret_?key|private_?key"
    r"|access_?key)$"
)
_ENV_NAME_RE: Final = re.compile(r"^[A-Z][A-Z0-9_]*$")
_SQL_RE: Final = re.compile(
    r"\b(?:select|insert|update|delete|create|drop|alter|truncate|merge)\b", re.IGNORECASE
)
_SHELL_CALLS: Final = frozenset({"run", "call", "check_call", "check_output", "Popen"})
_ALWAYS_SHELL: Final = frozenset(
    {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}
)
_HTTP_METHODS: Final = frozenset(
    {"get", "post", "put", "patch", "delete", "head", "options", "request"}
)
_PICKLE_LOADS: Final = frozenset(
    {
        f"{module}.{func}"
        for module in ("pickle", "cPickle", "_pickle", "dill")
        for func in ("load", "loads")
    }
)
_SAFE_YAML_LOADERS: Final = frozenset({"SafeLoader", "CSafeLoader", "BaseLoader"})
_TAKES_OWNERSHIP: Final = frozenset(
    {"enter_context", "closing", "push", "callback", "append", "add", "extend", "put"}
)
_SQL_EXECUTE: Final = frozenset({"execute", "executemany", "executescript", "exec_driver_sql"})


class _Analyzer:
    """The checks, over one parsed function. Each ``_check_*`` appends to ``self.findings``."""

    def __init__(self, func: _FunctionNode, text: str) -> None:
        self.func = func
        # Split as the tokenizer does (not str.splitlines, which also splits on \f, \x1c, ...).
        self.lines = re.split(r"\r\n|\r|\n", text)
        self.name = func.name
        self.findings: list[Finding] = []
        self.nodes = list(_walk(func))
        self.own = list(_walk(func, own_scope=True))
        self.parents: dict[ast.AST, ast.AST] = {}
        for parent in (func, *self.nodes):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        self.decorators = {
            name.rsplit(".", 1)[-1]
            for deco in func.decorator_list
            if (name := _dotted_name(deco.func if isinstance(deco, ast.Call) else deco))
        }
        args = func.args
        positional = [*args.posonlyargs, *args.args]
        self.implicit_first = (
            positional[0]
            if positional
            and positional[0].arg in _IMPLICIT_FIRST
            and "staticmethod" not in self.decorators
            else None
        )
        self.params = [a for a in (*positional, *args.kwonlyargs) if a is not self.implicit_first]
        self.has_docstring = ast.get_docstring(func) is not None
        self.body = func.body[1:] if self.has_docstring else func.body
        self.value_returns = [
            node
            for node in self.own
            if isinstance(node, ast.Return) and node.value is not None and not _is_none(node.value)
        ]
        self.is_generator = any(isinstance(n, ast.Yield | ast.YieldFrom) for n in self.own)
        self.is_test = self.name.startswith("test")

    def run(self) -> list[Finding]:
        """Run every check and return the findings."""
        for check in (
            self._check_docstring,
            self._check_type_hints,
            self._check_mutable_defaults,
            self._check_except_handlers,
            self._check_size,
            self._check_complexity,
            self._check_parameter_count,
            self._check_nesting,
            self._check_calls,
            self._check_asserts,
            self._check_none_comparisons,
            self._check_prints,
            self._check_unused_parameters,
            self._check_returns,
            self._check_open,
            self._check_string_concat,
            self._check_globals,
            self._check_shadowed_builtins,
            self._check_secrets,
            self._check_sql,
            self._check_empty,
        ):
            check()
        return self.findings

    def _add(
        self, rule: str, category: Category, severity: Severity, line: int, message: str
    ) -> None:
        self.findings.append(Finding(rule, category, severity, line, message))

    def _seg(self, node: ast.AST, limit: int = 60) -> str:
        """The source text of ``node`` on one line, shortened to ``limit`` characters.

        Like ``ast.get_source_segment``, but over lines split once, and reading only as many
        lines as the shortened text needs (a function can have thousands of findings).
        """
        start, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
        col, end_col = getattr(node, "col_offset", None), getattr(node, "end_col_offset", None)
        if start is None or end is None or col is None or end_col is None:
            return ""
        pieces: list[str] = []
        length = 0
        for number in range(start, min(end, len(self.lines)) + 1):
            # Offsets count UTF-8 bytes.
            raw = self.lines[number - 1].encode()
            raw = raw[: end_col if number == end else None][col if number == start else 0 :]
            pieces.append(raw.decode(errors="replace"))
            length += len(pieces[-1])
            if length > limit:
                break
        segment = " ".join(" ".join(pieces).split())
        return segment if len(segment) <= limit else segment[: limit - 3] + "..."

    def _is_stub(self) -> bool:
        """Say whether the body only marks the function as not implemented (or is empty)."""
        if self.decorators & _STUB_DECORATORS:
            return True
        for stmt in self.body:
            if isinstance(stmt, ast.Pass):
                continue
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue
            if isinstance(stmt, ast.Raise) and stmt.exc is not None:
                target = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
                if _dotted_name(target) == "NotImplementedError":
                    continue
            if (
                isinstance(stmt, ast.Return)
                and _dotted_name(stmt.value or stmt) == "NotImplemented"
            ):
                continue
            return False
        return True

    # --- docs and typing -------------------------------------------------------------------

    def _check_docstring(self) -> None:
        if self.has_docstring or self.name.startswith("_") or self.is_test:
            return
        if "overload" in self.decorators or self.decorators & {"setter", "deleter"}:
            return  # the docstring belongs on the implementation / the property getter
        parts: list[str] = []
        if self.params:
            parts.append(f"the parameters {_code_list([a.arg for a in self.params], 4)}")
        if self.is_generator:
            parts.append("what it yields")
        elif self.value_returns:
            parts.append("what it returns")
        raised: list[str] = []
        for node in self.own:
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                name = _dotted_name(exc)
                if name and name not in raised and name != "NotImplementedError":
                    raised.append(name)
        if raised:
            parts.append(f"when it raises {_code_list(raised, 3)}")
        hint = "a one-line summary of what it does"
        if parts:
            hint += ", then " + (", ".join(parts[:-1]) + " and " if len(parts) > 1 else "")
            hint += parts[-1]
        self._add(
            "missing-docstring",
            Category.DOCS,
            Severity.INFO,
            self.func.lineno,
            f"add a docstring to `{self.name}`: {hint}.",
        )

    def _check_type_hints(self) -> None:
        args = self.func.args
        missing = [a.arg for a in self.params if a.annotation is None]
        if args.vararg is not None and args.vararg.annotation is None:
            missing.append(f"*{args.vararg.arg}")
        if args.kwarg is not None and args.kwarg.annotation is None:
            missing.append(f"**{args.kwarg.arg}")
        no_return = self.func.returns is None
        if not missing and not no_return:
            return
        noun = "parameter" if len(missing) == 1 else "parameters"
        returns_nothing = not self.value_returns and not self.is_generator
        none_hint = " (`-> None`: it never returns a value)" if returns_nothing else ""
        if missing and no_return:
            message = (
                f"add type hints to {noun} {_code_list(missing, 6)} and the return value of "
                f"`{self.name}`{none_hint}."
            )
        elif missing:
            message = f"add type hints to {noun} {_code_list(missing, 6)} of `{self.name}`."
        else:
            message = f"add a type hint for the return value of `{self.name}`{none_hint}."
        self._add("missing-type-hints", Category.TYPING, Severity.INFO, self.func.lineno, message)

    # --- bugs ------------------------------------------------------------------------------

    def _check_mutable_defaults(self) -> None:
        args = self.func.args
        positional = [*args.posonlyargs, *args.args]
        pairs: list[tuple[ast.arg, ast.expr | None]] = list(
            zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True)
        )
        pairs += zip(args.kwonlyargs, args.kw_defaults, strict=True)
        for arg, default in pairs:
            if default is None:
                continue
            mutable = isinstance(
                default, ast.List | ast.Dict | ast.Set | ast.ListComp | ast.DictComp | ast.SetComp
            )
            call = _call_name(default)
            if call is not None and call.rsplit(".", 1)[-1] in _MUTABLE_CALLS:
                mutable = True
            if not mutable:
                continue
            fresh = self._seg(default, 30) if call is None else f"{call}()"
            self._add(
                "mutable-default",
                Category.BUG,
                Severity.WARNING,
                default.lineno,
                f"parameter `{arg.arg}` defaults to the mutable `{self._seg(default, 30)}`, "
                f"which is created once and shared by every call of `{self.name}`; default to "
                f"`None` and create it inside (`if {arg.arg} is None: {arg.arg} = {fresh}`).",
            )

    def _check_except_handlers(self) -> None:
        for node in self.nodes:
            if not isinstance(node, ast.ExceptHandler):
                continue
            names = self._exception_names(node.type)
            swallows = all(
                isinstance(s, ast.Pass)
                or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
                for s in node.body
            )
            reraises = any(isinstance(n, ast.Raise) for n in _walk(node, own_scope=True))
            around = self._around(node)
            if node.type is None:
                if reraises:
                    self._add(
                        "bare-except",
                        Category.BUG,
                        Severity.INFO,
                        node.lineno,
                        f"bare `except:`{around} re-raises, but reads as a mistake; write "
                        "`except BaseException:` to make catching everything explicit.",
                    )
                    continue
                self._add(
                    "bare-except",
                    Category.BUG,
                    Severity.WARNING,
                    node.lineno,
                    f"bare `except:`{around} catches every exception (KeyboardInterrupt and "
                    "SystemExit included)"
                    + (" and silently discards them" if swallows else "")
                    + "; catch only the exceptions you expect there "
                    "(e.g. `except (ValueError, OSError):`).",
                )
            elif "BaseException" in names and not reraises:
                self._add(
                    "broad-except",
                    Category.BUG,
                    Severity.WARNING,
                    node.lineno,
                    f"`except BaseException`{around} also catches "
                    "KeyboardInterrupt, SystemExit and task cancellation"
                    + (" and discards them" if swallows else "")
                    + "; catch `Exception` or narrower, or re-raise after cleaning up.",
                )
            elif "Exception" in names and swallows:
                self._add(
                    "swallowed-exception",
                    Category.BUG,
                    Severity.WARNING,
                    node.lineno,
                    f"`except Exception: pass`{around} silently discards every error; catch "
                    "the specific exception you expect, or at least log it with "
                    "`logger.exception(...)`.",
                )

    @staticmethod
    def _exception_names(node: ast.expr | None) -> set[str]:
        items = node.elts if isinstance(node, ast.Tuple) else [node] if node else []
        return {name.rsplit(".", 1)[-1] for item in items if (name := _dotted_name(item))}

    def _around(self, handler: ast.ExceptHandler) -> str:
        """Say what the handler guards: ` around `<first statement of the try>``."""
        parent = self.parents.get(handler)
        if isinstance(parent, ast.Try | ast.TryStar) and parent.body:
            return f" around `{self._seg(parent.body[0], 40)}`"
        return ""

    def _check_returns(self) -> None:
        if not self.value_returns or self.is_generator or _is_none(self.func.returns):
            return  # `-> None`: the returned expressions are None too (`return self.close()`)
        bare = [n.lineno for n in self.own if isinstance(n, ast.Return) and n.value is None]
        falls_off = not _block_terminates(self.func.body)
        if not bare and not falls_off:
            return
        problems: list[str] = []
        if falls_off:
            problems.append("can reach the end of its body, returning None implicitly")
        if bare:
            problems.append(f"has a bare `return` on {_line_list(bare)}")
        returns = _line_list([n.lineno for n in self.value_returns])
        self._add(
            "inconsistent-return",
            Category.BUG,
            Severity.WARNING,
            self.func.lineno,
            f"`{self.name}` returns a value on {returns} but {' and '.join(problems)}; make "
            "every path explicit (`return None`, or raise an exception).",
        )

    def _check_open(self) -> None:
        for node in self.nodes:
            if not isinstance(node, ast.Call) or _call_name(node) not in {"open", "io.open"}:
                continue
            if self._open_is_managed(node):
                continue
            call = self._seg(node, 40)
            self._add(
                "open-without-with",
                Category.BUG,
                Severity.WARNING,
                node.lineno,
                f"the file from `{call}` is not opened in a `with` "
                "block, so it stays open if an exception occurs (or until garbage collection); "
                f"use `with {call} as f:`.",
            )

    def _open_is_managed(self, call: ast.Call) -> bool:
        """Say whether something other than this statement owns closing the file."""
        node: ast.AST = call
        parent = self.parents.get(node)
        while parent is not None and not isinstance(parent, ast.stmt):
            if isinstance(parent, ast.withitem):
                return True  # with open(...), with closing(open(...))
            if isinstance(parent, ast.Call) and node in parent.args:
                name = _call_name(parent) or ""
                if name.rsplit(".", 1)[-1] in _TAKES_OWNERSHIP:
                    return True
            node, parent = parent, self.parents.get(parent)
        if isinstance(parent, ast.Return):
            return True  # handed to the caller, who owns it
        target: ast.expr | None = None
        if isinstance(parent, ast.Assign) and len(parent.targets) == 1:
            target = parent.targets[0]
        elif isinstance(parent, ast.AnnAssign):
            target = parent.target
        if isinstance(target, ast.Attribute | ast.Subscript):
            return True  # stored on an object that owns its lifetime
        return isinstance(target, ast.Name) and self._closed_or_handed_on(target.id)

    def _closed_or_handed_on(self, variable: str) -> bool:
        """Say whether the file in ``variable`` is closed, or handed to code that owns it."""
        for node in self.nodes:
            if _call_name(node) == f"{variable}.close":
                return True
            if not (isinstance(node, ast.Name) and node.id == variable):
                continue
            parent = self.parents.get(node)
            if isinstance(parent, ast.keyword):
                parent = self.parents.get(parent)
            if isinstance(parent, ast.withitem | ast.Return | ast.Yield | ast.YieldFrom):
                return True
            if isinstance(parent, ast.Tuple | ast.List | ast.Set | ast.Dict):
                return True  # stored in a container, closed wherever that goes
            if isinstance(parent, ast.Call) and node is not parent.func:
                # A constructor (FileStorage(f)) or a registry (stack.enter_context(f),
                # files.append(f)) takes ownership; a plain reader (json.load(f)) does not.
                callee = (_call_name(parent) or "").rsplit(".", 1)[-1]
                if callee[:1].isupper() or callee in _TAKES_OWNERSHIP:
                    return True
        return False

    def _check_asserts(self) -> None:
        if self.is_test:
            return
        params = {a.arg for a in self.params}
        # Validation is the run of asserts that opens the body; later asserts check the
        # function's own state.
        for node in self.body:
            if not isinstance(node, ast.Assert):
                break
            used = [n.id for n in _walk(node.test) if isinstance(n, ast.Name) and n.id in params]
            if isinstance(node.test, ast.Name) and node.test.id in params:
                used.insert(0, node.test.id)
            if not used:
                continue
            is_type_check = any(_call_name(n) == "isinstance" for n in _walk(node))
            exc = "TypeError" if is_type_check else "ValueError"
            self._add(
                "assert-validation",
                Category.BUG,
                Severity.INFO,
                node.lineno,
                f"`{self._seg(node, 50)}` validates argument `{used[0]}`, but asserts are "
                f"removed when Python runs with `-O`; raise `{exc}` with a message instead.",
            )

    def _check_none_comparisons(self) -> None:
        for node in self.nodes:
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            for index, op in enumerate(node.ops):
                if not isinstance(op, ast.Eq | ast.NotEq):
                    continue
                left, right = operands[index], operands[index + 1]
                if not (_is_none(left) or _is_none(right)):
                    continue
                other = self._seg(right if _is_none(left) else left, 40)
                old, new = ("==", "is") if isinstance(op, ast.Eq) else ("!=", "is not")
                self._add(
                    "none-comparison",
                    Category.READABILITY,
                    Severity.INFO,
                    node.lineno,
                    f"`{other} {old} None`: write `{other} {new} None`; "
                    f"`{old}` calls `__eq__`, which a class can override.",
                )

    # --- calls: security, async, prints ----------------------------------------------------

    def _check_calls(self) -> None:
        own = {id(n) for n in self.own}
        is_async = isinstance(self.func, ast.AsyncFunctionDef)
        for node in self.nodes:
            if not isinstance(node, ast.Call):
                continue
            name = _dotted_name(node.func)
            if name is None:
                continue
            if name in {"eval", "exec"}:
                self._eval(node, name)
            elif name in _ALWAYS_SHELL or (
                name.rsplit(".", 1)[-1] in _SHELL_CALLS and self._shell_true(node)
            ):
                self._shell(node, name)
            elif name in _PICKLE_LOADS:
                self._pickle(node, name)
            elif name in {"yaml.load", "yaml.load_all", "yaml.unsafe_load"}:
                self._yaml(node, name)
            # Only calls in the coroutine's own body block its loop; a nested sync function may
            # well run in a thread.
            elif is_async and id(node) in own:
                self._blocking(node, name)

    def _arg0(self, node: ast.Call) -> str:
        return self._seg(node.args[0], 40) if node.args else "..."

    def _eval(self, node: ast.Call, name: str) -> None:
        alternative = (
            "`ast.literal_eval()` for literals, `json.loads()` for data, or an explicit "
            "dispatch table"
            if name == "eval"
            else "a regular function or a dispatch table"
        )
        self._add(
            "eval-exec",
            Category.SECURITY,
            Severity.ERROR,
            node.lineno,
            f"`{name}({self._arg0(node)})` runs whatever code its argument "
            f"holds, so untrusted input can execute arbitrary code; use {alternative} instead.",
        )

    @staticmethod
    def _shell_true(node: ast.Call) -> bool:
        return any(
            kw.arg == "shell" and isinstance(kw.value, ast.Constant) and bool(kw.value.value)
            for kw in node.keywords
        )

    def _shell(self, node: ast.Call, name: str) -> None:
        literal = bool(node.args) and _is_str(node.args[0])
        if name in _ALWAYS_SHELL:
            if literal:
                return  # a fixed command: no injection, and using a shell is the point
            call = f"`{name}({self._arg0(node)})`"
        else:
            call = f"`{name}({self._arg0(node)}, shell=True)`"
        if literal:
            risk = "runs a fixed command through the shell for no benefit"
            severity = Severity.WARNING
        else:
            risk = (
                f"passes `{self._arg0(node)}` to the shell, so a value containing `;` or "
                "`$(...)` runs extra commands"
            )
            severity = Severity.ERROR
        self._add(
            "subprocess-shell",
            Category.SECURITY,
            severity,
            node.lineno,
            f"{call} {risk}; pass an argument list "
            "(`subprocess.run([prog, arg])`, or `shlex.split(...)`) without `shell=True`.",
        )

    def _pickle(self, node: ast.Call, name: str) -> None:
        self._add(
            "unsafe-deserialization",
            Category.SECURITY,
            Severity.ERROR,
            node.lineno,
            f"`{name}({self._arg0(node)})` can execute arbitrary code if "
            "the data is not fully trusted; use a data-only format such as JSON, or verify a "
            "signature (`hmac`) before unpickling.",
        )

    def _yaml(self, node: ast.Call, name: str) -> None:
        loader = next((kw.value for kw in node.keywords if kw.arg == "Loader"), None)
        if loader is None and len(node.args) > 1:
            loader = node.args[1]
        loader_name = _dotted_name(loader) if loader is not None else None
        if (
            name != "yaml.unsafe_load"
            and loader_name is not None
            and loader_name.rsplit(".", 1)[-1] in _SAFE_YAML_LOADERS
        ):
            return
        safe = "yaml.safe_load_all" if name == "yaml.load_all" else "yaml.safe_load"
        self._add(
            "unsafe-deserialization",
            Category.SECURITY,
            Severity.ERROR,
            node.lineno,
            f"`{name}({self._arg0(node)})` without `Loader=yaml.SafeLoader` "
            f"can build arbitrary Python objects from the document; use "
            f"`{safe}({self._arg0(node)})`.",
        )

    def _blocking(self, node: ast.Call, name: str) -> None:
        if name == "time.sleep":
            delay = self._arg0(node)
            self._add(
                "blocking-sleep-in-async",
                Category.PERFORMANCE,
                Severity.WARNING,
                node.lineno,
                f"`time.sleep({delay})` blocks the event loop inside "
                f"async `{self.name}`, stalling every other task; use "
                f"`await asyncio.sleep({delay})`.",
            )
            return
        module, _, method = name.rpartition(".")
        if (module in {"requests", "httpx"} and method in _HTTP_METHODS) or name in {
            "urllib.request.urlopen",
            "urlopen",
        }:
            self._add(
                "blocking-http-in-async",
                Category.PERFORMANCE,
                Severity.WARNING,
                node.lineno,
                f"`{name}({self._arg0(node)})` is a blocking HTTP call "
                f"inside async `{self.name}`, stalling the event loop until the response "
                "arrives; use an async client (`httpx.AsyncClient`, `aiohttp`) or "
                f"`await asyncio.to_thread({name}, ...)`.",
            )

    def _check_prints(self) -> None:
        if self.name in {"main", "_main", "cli"}:
            return  # entry points talk to the terminal on purpose
        lines = [
            n.lineno for n in self.nodes if isinstance(n, ast.Call) and _call_name(n) == "print"
        ]
        if not lines:
            return
        self._add(
            "print-call",
            Category.READABILITY,
            Severity.INFO,
            lines[0],
            f"`{self.name}` calls `print()` on {_line_list(lines)}; library code should log "
            "instead (`logger.info(...)`/`logger.debug(...)`) so callers control the output.",
        )

    # --- size and shape --------------------------------------------------------------------

    def _check_size(self) -> None:
        # The docstring does not count: long documentation is not a long function.
        statements = sum(isinstance(n, ast.stmt) for n in self.nodes)
        lines = (self.func.end_lineno or self.func.lineno) - self.func.lineno + 1
        if self.has_docstring:
            docstring = self.func.body[0]
            statements -= 1
            lines -= (docstring.end_lineno or docstring.lineno) - docstring.lineno + 1
        if statements <= MAX_STATEMENTS and lines <= MAX_LINES:
            return
        self._add(
            "too-long",
            Category.READABILITY,
            Severity.WARNING,
            self.func.lineno,
            f"`{self.name}` is {lines} lines long with {statements} statements, docstring "
            "excluded (limits: "
            f"{MAX_LINES} lines, {MAX_STATEMENTS} statements); extract its steps into "
            "well-named helper functions.",
        )

    def _check_complexity(self) -> None:
        complexity = 1
        for node in self.nodes:
            if isinstance(
                node,
                ast.If
                | ast.IfExp
                | ast.For
                | ast.AsyncFor
                | ast.While
                | ast.ExceptHandler
                | ast.With
                | ast.AsyncWith
                | ast.match_case,
            ):
                complexity += 1
            elif isinstance(node, ast.BoolOp):
                complexity += len(node.values) - 1
            elif isinstance(node, ast.comprehension):
                complexity += len(node.ifs)
        if complexity <= MAX_COMPLEXITY:
            return
        self._add(
            "too-complex",
            Category.READABILITY,
            Severity.WARNING,
            self.func.lineno,
            f"`{self.name}` has a cyclomatic complexity of {complexity} (limit "
            f"{MAX_COMPLEXITY}); move independent branches into helper functions, return "
            "early, or replace long if/elif chains with a lookup table.",
        )

    def _check_parameter_count(self) -> None:
        if len(self.params) <= MAX_PARAMETERS:
            return
        self._add(
            "too-many-parameters",
            Category.READABILITY,
            Severity.WARNING,
            self.func.lineno,
            f"`{self.name}` takes {len(self.params)} parameters (limit {MAX_PARAMETERS}): "
            f"{_code_list([a.arg for a in self.params], 8)}; group related ones into a "
            "dataclass or settings object.",
        )

    def _check_nesting(self) -> None:
        # (statement, depth); an `elif` stays at the depth of its `if`.
        stack: list[tuple[ast.stmt, int]] = [(s, 0) for s in reversed(self.func.body)]
        deepest: tuple[int, int] | None = None  # (depth, line)
        first_line: int | None = None
        while stack:
            stmt, depth = stack.pop()
            if depth > MAX_NESTING:
                if first_line is None:
                    first_line = stmt.lineno
                if deepest is None or depth > deepest[0]:
                    deepest = (depth, stmt.lineno)
            children: list[tuple[ast.stmt, int]] = []
            for block, same_depth in _blocks(stmt):
                children += [(child, depth if same_depth else depth + 1) for child in block]
            stack.extend(reversed(children))
        if deepest is None or first_line is None:
            return
        self._add(
            "deep-nesting",
            Category.READABILITY,
            Severity.WARNING,
            first_line,
            f"code in `{self.name}` is nested {deepest[0]} levels deep (limit {MAX_NESTING}), "
            f"from line {first_line}; flatten it with guard clauses "
            "(`if not ...: return`/`continue`) or move the inner block into a helper function.",
        )

    def _check_empty(self) -> None:
        if len(self.func.body) != 1 or not isinstance(self.func.body[0], ast.Pass):
            return  # a docstring next to the `pass` explains the no-op
        if self.decorators & _STUB_DECORATORS:
            return
        self._add(
            "empty-function",
            Category.READABILITY,
            Severity.INFO,
            self.func.lineno,
            f"`{self.name}` has an empty body (`pass`) and silently does nothing; implement "
            "it, raise `NotImplementedError` if it is a placeholder, or add a docstring "
            "saying why it is a no-op.",
        )

    # --- names -----------------------------------------------------------------------------

    def _check_unused_parameters(self) -> None:
        if (
            self._is_stub()
            or self.is_test  # pytest fixtures are often requested only for their side effects
            or (self.name.startswith("__") and self.name.endswith("__"))
        ):
            return
        if any(_call_name(n) in {"locals", "vars"} for n in self.nodes):
            return
        read = {
            n.id for n in self.nodes if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store)
        }
        for arg in self.params:
            if arg.arg.startswith("_") or arg.arg in read:
                continue
            self._add(
                "unused-parameter",
                Category.READABILITY,
                Severity.WARNING,
                arg.lineno,
                f"parameter `{arg.arg}` of `{self.name}` is never used; use it, remove it, or "
                f"rename it `_{arg.arg}` if the signature must stay.",
            )

    def _check_string_concat(self) -> None:
        args = self.func.args
        str_names = {
            a.arg
            for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)
            if a.annotation is not None and _dotted_name(a.annotation) == "str"
        }
        for node in self.own:
            if isinstance(node, ast.Assign) and _is_str_expr(node.value):
                str_names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and _dotted_name(node.annotation) == "str"
            ):
                str_names.add(node.target.id)
        reported: set[str] = set()
        for loop in self.own:
            if not isinstance(loop, _LOOPS):
                continue
            for node in _walk(loop, own_scope=True):
                if not (
                    isinstance(node, ast.AugAssign)
                    and isinstance(node.op, ast.Add)
                    and isinstance(node.target, ast.Name)
                ):
                    continue
                name = node.target.id
                if name in reported or not (name in str_names or _is_str_expr(node.value)):
                    continue
                reported.add(name)
                self._add(
                    "string-concat-in-loop",
                    Category.PERFORMANCE,
                    Severity.WARNING,
                    node.lineno,
                    f"`{name} += ...` grows the string `{name}` inside a "
                    "loop, copying it on every iteration; append the pieces to a list and "
                    "`''.join()` them after the loop.",
                )

    def _check_globals(self) -> None:
        for node in self.nodes:
            if isinstance(node, ast.Global):
                self._add(
                    "global-statement",
                    Category.READABILITY,
                    Severity.WARNING,
                    node.lineno,
                    f"`global {', '.join(node.names)}` makes `{self.name}` "
                    "read and rebind module state; pass the value in and return the result, or "
                    "keep the state on an object.",
                )

    def _check_shadowed_builtins(self) -> None:
        args = self.func.args
        bound: list[tuple[str, int, str]] = [
            (a.arg, a.lineno, "parameter")
            for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg)
            if a is not None
        ]
        for node in self.nodes:
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                bound.append((node.id, node.lineno, "variable"))
            elif isinstance(node, ast.ExceptHandler) and node.name:
                bound.append((node.name, node.lineno, "variable"))
            elif isinstance(node, ast.alias):
                bound.append(
                    ((node.asname or node.name).split(".")[0], node.lineno, "imported name")
                )
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bound.append((node.name, node.lineno, "nested definition"))
        seen: set[str] = set()
        for name, line, kind in bound:
            if name not in _BUILTINS or name in seen:
                continue
            seen.add(name)
            self._add(
                "shadowed-builtin",
                Category.READABILITY,
                Severity.WARNING,
                line,
                f"{kind} `{name}` shadows the builtin `{name}` inside `{self.name}`; rename "
                f"it (e.g. `{name}_` or a more descriptive name).",
            )

    # --- secrets and SQL -------------------------------------------------------------------

    def _check_secrets(self) -> None:
        if self.is_test:
            return  # credentials in tests are fixtures, not secrets
        candidates: list[tuple[str, ast.expr | None, int]] = []
        args = self.func.args
        positional = [*args.posonlyargs, *args.args]
        candidates += [
            (a.arg, d, d.lineno)
            for a, d in zip(
                positional[len(positional) - len(args.defaults) :], args.defaults, strict=True
            )
        ]
        candidates += [
            (a.arg, d, d.lineno)
            for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
            if d is not None
        ]
        for node in self.nodes:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if name := _target_name(target):
                        candidates.append((name, node.value, node.lineno))
            elif isinstance(node, ast.AnnAssign) and (name := _target_name(node.target)):
                candidates.append((name, node.value, node.lineno))
            elif isinstance(node, ast.Call):
                candidates += [
                    (kw.arg, kw.value, kw.value.lineno) for kw in node.keywords if kw.arg
                ]
        for name, value, line in candidates:
            if not (
                isinstance(value, ast.Constant)
                and isinstance(value.value, str)
                and value.value
                and not _ENV_NAME_RE.match(value.value)  # the *name* of a variable holding it
                and _SECRET_NAME_RE.search(name.lstrip("_").lower())
            ):
                continue
            # The message never repeats the value: suggestions end up in logs and prompts.
            self._add(
                "hardcoded-secret",
                Category.SECURITY,
                Severity.ERROR,
                line,
                f"`{name}` is set to a string literal, so the secret lives in "
                "source control; read it from configuration or a secrets manager, and rotate "
                "the exposed value.",
            )

    def _check_sql(self) -> None:
        assignments: dict[str, list[ast.Assign | ast.AnnAssign]] = {}
        for node in self.own:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target = node.target
            else:
                continue
            if isinstance(target, ast.Name):
                assignments.setdefault(target.id, []).append(node)
        for node in self.nodes:
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _SQL_EXECUTE
                and node.args
            ):
                continue
            query: ast.expr | None = node.args[0]
            if isinstance(query, ast.Name):
                earlier = [a for a in assignments.get(query.id, []) if a.lineno <= node.lineno]
                query = earlier[-1].value if earlier else None
            built = _formatted_sql(query)
            if query is None or built is None:
                continue
            how, parts = built
            func = self._seg(node.func, 40)
            values = [self._seg(p, 30) for p in parts]
            where = f" on line {node.lineno}" if node.lineno != query.lineno else ""
            self._add(
                "sql-injection",
                Category.SECURITY,
                Severity.ERROR,
                query.lineno,
                f"the SQL passed to `{func}()`{where} is built with {how} from "
                f"{_code_list(values, 3)}, which allows SQL injection; pass the values as query "
                f'parameters instead, e.g. `{func}("... WHERE id = %s", ({values[0]},))` (the '
                "placeholder style depends on the driver).",
            )


def _target_name(target: ast.expr) -> str | None:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    return None


def _is_str_expr(node: ast.expr) -> bool:
    """Say whether ``node`` certainly evaluates to a str (literal, f-string, str(), ...)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if _is_str(current) or isinstance(current, ast.JoinedStr):
            return True
        if isinstance(current, ast.BinOp) and isinstance(current.op, ast.Add | ast.Mod):
            stack += [current.left, current.right]
        elif isinstance(current, ast.Call):
            name = _call_name(current)
            if name in {"str", "repr", "chr", "format"}:
                return True
            if (
                isinstance(current.func, ast.Attribute)
                and current.func.attr in {"format", "join"}
                and _is_str(current.func.value)
            ):
                return True
    return False


def _formatted_sql(node: ast.expr | None) -> tuple[str, list[ast.expr]] | None:
    """If ``node`` builds SQL text from values, return how it does and the values it uses."""
    if node is None:
        return None
    built = _string_building(node)
    if built is None:
        return None
    how, literal, values = built
    values = [v for v in values if not isinstance(v, ast.Constant)]
    if not values or not _SQL_RE.search(" ".join(literal)):
        return None
    return how, values


def _string_building(node: ast.expr) -> tuple[str, list[str], list[ast.expr]] | None:
    """Split a string built from pieces into (how, literal pieces, interpolated values)."""
    if isinstance(node, ast.JoinedStr):
        return ("an f-string", *_fstring_parts(node))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        template = node.func.value
        if node.func.attr == "format" and _is_str(template):
            values = [*node.args, *(kw.value for kw in node.keywords)]
            return "`str.format()`", [_str_value(template)], values
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and _is_str(node.left):
        right = node.right
        values = list(right.elts) if isinstance(right, ast.Tuple) else [right]
        return "`%` formatting", [_str_value(node.left)], values
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return ("string concatenation", *_concat_parts(node))
    return None


def _str_value(node: ast.expr) -> str:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""


def _fstring_parts(node: ast.JoinedStr) -> tuple[list[str], list[ast.expr]]:
    literal = [_str_value(part) for part in node.values if _is_str(part)]
    values = [part.value for part in node.values if isinstance(part, ast.FormattedValue)]
    return literal, values


def _concat_parts(node: ast.BinOp) -> tuple[list[str], list[ast.expr]]:
    literal: list[str] = []
    values: list[ast.expr] = []
    stack: list[ast.expr] = [node]
    while stack:  # iterative: `a + b + c + ...` nests as deep as it is long
        current = stack.pop()
        if isinstance(current, ast.BinOp) and isinstance(current.op, ast.Add):
            stack += [current.right, current.left]
        elif _is_str(current):
            literal.append(_str_value(current))
        elif isinstance(current, ast.JoinedStr):
            more_literal, more_values = _fstring_parts(current)
            literal += more_literal
            values += more_values
        else:
            values.append(current)
    return literal, values


def _blocks(stmt: ast.stmt) -> list[tuple[list[ast.stmt], bool]]:
    """The statement blocks nested in ``stmt``, each flagged True if it adds no depth."""
    if isinstance(stmt, ast.If):
        is_elif = len(stmt.orelse) == 1 and isinstance(stmt.orelse[0], ast.If)
        return [(stmt.body, False), (stmt.orelse, is_elif)]
    if isinstance(stmt, ast.For | ast.AsyncFor | ast.While):
        return [(stmt.body, False), (stmt.orelse, False)]
    if isinstance(stmt, ast.With | ast.AsyncWith):
        return [(stmt.body, False)]
    if isinstance(stmt, ast.Try | ast.TryStar):
        handlers = [(h.body, False) for h in stmt.handlers if isinstance(h, ast.ExceptHandler)]
        return [(stmt.body, False), *handlers, (stmt.orelse, False), (stmt.finalbody, False)]
    if isinstance(stmt, ast.Match):
        return [(case.body, False) for case in stmt.cases]
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        # A nested definition is not control flow; its body continues at the same depth.
        return [(stmt.body, True)]
    return []


def _block_terminates(stmts: Sequence[ast.stmt]) -> bool:
    """Say whether control can never run off the end of ``stmts`` (return, raise, ...)."""
    return any(_terminates(stmt) for stmt in stmts)


def _terminates(stmt: ast.stmt) -> bool:
    # Recursion depth is bounded by statement nesting, which the parser caps at 100 levels.
    if isinstance(stmt, ast.Return | ast.Raise | ast.Break | ast.Continue):
        return True
    if isinstance(stmt, ast.Expr):
        return _call_name(stmt.value) in _NO_RETURN_CALLS
    if isinstance(stmt, ast.Assert):
        return isinstance(stmt.test, ast.Constant) and not stmt.test.value
    if isinstance(stmt, ast.If):
        return _block_terminates(stmt.body) and _block_terminates(stmt.orelse)
    if isinstance(stmt, ast.While):
        if isinstance(stmt.test, ast.Constant) and stmt.test.value:
            return not _has_break(stmt)
        return _block_terminates(stmt.orelse) and not _has_break(stmt)
    if isinstance(stmt, ast.For | ast.AsyncFor):
        return _block_terminates(stmt.orelse) and not _has_break(stmt)
    if isinstance(stmt, ast.Try | ast.TryStar):
        if _block_terminates(stmt.finalbody):
            return True
        return _block_terminates([*stmt.body, *stmt.orelse]) and all(
            _block_terminates(h.body) for h in stmt.handlers if isinstance(h, ast.ExceptHandler)
        )
    if isinstance(stmt, ast.With | ast.AsyncWith):
        return _block_terminates(stmt.body)
    if isinstance(stmt, ast.Match):
        exhaustive = any(
            isinstance(case.pattern, ast.MatchAs)
            and case.pattern.pattern is None
            and not case.guard
            for case in stmt.cases
        )
        return exhaustive and all(_block_terminates(case.body) for case in stmt.cases)
    return False


def _has_break(loop: ast.For | ast.AsyncFor | ast.While) -> bool:
    """Say whether a ``break`` leaves ``loop`` itself (not a loop nested in it)."""
    stack: list[ast.AST] = list(loop.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Break):
            return True
        if not isinstance(node, (*_LOOPS, *_SCOPES)):
            stack.extend(ast.iter_child_nodes(node))
    return False
