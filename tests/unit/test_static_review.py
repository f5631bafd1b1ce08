"""The AST checks of functions.core.static_review: each one fires on the code it describes,
names the offending thing, and stays quiet on code that is fine."""

from __future__ import annotations

import textwrap

import pytest

from functions.core.static_review import (
    SYNTAX_ERROR,
    Category,
    Finding,
    Severity,
    analyze_function,
    dedent_source,
    findings_to_suggestions,
    merge_findings,
)


def check(source: str) -> list[Finding]:
    return analyze_function(textwrap.dedent(source))


def only(source: str, rule: str) -> list[Finding]:
    return [f for f in check(source) if f.rule == rule]


def one(source: str, rule: str) -> Finding:
    found = only(source, rule)
    assert len(found) == 1, found
    return found[0]


CLEAN = '''
def mean(values: list[float], *, default: float = 0.0) -> float:
    """Return the arithmetic mean of ``values``, or ``default`` when there are none."""
    if not values:
        return default
    total = 0.0
    for value in values:
        total += value
    return total / len(values)
'''


def test_a_clean_function_has_no_findings() -> None:
    assert analyze_function(CLEAN) == []
    assert findings_to_suggestions(analyze_function(CLEAN)) == []


def test_clean_method_async_function_and_decorators_have_no_findings() -> None:
    source = '''
    class Service:
        @staticmethod
        def double(x: int) -> int:
            """Return twice ``x``."""
            return 2 * x

        async def fetch(self, client: Client, url: str) -> bytes:
            """Download ``url`` with the shared async client."""
            response = await client.get(url)
            if response.status_code is None:
                raise ValueError(f"no status for {url}")
            with open(self.path, "wb") as out:
                out.write(response.content)
            return response.content
    '''
    assert check(source) == []
    method = "\n".join(textwrap.dedent(source).splitlines()[7:])
    assert method.startswith("    async def fetch")
    assert analyze_function(method) == []


# --- docs and typing -----------------------------------------------------------------------


def test_missing_docstring_hints_what_to_document() -> None:
    finding = one(
        """
        def parse(text: str, strict: bool) -> int:
            if strict and not text:
                raise ValueError("empty")
            return int(text)
        """,
        "missing-docstring",
    )
    assert (finding.category, finding.severity, finding.line) == (Category.DOCS, Severity.INFO, 2)
    assert "`parse`" in finding.message
    assert "`text`, `strict`" in finding.message
    assert "what it returns" in finding.message
    assert "`ValueError`" in finding.message


def test_private_and_documented_functions_need_no_docstring() -> None:
    assert not only("def _helper(x: int) -> int:\n    return x\n", "missing-docstring")
    assert not only('def f() -> None:\n    """Doc."""\n', "missing-docstring")


def test_missing_type_hints_names_parameters_and_return() -> None:
    finding = one("def add(a, b):\n    return a + b\n", "missing-type-hints")
    assert finding.category is Category.TYPING
    assert finding.line == 1
    assert finding.as_suggestion() == (
        "[typing] Line 1: add type hints to parameters `a`, `b` and the return value of `add`."
    )


def test_missing_type_hints_skips_self_and_annotated_parameters() -> None:
    source = """
        def scale(self, factor, offset: int = 0, *args, **kwargs) -> int:
            return factor + offset + len(args) + len(kwargs)
    """
    finding = one(source, "missing-type-hints")
    assert "`factor`, `*args`, `**kwargs` of `scale`" in finding.message
    assert "`self`" not in finding.message
    assert "`offset`" not in finding.message


def test_missing_return_hint_suggests_none_when_nothing_is_returned() -> None:
    finding = one("def log(msg: str):\n    logger.info(msg)\n", "missing-type-hints")
    assert finding.message == (
        "add a type hint for the return value of `log` (`-> None`: it never returns a value)."
    )


# --- bugs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("default", ["[]", "{}", "{1}", "list()", "dict()", "set()"])
def test_mutable_default(default: str) -> None:
    finding = one(
        f"def add(item: int, items: list[int] = {default}) -> None:\n    items.append(item)\n",
        "mutable-default",
    )
    assert (finding.category, finding.severity, finding.line) == (
        Category.BUG,
        Severity.WARNING,
        1,
    )
    assert "`items`" in finding.message
    assert "None" in finding.message


def test_keyword_only_mutable_default_and_immutable_defaults() -> None:
    source = "def f(*, seen: set[int] = set(), n: int = 0, t: tuple[int] = ()) -> None:\n    pass\n"
    [finding] = only(source, "mutable-default")
    assert "`seen`" in finding.message


def test_bare_except() -> None:
    finding = one(
        """
        def load(path: str) -> str | None:
            try:
                return read(path)
            except:
                return None
        """,
        "bare-except",
    )
    assert (finding.category, finding.severity, finding.line) == (
        Category.BUG,
        Severity.WARNING,
        5,
    )
    assert "`return read(path)`" in finding.message
    assert "SystemExit" in finding.message


def test_except_exception_pass_is_swallowing() -> None:
    finding = one(
        """
        def close(conn: Conn) -> None:
            try:
                conn.close()
            except Exception:
                pass
        """,
        "swallowed-exception",
    )
    assert finding.line == 5
    assert "`conn.close()`" in finding.message
    assert "logger.exception" in finding.message


def test_except_exception_that_handles_the_error_is_fine() -> None:
    source = """
        def close(conn: Conn) -> None:
            try:
                conn.close()
            except Exception:
                logger.exception("close failed")
            try:
                conn.reset()
            except OSError:
                pass
    """
    assert not [f for f in check(source) if "except" in f.rule]


def test_broad_except_base_exception() -> None:
    finding = one(
        """
        def run(job: Job) -> None:
            try:
                job()
            except BaseException:
                job.failed = True
        """,
        "broad-except",
    )
    assert finding.line == 5
    assert "KeyboardInterrupt" in finding.message


def test_base_exception_that_reraises_is_fine() -> None:
    source = """
        def run(job: Job) -> None:
            try:
                job()
            except BaseException:
                job.cleanup()
                raise
    """
    assert not only(source, "broad-except")


def test_inconsistent_return_falling_off_the_end() -> None:
    finding = one(
        """
        def find(items: list[int], wanted: int) -> int | None:
            for index, item in enumerate(items):
                if item == wanted:
                    return index
        """,
        "inconsistent-return",
    )
    assert (finding.category, finding.line) == (Category.BUG, 2)
    assert "`find` returns a value on line 5" in finding.message
    assert "return None" in finding.message


def test_inconsistent_return_with_bare_return() -> None:
    finding = one(
        """
        def first(items: list[int]) -> int | None:
            if not items:
                return
            return items[0]
        """,
        "inconsistent-return",
    )
    assert "bare `return` on line 4" in finding.message


@pytest.mark.parametrize(
    "body",
    [
        "if x:\n        return 1\n    return 2",
        "if x:\n        return 1\n    else:\n        raise ValueError(x)",
        "while True:\n        if x:\n            return 1",
        "try:\n        return int(x)\n    except ValueError:\n        return 0",
        "match x:\n        case 1:\n            return 1\n        case _:\n            return 2",
        "if x:\n        return 1\n    sys.exit(1)",
        "if x:\n        return None\n    print(x)",
    ],
)
def test_consistent_returns_are_fine(body: str) -> None:
    assert not only(f"def f(x: int) -> int:\n    {body}\n", "inconsistent-return")


def test_generators_and_none_annotated_functions_may_fall_off_the_end() -> None:
    assert not only(
        "def g(x: int):\n    if x:\n        return 1\n    yield 2\n", "inconsistent-return"
    )
    source = "def start(self) -> None:\n    if self.sub:\n        return self.sub.start()\n"
    assert not only(source, "inconsistent-return")


def test_open_without_with() -> None:
    finding = one(
        """
        def read_config(path: str) -> str:
            handle = open(path)
            return handle.read()
        """,
        "open-without-with",
    )
    assert (finding.category, finding.line) == (Category.BUG, 3)
    assert "`open(path)`" in finding.message
    assert "with open(path) as f:" in finding.message


@pytest.mark.parametrize(
    "body",
    [
        "with open(path) as f:\n        return f.read()",
        "with closing(open(path)) as f:\n        return f.read()",
        "return open(path)",
        "f = open(path)\n    try:\n        return f.read()\n    finally:\n        f.close()",
        "self._file = open(path)",
        "f = open(path)\n    return FileStorage(f)",
        "stack.enter_context(open(path))",
    ],
)
def test_managed_open_is_fine(body: str) -> None:
    assert not only(
        f"def f(self, path: str, stack: ExitStack) -> None:\n    {body}\n", "open-without-with"
    )


def test_assert_validating_an_argument() -> None:
    finding = one(
        """
        def withdraw(account: Account, amount: int) -> None:
            assert amount > 0, "amount must be positive"
            account.balance -= amount
        """,
        "assert-validation",
    )
    assert (finding.category, finding.severity, finding.line) == (Category.BUG, Severity.INFO, 3)
    assert "`amount`" in finding.message
    assert "ValueError" in finding.message
    isinstance_check = "def f(x: object) -> None:\n    assert isinstance(x, int)\n    use(x)\n"
    assert "TypeError" in one(isinstance_check, "assert-validation").message


def test_asserts_in_tests_and_on_local_state_are_fine() -> None:
    assert not only(
        "def test_x(tmp_path: Path) -> None:\n    assert tmp_path.exists()\n", "assert-validation"
    )
    source = "def f(x: int) -> int:\n    y = compute(x)\n    assert y > 0\n    return y\n"
    assert not only(source, "assert-validation")


@pytest.mark.parametrize(("op", "fix"), [("==", "is"), ("!=", "is not")])
def test_comparison_to_none(op: str, fix: str) -> None:
    finding = one(
        f"def f(value: int | None) -> bool:\n    return value {op} None\n", "none-comparison"
    )
    assert finding.line == 2
    assert f"`value {fix} None`" in finding.message


# --- security ------------------------------------------------------------------------------


@pytest.mark.parametrize("func", ["eval", "exec"])
def test_eval_and_exec(func: str) -> None:
    finding = one(f"def run(expr: str) -> None:\n    {func}(expr)\n", "eval-exec")
    assert (finding.category, finding.severity, finding.line) == (
        Category.SECURITY,
        Severity.ERROR,
        2,
    )
    assert f"`{func}(expr)`" in finding.message


def test_eval_method_of_an_object_is_not_the_builtin() -> None:
    assert not only("def f(model: Model) -> None:\n    model.eval()\n", "eval-exec")


def test_subprocess_with_shell_true() -> None:
    finding = one(
        "def run(cmd: str) -> int:\n    return subprocess.call(cmd, shell=True)\n",
        "subprocess-shell",
    )
    assert (finding.category, finding.severity, finding.line) == (
        Category.SECURITY,
        Severity.ERROR,
        2,
    )
    assert "`subprocess.call(cmd, shell=True)`" in finding.message
    assert "`cmd`" in finding.message


def test_subprocess_without_shell_and_fixed_os_system_are_fine() -> None:
    source = """
        def f(p: str) -> None:
            subprocess.run(["ls", p], check=True)
            os.system("clear")
    """
    assert not only(source, "subprocess-shell")
    assert only('def f(p: str) -> None:\n    os.system("ls " + p)\n', "subprocess-shell")


def test_hard_coded_secret_is_reported_without_its_value() -> None:
    finding = one(
        """
        def connect() -> Conn:
            db_password = "hunter2"
            return Conn(password=db_password)
        """,
        "hardcoded-secret",
    )
    assert (finding.category, finding.severity, finding.line) == (
        Category.SECURITY,
        Severity.ERROR,
        3,
    )
    assert "`db_password`" in finding.message
    assert "hunter2" not in finding.message


@pytest.mark.parametrize(
    "code",
    [
        'api_key = "sk-live-123"',
        'self.token = "abc"',
        'client(secret="abc")',
    ],
)
def test_hard_coded_secret_forms(code: str) -> None:
    assert only(f"def f(self) -> None:\n    {code}\n", "hardcoded-secret")


@pytest.mark.parametrize(
    "code",
    [
        'token_type = "bearer"',
        'secret_name = "prod/db"',
        'password = ""',
        'password_env = "DB_PASSWORD"',
        'token = "GITHUB_TOKEN"',
        'password = os.environ["DB_PASSWORD"]',
    ],
)
def test_names_and_values_that_are_not_secrets(code: str) -> None:
    assert not only(f"def f() -> None:\n    {code}\n", "hardcoded-secret")


def test_hard_coded_secret_in_a_default() -> None:
    finding = one(
        'def login(user: str, password: str = "admin") -> None:\n    use(user, password)\n',
        "hardcoded-secret",
    )
    assert "`password`" in finding.message


def test_sql_built_with_an_f_string() -> None:
    finding = one(
        """
        def find_user(cursor: Cursor, user_id: str) -> Row:
            cursor.execute(f"SELECT * FROM users WHERE id = {user_id}")
            return cursor.fetchone()
        """,
        "sql-injection",
    )
    assert (finding.category, finding.severity, finding.line) == (
        Category.SECURITY,
        Severity.ERROR,
        3,
    )
    assert "`user_id`" in finding.message
    assert "`cursor.execute()`" in finding.message
    assert "f-string" in finding.message


@pytest.mark.parametrize(
    ("query", "how"),
    [
        ("\"SELECT * FROM t WHERE name = '%s'\" % name", "`%` formatting"),
        ('"DELETE FROM t WHERE name = {}".format(name)', "`str.format()`"),
        ('"UPDATE t SET x = 1 WHERE name = " + name', "string concatenation"),
    ],
)
def test_sql_built_in_a_variable(query: str, how: str) -> None:
    source = f"def f(db: Db, name: str) -> None:\n    sql = {query}\n    db.execute(sql)\n"
    finding = one(source, "sql-injection")
    assert finding.line == 2
    assert how in finding.message
    assert "`name`" in finding.message
    assert "on line 3" in finding.message


def test_parameterised_sql_is_fine() -> None:
    source = """
        def f(db: Db, name: str) -> None:
            db.execute("SELECT * FROM t WHERE name = %s", (name,))
            db.execute(f"SELECT * FROM {TABLE}")
            logger.info(f"selected {name}")
    """
    # The second query interpolates a constant name, which is still string-built SQL.
    assert [f.line for f in only(source, "sql-injection")] == [4]


@pytest.mark.parametrize(
    ("call", "fix"),
    [
        ("pickle.loads(data)", "JSON"),
        ("pickle.load(data)", "JSON"),
        ("yaml.load(data)", "yaml.safe_load(data)"),
        ("yaml.load(data, Loader=yaml.Loader)", "yaml.safe_load(data)"),
    ],
)
def test_unsafe_deserialization(call: str, fix: str) -> None:
    finding = one(f"def f(data: bytes) -> object:\n    return {call}\n", "unsafe-deserialization")
    assert (finding.category, finding.line) == (Category.SECURITY, 2)
    assert call.split("(")[0] in finding.message
    assert fix in finding.message


def test_yaml_with_safe_loader_is_fine() -> None:
    source = "def f(d: str) -> object:\n    return yaml.load(d, Loader=yaml.SafeLoader)\n"
    assert not only(source, "unsafe-deserialization")


# --- async ---------------------------------------------------------------------------------


def test_time_sleep_in_async_function() -> None:
    finding = one(
        """
        async def poll(client: Client) -> None:
            while not await client.ready():
                time.sleep(1)
        """,
        "blocking-sleep-in-async",
    )
    assert (finding.category, finding.line) == (Category.PERFORMANCE, 4)
    assert "`await asyncio.sleep(1)`" in finding.message
    assert "`poll`" in finding.message


def test_blocking_requests_in_async_function() -> None:
    finding = one(
        "async def fetch(url: str) -> bytes:\n    return requests.get(url).content\n",
        "blocking-http-in-async",
    )
    assert (finding.category, finding.line) == (Category.PERFORMANCE, 2)
    assert "`requests.get(url)`" in finding.message


def test_blocking_calls_outside_the_coroutine_body_are_fine() -> None:
    source = """
        async def fetch(url: str) -> bytes:
            def work() -> bytes:
                time.sleep(1)
                return requests.get(url).content

            await asyncio.sleep(1)
            return await asyncio.to_thread(requests.get, url)
    """
    found = {f.rule for f in check(source)}
    assert not found & {"blocking-sleep-in-async", "blocking-http-in-async"}
    assert not only("def f() -> None:\n    time.sleep(1)\n", "blocking-sleep-in-async")


# --- size and shape ------------------------------------------------------------------------


def test_too_long_says_how_long() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(55))
    finding = one(f"def f() -> None:\n{body}", "too-long")
    assert (finding.category, finding.line) == (Category.READABILITY, 1)
    assert "56 lines long with 55 statements" in finding.message


def test_a_long_docstring_does_not_make_a_function_too_long() -> None:
    doc = "\n".join(["    Details."] * 80)
    assert not only(
        f'def f() -> None:\n    """Summary.\n\n{doc}\n    """\n    return None\n', "too-long"
    )


def test_too_complex_gives_the_number() -> None:
    body = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(11))
    finding = one(f"def f(x: int) -> int:\n{body}    return -1\n", "too-complex")
    assert "cyclomatic complexity of 12" in finding.message
    assert "`f`" in finding.message


def test_complexity_counts_boolean_operators_and_comprehension_ifs() -> None:
    source = (
        "def f(a: int) -> list[int]:\n    return [x for x in range(a) if x and a or x if x > 1]\n"
    )
    # 1 + one comprehension `if` + two boolean operands + one conditional expression.
    assert not only(source, "too-complex")
    conditions = " and ".join(f"a > {i}" for i in range(11))
    assert only(f"def f(a: int) -> bool:\n    return {conditions}\n", "too-complex")


def test_too_many_parameters() -> None:
    finding = one(
        "def f(self, a: int, b: int, c: int, d: int, e: int, g: int, *, h: int) -> int:\n"
        "    return a + b + c + d + e + g + h\n",
        "too-many-parameters",
    )
    assert "7 parameters" in finding.message
    assert "`h`" in finding.message
    assert "`self`" not in finding.message


def test_deep_nesting() -> None:
    finding = one(
        """
        def f(rows: list[list[int]]) -> int:
            total = 0
            for row in rows:
                if row:
                    for cell in row:
                        if cell > 0:
                            while cell:
                                cell -= 1
                                total += 1
            return total
        """,
        "deep-nesting",
    )
    assert (finding.category, finding.line) == (Category.READABILITY, 9)
    assert "5 levels" in finding.message


def test_elif_chains_do_not_count_as_nesting() -> None:
    branches = "".join(f"    elif x == {i}:\n        y = {i}\n" for i in range(10))
    source = (
        f"def f(x: int) -> int:\n    y = 0\n    if x < 0:\n        y = -1\n{branches}    return y\n"
    )
    assert not only(source, "deep-nesting")


# --- names ---------------------------------------------------------------------------------


def test_print_in_library_code() -> None:
    finding = one('def report(n: int) -> None:\n    print("count")\n    print(n)\n', "print-call")
    assert (finding.category, finding.severity, finding.line) == (
        Category.READABILITY,
        Severity.INFO,
        2,
    )
    assert "lines 2, 3" in finding.message
    assert not only('def main() -> None:\n    print("hello")\n', "print-call")


def test_unused_parameter() -> None:
    finding = one(
        "def fetch(url: str, timeout: float) -> bytes:\n    return get(url)\n", "unused-parameter"
    )
    assert finding.line == 1
    assert "`timeout`" in finding.message
    assert "`_timeout`" in finding.message


@pytest.mark.parametrize(
    "source",
    [
        "def f(self, x: int) -> int:\n    raise NotImplementedError\n",
        '@abstractmethod\ndef f(self, x: int) -> int:\n    """Doc."""\n',
        "def f(self, x: int) -> int:\n    ...\n",
        "def f(_x: int) -> int:\n    return 1\n",
        "def __exit__(self, exc_type, exc, tb) -> None:\n    self.close()\n",
        "def f(x: int) -> dict[str, int]:\n    return locals()\n",
        "def f(x: int) -> Callable[[], int]:\n    return lambda: x\n",
    ],
)
def test_parameters_that_may_be_unused(source: str) -> None:
    assert not only(source, "unused-parameter")


def test_string_concatenation_in_a_loop() -> None:
    finding = one(
        """
        def render(rows: list[str]) -> str:
            out = ""
            for row in rows:
                out += row + "\\n"
            return out
        """,
        "string-concat-in-loop",
    )
    assert (finding.category, finding.line) == (Category.PERFORMANCE, 5)
    assert "`out`" in finding.message
    assert "join" in finding.message


def test_number_accumulation_in_a_loop_is_fine() -> None:
    source = """
        def f(rows: list[int]) -> int:
            n = 0
            for r in rows:
                n += r
            return n
    """
    assert not only(source, "string-concat-in-loop")


def test_global_statement() -> None:
    finding = one("def bump() -> None:\n    global counter\n    counter += 1\n", "global-statement")
    assert finding.line == 2
    assert "`global counter`" in finding.message


@pytest.mark.parametrize(
    ("source", "name", "line"),
    [
        ("def f(list: list[int]) -> int:\n    return len(list)\n", "list", 1),
        ("def f(x: int) -> int:\n    id = x + 1\n    return id\n", "id", 2),
        ("def f(xs: list[int]) -> None:\n    for type in xs:\n        use(type)\n", "type", 2),
    ],
)
def test_shadowed_builtin(source: str, name: str, line: int) -> None:
    finding = one(source, "shadowed-builtin")
    assert finding.line == line
    assert f"`{name}`" in finding.message


def test_method_named_like_a_builtin_does_not_shadow() -> None:
    assert not only(
        'def format(self) -> str:\n    """Doc."""\n    return "x"\n', "shadowed-builtin"
    )


def test_empty_function() -> None:
    finding = one("def on_event(event: Event) -> None:\n    pass\n", "empty-function")
    assert (finding.severity, finding.line) == (Severity.INFO, 1)
    assert "`on_event`" in finding.message
    # Not also "unused parameter": an empty body is a stub.
    assert not only("def on_event(event: Event) -> None:\n    pass\n", "unused-parameter")
    assert not only('def on_event() -> None:\n    """Hook: no-op."""\n    pass\n', "empty-function")


# --- input shapes --------------------------------------------------------------------------


def test_indented_decorated_method_keeps_the_given_line_numbers() -> None:
    source = (
        "\n"
        "    @retry(times=3)\n"
        "    @property\n"
        "    def items(self, cache={}):\n"
        '        """Return the items."""\n'
        "        return eval(self.expr)\n"
    )
    found = analyze_function(source)
    assert {(f.rule, f.line) for f in found} >= {("mutable-default", 4), ("eval-exec", 6)}


def test_async_method() -> None:
    source = (
        "    async def refresh(self, session) -> None:\n"
        '        """Refresh the cache."""\n'
        "        time.sleep(0.5)\n"
        "        await session.commit()\n"
    )
    found = analyze_function(source)
    assert [(f.rule, f.line) for f in found] == [
        ("blocking-sleep-in-async", 3),
        ("missing-type-hints", 1),
    ]


def test_less_indented_string_lines_in_a_method_still_parse() -> None:
    source = (
        "    def sql(self) -> str:\n"
        '        """Return the query."""\n'
        '        return """\n'
        "SELECT 1\n"
        '"""\n'
    )
    assert dedent_source(source).startswith("def sql")
    assert analyze_function(source) == []


def test_source_without_a_function_gives_nothing() -> None:
    assert analyze_function("x = 1\n") == []
    assert analyze_function("") == []


def test_a_method_inside_a_pasted_class_is_found() -> None:
    assert only("class A:\n    def f(self, x):\n        return x\n", "missing-type-hints")


@pytest.mark.parametrize(
    ("source", "line", "text"),
    [
        ("def f(:\n    pass\n", 1, "invalid syntax"),
        ("def f():\n    x = 1\n  y = 2\n", 3, "indent"),
        ("def f():\n    return 1\x00\n", 2, "null bytes"),
    ],
)
def test_syntax_error_is_one_clear_finding(source: str, line: int, text: str) -> None:
    [finding] = analyze_function(source)
    assert (finding.rule, finding.category, finding.severity, finding.line) == (
        SYNTAX_ERROR,
        Category.BUG,
        Severity.ERROR,
        line,
    )
    assert text in finding.message
    assert "cannot parse" in finding.message


@pytest.mark.parametrize(
    "expression",
    [
        "(" * 100_000 + "1" + ")" * 100_000,
        "-" * 100_000 + "1",
        "a" + ".b" * 100_000,
        "+".join(["a"] * 100_000),
    ],
    ids=["parentheses", "unary", "attributes", "binary"],
)
def test_expression_nested_100000_levels_deep(expression: str) -> None:
    [finding] = analyze_function(f"def f():\n    return {expression}\n")
    assert finding.rule == SYNTAX_ERROR
    assert finding.severity is Severity.ERROR
    assert "cannot parse" in finding.message


def test_deep_but_parseable_expression_is_analysed_without_recursion() -> None:
    # Deep enough that ast.unparse or a recursive NodeVisitor would overflow.
    expression = " + ".join(["x"] * 400)
    assert (
        analyze_function(f'def f(x: int) -> int:\n    """Doc."""\n    return {expression}\n') == []
    )
    rules = {f.rule for f in analyze_function(f"def f(x):\n    return {expression}\n")}
    assert rules == {"missing-docstring", "missing-type-hints"}


# --- ordering and formatting ---------------------------------------------------------------


def test_findings_are_ordered_by_severity_then_line() -> None:
    found = check(
        """
        def f(items=[]):
            print(items)
            return eval(items)
        """
    )
    keys = [(f.severity.rank, f.line) for f in found]
    assert keys == sorted(keys)
    assert found[0].rule == "eval-exec"


def test_merge_keeps_the_first_report_of_a_problem() -> None:
    ours = Finding("mutable-default", Category.BUG, Severity.WARNING, 3, "ours")
    ruff = Finding("B006", Category.BUG, Severity.WARNING, 3, "ruff")
    other_line = Finding("B006", Category.BUG, Severity.WARNING, 9, "ruff elsewhere")
    assert merge_findings([ours], [ruff, other_line]) == [ours, other_line]
    # Per-function rules match whatever line each tool chose.
    ret = Finding("inconsistent-return", Category.BUG, Severity.WARNING, 2, "ours")
    ret503 = Finding("RET503", Category.BUG, Severity.WARNING, 1, "ruff")
    assert merge_findings([ret], [ret503]) == [ret]
    # Within one list only exact repeats go.
    a = Finding("unused-parameter", Category.READABILITY, Severity.WARNING, 1, "`a`")
    b = Finding("unused-parameter", Category.READABILITY, Severity.WARNING, 1, "`b`")
    assert merge_findings([a, b, a]) == [a, b]


def test_suggestions_format_and_limit() -> None:
    found = check("def f(a, b=[]):\n    return eval(a)\n")
    suggestions = findings_to_suggestions(found)
    assert suggestions[0].startswith("[security] Line 2: `eval(a)`")
    assert all(s.startswith("[") and "] Line " in s for s in suggestions)
    assert findings_to_suggestions(found, limit=1) == suggestions[:1]
    assert findings_to_suggestions(found, limit=0) == []
    assert findings_to_suggestions([]) == []
