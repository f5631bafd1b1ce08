"""Read the deployment files (Dockerfiles, .dockerignore, compose) the way Docker does.

Only the subset these repositories use, so the tests can check them without a Docker engine:
Dockerfile stages, ``ENV``/``COPY``/``RUN``/``USER`` and exec-form ``CMD``/``HEALTHCHECK``,
``.dockerignore`` patterns with ``**`` and ``!``, and compose's ``${VAR:-default}``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_VAR_RE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON (exec form) argument list of CMD, ENTRYPOINT or HEALTHCHECK ... CMD."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            _, _, text = text.partition("CMD")
        value = json.loads(text.strip())
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.args}"
        return [str(item) for item in value]

    def words(self) -> list[str]:
        """The arguments split like a shell would (COPY, USER, VOLUME...)."""
        return shlex.split(self.args)


@dataclass
class Stage:
    """One ``FROM ... [AS name]`` stage."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """This stage's own instructions with ``keyword``."""
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    """A parsed Dockerfile: global ARG defaults and its stages, in order."""

    path: Path
    args: dict[str, str]
    stages: list[Stage]

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        """Parse ``path``."""
        args: dict[str, str] = {}
        stages: list[Stage] = []
        for instruction in _instructions(path.read_text()):
            if instruction.keyword == "FROM":
                words = instruction.words()
                base = _expand(words[0], args)
                name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
                stages.append(Stage(base=base, name=name))
            elif not stages and instruction.keyword == "ARG":
                key, _, default = instruction.args.strip().partition("=")
                args[key] = default
            else:
                assert stages, f"{path}: {instruction.keyword} before the first FROM"
                stages[-1].instructions.append(instruction)
        return cls(path=path, args=args, stages=stages)

    def stage(self, name: str) -> Stage:
        """The stage called ``name``."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"{self.path} has no stage {name!r}")

    def chain(self, stage: Stage) -> list[Stage]:
        """``stage`` and the stages it is built FROM, the first base first."""
        names = {s.name: s for s in self.stages if s.name}
        chain = [stage]
        while chain[0].base in names:
            chain.insert(0, names[chain[0].base])
        return chain

    def external_bases(self) -> list[str]:
        """The images stages start FROM that are not stages of this file."""
        names = {s.name for s in self.stages}
        return [s.base for s in self.stages if s.base not in names]

    def effective(self, stage: Stage, keyword: str) -> Instruction | None:
        """The instruction with ``keyword`` that applies to ``stage`` (its own or inherited)."""
        for link in reversed(self.chain(stage)):
            found = link.all(keyword)
            if found:
                return found[-1]
        return None

    def require(self, stage: Stage, keyword: str) -> Instruction:
        """Like ``effective``, but the instruction must exist."""
        found = self.effective(stage, keyword)
        assert found is not None, f"{self.path}: stage {stage.name} has no {keyword}"
        return found

    def env(self, stage: Stage) -> dict[str, str]:
        """The ENV of ``stage``, inherited values first; unknown ``$VAR`` stay as written."""
        env: dict[str, str] = {}
        for link in self.chain(stage):
            for instruction in link.all("ENV"):
                for word in instruction.words():
                    key, sep, value = word.partition("=")
                    assert sep, f"{self.path}: use ENV KEY=VALUE, not {instruction.args!r}"
                    env[key] = _expand(value, env)
        return env

    def final_stages(self) -> list[Stage]:
        """The stages no other stage builds FROM (what ``--target`` or the default builds)."""
        bases = {s.base for s in self.stages}
        copied = {
            word.removeprefix("--from=")
            for s in self.stages
            for i in s.all("COPY")
            for word in i.words()
            if word.startswith("--from=")
        }
        return [s for s in self.stages if s.name not in bases | copied]


def _expand(value: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        return env.get(name, match.group(0))

    return _VAR_RE.sub(replace, value)


def _instructions(text: str) -> Iterator[Instruction]:
    """Yield instructions: comments dropped (inside continuations too), ``\\`` lines joined."""
    pending: list[str] = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        line = " ".join(pending)
        pending = []
        keyword, _, args = line.partition(" ")
        yield Instruction(keyword=keyword.upper(), args=args.strip())
    assert not pending, "the Dockerfile ends inside a continuation line"


@dataclass(frozen=True)
class DockerIgnore:
    """``.dockerignore`` rules: the last matching pattern wins, ``!`` re-includes."""

    rules: tuple[tuple[bool, re.Pattern[str], str], ...]

    @classmethod
    def read(cls, path: Path) -> DockerIgnore:
        """Parse ``path`` (an absent file ignores nothing)."""
        rules = []
        lines = path.read_text().splitlines() if path.exists() else []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = line.removeprefix("!").strip().strip("/")
            rules.append((include, _glob_regex(pattern), pattern))
        return cls(tuple(rules))

    def ignored(self, relative: str) -> bool:
        """Whether the file or directory ``relative`` (posix, from the context) is left out."""
        parts = relative.split("/")
        # A pattern that matches a parent directory leaves out everything under it.
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        ignored = False
        for include, regex, _ in self.rules:
            if any(regex.fullmatch(c) for c in candidates):
                ignored = not include
        return ignored

    def might_include_under(self, directory: str) -> bool:
        """Whether some ``!`` pattern could re-include a path under ``directory``."""
        for include, _, pattern in self.rules:
            literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0].rstrip("/")
            if include and (literal.startswith(directory + "/") or not literal):
                return True
        return False

    def context_files(self, root: Path) -> list[str]:
        """The files a build with context ``root`` receives, as sorted relative paths."""
        files: list[str] = []
        for current, dirs, names in os.walk(root):
            base = Path(current).relative_to(root).as_posix()
            prefix = "" if base == "." else base + "/"
            dirs[:] = [
                d
                for d in dirs
                if not self.ignored(prefix + d) or self.might_include_under(prefix + d)
            ]
            files.extend(prefix + n for n in names if not self.ignored(prefix + n))
        return sorted(files)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


_COMPOSE_VAR_RE = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def compose_variables(value: str) -> dict[str, str | None]:
    """The variables ``value`` interpolates, each with its ``:-`` default (None if none)."""
    found: dict[str, str | None] = {}
    for match in _COMPOSE_VAR_RE.finditer(value.replace("$$", "")):
        name = match.group("name") or match.group("bare")
        has_default = match.group("op") in (":-", "-")
        found[name] = match.group("default") if has_default else None
    return found


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Interpolate ``value`` as compose does with the variables ``env`` (defaults otherwise)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("name") or match.group("bare")
        op, default = match.group("op"), match.group("default") or ""
        current = env.get(name)
        if op == ":-" and not current:
            return default
        if op == "-" and current is None:
            return default
        return current or ""

    parts = value.split("$$")
    return "$".join(_COMPOSE_VAR_RE.sub(replace, part) for part in parts)


def strings_in(node: Any) -> Iterator[str]:
    """Every string value in a parsed YAML/JSON tree."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value)


def service_environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A compose service's ``environment`` as a mapping (both the map and the list form)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (str(item).partition("=") for item in raw)
        return {key: value for key, _, value in pairs}
    return {str(key): "" if value is None else str(value) for key, value in raw.items()}


def env_file_entries(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file (comments and blank lines skipped)."""
    entries: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {raw!r}"
        entries[key.strip()] = value.strip()
    return entries


def load_yaml(path: Path) -> Any:
    """Parse a YAML file; CloudFormation tags (``!Ref``, ``!Sub`` ...) load as plain values."""
    import yaml  # type: ignore[import-untyped, unused-ignore]  # a dev dependency (moto[server])

    class _Loader(yaml.SafeLoader):  # type: ignore[misc, unused-ignore]
        pass

    def _any_tag(loader: Any, suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_mapping(node, deep=True)

    _Loader.add_multi_constructor("!", _any_tag)
    return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def cloudformation_environment_names(node: Any) -> set[str]:
    """Names under every ``Environment: Variables:`` of a CloudFormation/SAM template."""
    names: set[str] = set()
    if isinstance(node, dict):
        environment = node.get("Environment")
        if isinstance(environment, dict) and isinstance(environment.get("Variables"), dict):
            names.update(str(key) for key in environment["Variables"])
        for value in node.values():
            names |= cloudformation_environment_names(value)
    elif isinstance(node, list):
        for value in node:
            names |= cloudformation_environment_names(value)
    return names
