"""Which host programs the project runs, found by reading its files (nothing is run).

Python files are read with ``ast``. The program of every call that starts one
(subprocess's run/call/check_call/check_output/Popen, os.system/popen/exec*/posix_spawn*,
shutil.which) is followed back to the literal that names it: through assignments in the
function and the module, imports between the project's own modules, ``str()``/``Path()``,
``argv + more``, ``a if c else b``, comprehensions and loops over literal tuples. A function
that hands one of its parameters on to such a call is a runner in turn, so ``_run(["qemu-img",
...])`` counts as running qemu-img. A call whose program cannot be followed back to a literal
is reported as such, so nothing hides behind a variable. Whatever comes from
``sys.executable`` is the project's own virtualenv and not a host program.

Shell text (Makefile recipes, shell scripts, shell=True strings) is read by ``shell_commands``:
the words in command position, less builtins, keywords, functions and expansions.
"""

import ast
import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

VENV = "<venv>"  # a program of the project's own virtualenv (sys.executable and its neighbours)


class Mode(enum.Enum):
    ARGV = "argv"  # the expression is an argv list (or a shell string)
    PROGRAM = "program"  # the expression is the program itself
    ARGVS = "argvs"  # a collection whose every element is an argv
    PROGRAMS = "programs"  # a collection whose every element is a program


ELEMENT = {Mode.ARGVS: Mode.ARGV, Mode.PROGRAMS: Mode.PROGRAM}
COLLECTION = {Mode.ARGV: Mode.ARGVS, Mode.PROGRAM: Mode.PROGRAMS}

# (module, function) -> (index, keyword, mode) of the argument that names what is run.
SINKS: dict[tuple[str, str], tuple[int, str, Mode]] = {
    **{("subprocess", name): (0, "args", Mode.ARGV) for name in ("run", "call", "check_call", "check_output", "Popen")},
    ("os", "system"): (0, "command", Mode.ARGV),
    ("os", "popen"): (0, "cmd", Mode.ARGV),
    **{("os", name): (0, "path", Mode.PROGRAM) for name in ("execv", "execve", "execl", "execle", "posix_spawn")},
    **{("os", name): (0, "file", Mode.PROGRAM) for name in ("execvp", "execvpe", "execlp", "execlpe", "posix_spawnp")},
    ("shutil", "which"): (0, "cmd", Mode.PROGRAM),
}
PATH_CALLS = {"str", "Path", "fspath", "PurePath", "list", "tuple", "split", "which", "resolve", "expanduser"}


@dataclass(frozen=True)
class Use:
    where: str  # path:line of the call (or of the shell line)
    program: str  # a command name or an absolute path


@dataclass
class Found:
    uses: set[Use] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)  # "path:line: why the program cannot be told"


@dataclass
class _Result:
    programs: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)
    params: set[tuple[ast.AST, int, str, Mode]] = field(default_factory=set)  # (function, index, name, mode)

    def __or__(self, other: "_Result") -> "_Result":
        return _Result(self.programs | other.programs, self.unknown | other.unknown, self.params | other.params)


# ---- shell text -----------------------------------------------------------------------------

SHELL_BUILTINS = frozenset(
    ". : [ alias bg break cd command continue echo eval exec exit export false fg getopts hash jobs kill local "
    "printf pwd read readonly return set shift source test times trap true type ulimit umask unalias unset wait".split()
)
SHELL_KEYWORDS = frozenset("if then else elif fi do done while until for in case esac ! { } function time".split())
SHELLS = frozenset({"sh", "bash", "dash"})
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
_REDIRECTION = r"\d*(?:<<-?|>>|<>|>\||[<>]&?)(?:\d+-?|-)?"
_TOKEN = re.compile(rf"{_REDIRECTION}|;;|&&|\|\||\$\(|[;|&()`\n]|[^\s;|&()`<>]+")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*|/[A-Za-z0-9_./+-]+")
_FUNCTION = re.compile(r"^\s*(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\s*\)", re.MULTILINE)


def shell_commands(text: str) -> list[tuple[int, str]]:
    """(line, command) for every word in command position of POSIX shell text."""
    functions = set(_FUNCTION.findall(text))
    scanner = _CommandScanner()
    return [
        (number, word)
        for number, line in _shell_lines(text)
        for word in scanner.feed(line)
        if _NAME.fullmatch(word) and word not in SHELL_BUILTINS | functions
    ]


def _shell_lines(text: str) -> Iterator[tuple[int, str]]:
    """Logical lines (continuations joined, numbered by their first line) without comments, quoted
    text or here-document bodies."""
    heredoc: str | None = None
    logical: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        if line.endswith("\\"):
            logical.append(line[:-1])
            continue
        whole = "".join(logical) + line
        match = _HEREDOC.search(whole)
        heredoc = match.group(2) if match else None
        yield number - len(logical), _unquoted(whole)
        logical = []


def _unquoted(line: str) -> str:
    """The line with comments dropped and quoted strings blanked, keeping $(...) and `...` found in "..."."""
    out, i = [], 0
    while i < len(line):
        char = line[i]
        if char == "#" and (i == 0 or line[i - 1].isspace()):
            break
        if char == "'":
            end = line.find("'", i + 1)
            i = len(line) if end < 0 else end + 1
            out.append('""')
        elif char == '"':
            end = i + 1
            while end < len(line) and line[end] != '"':
                end += 2 if line[end] == "\\" else 1
            out.append('""' + "".join(f" ; {command} ; " for command in _substitutions(line[i + 1 : end])))
            i = end + 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _substitutions(quoted: str) -> list[str]:
    """The commands of the $(...) and `...` inside a double-quoted string."""
    return [dollar or tick for dollar, tick in re.findall(r"\$\(([^)]*)\)|`([^`]*)`", quoted)]


class _CommandScanner:
    """Reads shell tokens line after line; ``feed`` yields the words in command position."""

    def __init__(self) -> None:
        self.at_start = True  # the next word is a command
        self.patterns = False  # inside `case ... in` before a pattern's `)`
        self.case_word = False  # after `case`, until its `in`
        self.target = False  # the next word is a redirection's file

    def feed(self, line: str) -> Iterator[str]:
        for token in _TOKEN.findall(line + "\n"):
            if self.target:
                self.target = False
            elif self.patterns:
                self.patterns, self.at_start = token not in (")", "esac"), True
            elif token == ";;":
                self.patterns = True
            elif token in (";", "|", "&", "&&", "||", "\n", "(", "$(", "`", "{"):
                self.at_start = True
            elif token == ")":
                self.at_start = False
            elif re.fullmatch(_REDIRECTION, token):
                self.target = not re.search(r"&(\d+|-)$", token)
            elif self.case_word and token == "in":
                self.case_word, self.patterns = False, True
            elif self.at_start and token in ("for", "case"):  # then a name and words, not commands
                self.at_start, self.case_word = False, token == "case"
            elif self.at_start and (token in SHELL_KEYWORDS | {"exec"} or re.fullmatch(r"\w+=.*", token)):
                pass  # `exec cmd` runs cmd
            elif self.at_start:
                self.at_start = False
                yield token


def makefile_uses(text: str, where: str = "Makefile") -> set[Use]:
    """The programs a Makefile's recipes run (make's own $(VARIABLES) are not followed)."""
    recipes = "\n".join(_recipe(line) if line.startswith("\t") else "" for line in text.splitlines())
    return {Use(f"{where}:{number}", command) for number, command in shell_commands(recipes)}


def _recipe(line: str) -> str:
    """A recipe line as the shell gets it, with make's own variables left as unknown words."""
    text = line[1:].lstrip("@-+").replace("$$", "\0").replace("$(shell ", "$(")
    return re.sub(r"\$[({][A-Za-z_]\w*[)}]", "$MAKE_VARIABLE", text).replace("\0", "$")


# ---- Python files ---------------------------------------------------------------------------


@dataclass
class _Module:
    name: str
    where: str
    tree: ast.Module
    parents: dict[ast.AST, ast.AST]
    aliases: dict[str, tuple[str, str | None]]  # local name -> (module, name or None for the module itself)


def python_uses(root: Path, files: Iterable[Path]) -> Found:
    """The host programs the given Python files run, and the calls whose program cannot be told."""
    modules = {module.name: module for module in (_load(root, path) for path in files)}
    sinks = dict(SINKS)
    while True:  # runners of runners: until no new function hands a parameter on
        found, added = Found(), False
        for module in modules.values():
            for call, target in _calls(module):
                if target not in sinks:
                    continue
                result = _argument(module, modules, call, *sinks[target])
                found.uses.update(Use(f"{module.where}:{call.lineno}", program) for program in result.programs)
                found.unknown.update(f"{module.where}:{call.lineno}: {why}" for why in result.unknown)
                for function, index, name, mode in result.params:
                    key = _function_key(module, function)
                    if key is None:
                        found.unknown.add(
                            f"{module.where}:{call.lineno}: the program is a parameter of a nested function"
                        )
                    elif key not in sinks:
                        sinks[key], added = (index, name, mode), True
        if not added:
            found.uses = {use for use in found.uses if use.program != VENV}
            return found


def _load(root: Path, path: Path) -> _Module:
    relative = path.relative_to(root)
    tree = ast.parse(path.read_text(), str(relative))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
    aliases: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({alias.asname or alias.name.split(".")[0]: (alias.name, None) for alias in node.names})
        elif isinstance(node, ast.ImportFrom):
            package = ".".join(name.split(".")[: len(name.split(".")) - node.level]) if node.level else ""
            source = ".".join(part for part in (package, node.module or "") if part)
            aliases.update({alias.asname or alias.name: (source, alias.name) for alias in node.names})
    return _Module(name, str(relative), tree, parents, aliases)


def _calls(module: _Module) -> Iterator[tuple[ast.Call, tuple[str, str]]]:
    """Every call with the (module, function) it calls, where that can be told."""
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Call):
            continue
        callee = node.func
        if isinstance(callee, ast.Name):
            origin = module.aliases.get(callee.id)
            if origin and origin[1]:
                yield node, (origin[0], origin[1])
            elif any(isinstance(top, ast.FunctionDef) and top.name == callee.id for top in module.tree.body):
                yield node, (module.name, callee.id)
        elif isinstance(callee, ast.Attribute) and isinstance(callee.value, ast.Name):
            origin = module.aliases.get(callee.value.id)
            if origin:
                yield node, (origin[0] if origin[1] is None else f"{origin[0]}.{origin[1]}", callee.attr)


def _function_key(module: _Module, function: ast.AST) -> tuple[str, str] | None:
    return (module.name, function.name) if function in module.tree.body else None  # type: ignore[attr-defined]


def _argument(
    module: _Module, modules: dict[str, _Module], call: ast.Call, index: int, keyword: str, mode: Mode
) -> _Result:
    if len(call.args) > index and not isinstance(call.args[index], ast.Starred):
        return _resolve(module, modules, call.args[index], mode)
    for given in call.keywords:
        if given.arg == keyword:
            return _resolve(module, modules, given.value, mode)
    return _Result(unknown={"the program is passed in a way this check cannot follow (*args, **kwargs)"})


def _resolve(module: _Module, modules: dict[str, _Module], node: ast.AST, mode: Mode) -> _Result:
    """The programs ``node`` names, read as ``mode``."""
    again = lambda child, how=mode: _resolve(module, modules, child, how)  # noqa: E731
    if isinstance(node, ast.IfExp):
        return again(node.body) | again(node.orelse)
    if isinstance(node, ast.Name):
        return _name(module, modules, node, mode)
    if mode in ELEMENT:
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            return _union(again(element, ELEMENT[mode]) for element in node.elts)
        return _Result(unknown={f"cannot tell what {ast.unparse(node)!r} holds"})
    if isinstance(node, ast.Call) and _callee_name(node) in PATH_CALLS and node.args:
        return again(node.args[0])
    if mode is Mode.ARGV:
        return _argv(again, node)
    return _program(again, node)


def _argv(again, node: ast.AST) -> _Result:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _Result(programs={command for _, command in shell_commands(node.value)})
    if isinstance(node, ast.List | ast.Tuple) and node.elts:
        first = node.elts[0]
        return again(first.value) if isinstance(first, ast.Starred) else again(first, Mode.PROGRAM)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return again(node.left)
    if isinstance(node, ast.ListComp | ast.GeneratorExp):  # [str(arg) for arg in command] keeps the program first
        return again(node.generators[0].iter)
    return _Result(unknown={f"cannot tell which program {ast.unparse(node)!r} runs"})


def _program(again, node: ast.AST) -> _Result:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _Result(programs={node.value})
    if isinstance(node, ast.Attribute):
        if ast.unparse(node) == "sys.executable":
            return _Result(programs={VENV})
        if node.attr == "parent":
            return again(node.value)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "with_name":
        return _in_directory(again, node.func.value, node.args[0])
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):  # a path: directory / name
        if _venv_bin(node):  # <a checkout> / ".venv" / "bin": the project's own programs, of that checkout
            return _Result(programs={VENV})
        return _in_directory(again, node.left, node.right)
    return _Result(unknown={f"cannot tell which program {ast.unparse(node)!r} is"})


def _venv_bin(node: ast.BinOp) -> bool:
    parent = node.left
    return (
        isinstance(node.right, ast.Constant)
        and node.right.value == "bin"
        and isinstance(parent, ast.BinOp)
        and isinstance(parent.op, ast.Div)
        and isinstance(parent.right, ast.Constant)
        and parent.right.value == ".venv"
    )


def _in_directory(again, directory: ast.AST, name: ast.AST) -> _Result:
    """A program named ``name`` in ``directory`` (or beside a file): the virtualenv's, or a path."""
    left = again(directory)
    if VENV in left.programs:
        return _Result(programs={VENV})
    right = again(name)
    joined = {f"{base}/{program}" for base in left.programs for program in right.programs}
    return _Result(joined, left.unknown | right.unknown, left.params | right.params)


def _name(module: _Module, modules: dict[str, _Module], node: ast.Name, mode: Mode) -> _Result:
    """What a name holds: a loop or comprehension variable, a parameter, an assignment, an import."""
    scope: ast.AST | None = node
    while (scope := module.parents.get(scope)) is not None:
        for target, iterable in _loops(scope):
            if target == node.id:
                return _resolve(module, modules, iterable, COLLECTION.get(mode, mode))
        if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            params = [arg.arg for arg in scope.args.posonlyargs + scope.args.args]
            if node.id in params:
                return _Result(params={(scope, params.index(node.id), node.id, mode)})
        if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.Module):
            values = list(_assigned(scope, node.id))
            if values:
                return _union(_resolve(module, modules, value, mode) for value in values)
    origin = module.aliases.get(node.id)
    if origin and origin[1] and origin[0] in modules:
        source = modules[origin[0]]
        values = list(_assigned(source.tree, origin[1]))
        if values:
            return _union(_resolve(source, modules, value, mode) for value in values)
    return _Result(unknown={f"cannot tell what {node.id!r} holds"})


def _loops(scope: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    if isinstance(scope, ast.For) and isinstance(scope.target, ast.Name):
        yield scope.target.id, scope.iter
    if isinstance(scope, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
        for generator in scope.generators:
            if isinstance(generator.target, ast.Name):
                yield generator.target.id, generator.iter


def _assigned(scope: ast.AST, name: str) -> Iterator[ast.AST]:
    """Values assigned to ``name`` directly in ``scope`` (not in functions or classes nested in it)."""
    pending = list(ast.iter_child_nodes(scope))
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            yield node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            if node.value is not None:
                yield node.value
        pending.extend(ast.iter_child_nodes(node))


def _callee_name(call: ast.Call) -> str | None:
    callee = call.func
    return callee.id if isinstance(callee, ast.Name) else callee.attr if isinstance(callee, ast.Attribute) else None


def _union(results: Iterable[_Result]) -> _Result:
    total = _Result()
    for result in results:
        total = total | result
    return total
