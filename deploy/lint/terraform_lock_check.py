#!/usr/bin/env python3
"""Check the provider lock file of every Terraform environment root.

For each directory under deploy/terraform/environments that holds .tf files (an environment
root):

  * it has a .terraform.lock.hcl;
  * every provider its configuration requires (the root's required_providers and those of the
    local modules it calls, followed through their sources) has an entry in the lock;
  * the root pins that provider to exactly one version (`version = "6.28.0"`), and the locked
    version satisfies every version constraint the root and its modules declare for it;
  * the lock records the same constraints that `terraform init` would write for them;
  * each entry has at least one h1: hash (a package's contents) and one zh: hash (the
    registry's zip checksum), the two kinds `terraform init` verifies a download against;
  * the lock names no provider the configuration does not require.

Terraform cannot run `init` here (no registry access), so nothing else keeps the lock file and
the version pins in step. Standard library only; exits 1 and lists every problem when any check
fails, 2 on bad usage.

    python3 deploy/lint/terraform_lock_check.py [--environments DIR] [--allow-ranges]
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ENVIRONMENTS = REPO_ROOT / "deploy" / "terraform" / "environments"
LOCK_FILE = ".terraform.lock.hcl"
DEFAULT_REGISTRY = "registry.terraform.io"


# --- A small HCL reader --------------------------------------------------------------------------
#
# Enough of HCL's native syntax for versions.tf-style blocks and lock files: blocks, attributes,
# strings (with ${...} templates), heredocs, comments, lists and object constructors. Expressions
# other than a plain string, a list of strings or an object are kept as opaque text.


@dataclass
class Token:
    kind: str  # "ident", "string", "punct", "newline", "other"
    value: str
    line: int


class HclError(Exception):
    pass


_PUNCT = set("{}[]()=,:")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            tokens.append(Token("newline", "\n", line))
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == "#" or text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise HclError(f"line {line}: unterminated /* comment")
            line += text.count("\n", i, end)
            i = end + 2
        elif c == '"':
            value, i, line = _read_string(text, i, line)
            tokens.append(Token("string", value, line))
        elif text.startswith("<<", i):
            match = re.match(r"<<-?([A-Za-z_][A-Za-z0-9_]*)[ \t]*\n", text[i:])
            if not match:
                tokens.append(Token("other", "<<", line))
                i += 2
                continue
            marker = match.group(1)
            body_start = i + match.end()
            end = re.compile(rf"^[ \t]*{re.escape(marker)}[ \t]*$", re.M).search(text, body_start)
            if not end:
                raise HclError(f"line {line}: unterminated heredoc {marker}")
            line += text.count("\n", i, end.end())
            tokens.append(Token("other", "<<heredoc>>", line))
            i = end.end()
        elif c in _PUNCT:
            tokens.append(Token("punct", c, line))
            i += 1
        elif c.isalpha() or c == "_":
            j = i
            while j < n and (text[j].isalnum() or text[j] in "_-"):
                j += 1
            tokens.append(Token("ident", text[i:j], line))
            i = j
        else:
            tokens.append(Token("other", c, line))
            i += 1
    return tokens


def _read_string(text: str, i: int, line: int) -> tuple[str, int, int]:
    """Reads a quoted string starting at text[i] == '"'; ${...} templates may nest strings."""
    out: list[str] = []
    i += 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i : i + 2])
            i += 2
        elif c == '"':
            return "".join(out), i + 1, line
        elif c == "\n":
            raise HclError(f"line {line}: newline in a quoted string")
        elif text.startswith(("${", "%{"), i):
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                elif text[j] == '"':
                    _, j, line = _read_string(text, j, line)
                    continue
                j += 1
            out.append(text[i : j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    raise HclError(f"line {line}: unterminated string")


@dataclass
class Block:
    type: str
    labels: list[str]
    attributes: dict[str, object] = field(default_factory=dict)
    blocks: list["Block"] = field(default_factory=list)
    line: int = 0

    def children(self, block_type: str) -> list["Block"]:
        return [block for block in self.blocks if block.type == block_type]


class Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self, offset: int = 0) -> Token | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise HclError("unexpected end of file")
        self.pos += 1
        return token

    def skip_newlines(self) -> None:
        while (token := self.peek()) is not None and token.kind == "newline":
            self.pos += 1

    def body(self, block: Block, closing: str | None) -> Block:
        while True:
            self.skip_newlines()
            token = self.peek()
            if token is None:
                if closing:
                    raise HclError(f"line {block.line}: block {block.type} is not closed")
                return block
            if closing and token.kind == "punct" and token.value == closing:
                self.pos += 1
                return block
            name = self.next()
            if name.kind not in ("ident", "string"):
                raise HclError(f"line {name.line}: expected an attribute or a block, found {name.value!r}")
            after = self.peek()
            if after is not None and after.kind == "punct" and after.value in "=:":
                self.pos += 1
                block.attributes[name.value] = self.expression()
                continue
            labels: list[str] = []
            while (label := self.peek()) is not None and label.kind in ("string", "ident"):
                labels.append(label.value)
                self.pos += 1
            opening = self.next()
            if opening.kind != "punct" or opening.value != "{":
                raise HclError(f"line {opening.line}: expected {{ after {name.value}")
            block.blocks.append(self.body(Block(name.value, labels, line=name.line), "}"))

    def expression(self) -> object:
        """A string, a list, an object, or the opaque text of anything else."""
        self.skip_newlines()
        first = self.peek()
        if first is not None and first.kind == "punct" and first.value in "[{":
            start = self.pos
            self.pos += 1
            try:
                value = self._list() if first.value == "[" else self._object()
            except HclError:
                # A for expression, or an object whose keys are expressions: skip it whole.
                self.pos = start
                return self._opaque("")
            if self._at_expression_end():
                return value
            return self._opaque(f"{first.value}...")
        if first is not None and first.kind == "string":
            self.pos += 1
            if self._at_expression_end():
                return first.value
            return self._opaque(first.value)
        return self._opaque("")

    def _at_expression_end(self) -> bool:
        token = self.peek()
        return token is None or token.kind == "newline" or (token.kind == "punct" and token.value in ",}]")

    def _opaque(self, prefix: str) -> "Opaque":
        parts, depth = [prefix], 0
        while (token := self.peek()) is not None:
            if depth == 0 and (token.kind == "newline" or (token.kind == "punct" and token.value in ",}]")):
                break
            if token.kind == "punct" and token.value in "([{":
                depth += 1
            elif token.kind == "punct" and token.value in ")]}":
                depth -= 1
            parts.append(token.value)
            self.pos += 1
        return Opaque(" ".join(part for part in parts if part))

    def _list(self) -> list[object]:
        items: list[object] = []
        self.skip_newlines()
        token = self.peek()
        if token is not None and token.kind == "ident" and token.value == "for":
            raise HclError(f"line {token.line}: a for expression")
        while True:
            self.skip_newlines()
            token = self.peek()
            if token is None:
                raise HclError("unterminated list")
            if token.kind == "punct" and token.value == "]":
                self.pos += 1
                return items
            items.append(self.expression())
            self.skip_newlines()
            separator = self.peek()
            if separator is not None and separator.kind == "punct" and separator.value == ",":
                self.pos += 1

    def _object(self) -> dict[str, object]:
        items: dict[str, object] = {}
        while True:
            self.skip_newlines()
            token = self.peek()
            if token is None:
                raise HclError("unterminated object")
            if token.kind == "punct" and token.value == "}":
                self.pos += 1
                return items
            key = self.next()
            if key.kind not in ("ident", "string") or (key.kind == "ident" and key.value == "for"):
                raise HclError(f"line {key.line}: not an object constructor")
            equals = self.next()
            if equals.kind != "punct" or equals.value not in "=:":
                raise HclError(f"line {key.line}: expected = after {key.value}")
            items[key.value] = self.expression()
            separator = self.peek()
            if separator is not None and separator.kind == "punct" and separator.value == ",":
                self.pos += 1


@dataclass
class Opaque:
    text: str


def parse_file(path: Path) -> Block:
    try:
        return Parser(tokenize(path.read_text(encoding="utf-8"))).body(Block("file", []), None)
    except HclError as error:
        raise HclError(f"{path}: {error}") from None


# --- Versions and constraints --------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Version:
    parts: tuple[int, int, int]
    prerelease: str = ""

    @classmethod
    def parse(cls, text: str) -> tuple["Version", int]:
        """The version and how many of its numeric parts were written (for ~>)."""
        match = re.fullmatch(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?", text.strip())
        if not match:
            raise ValueError(f"not a version: {text!r}")
        numbers = [int(part) for part in match.groups()[:3] if part is not None]
        written = len(numbers)
        numbers += [0] * (3 - written)
        return cls((numbers[0], numbers[1], numbers[2]), match.group(4) or ""), written

    def __str__(self) -> str:
        text = ".".join(str(part) for part in self.parts)
        return f"{text}-{self.prerelease}" if self.prerelease else text


@dataclass(frozen=True)
class Constraint:
    operator: str  # "=", "!=", ">", ">=", "<", "<=", "~>"
    version: Version
    written: int  # numeric parts written: 1, 2 or 3

    @classmethod
    def parse_all(cls, text: str) -> list["Constraint"]:
        constraints = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            match = re.fullmatch(r"(~>|>=|<=|!=|=|>|<)?\s*(\S+)", part)
            if not match:
                raise ValueError(f"not a version constraint: {part!r}")
            version, written = Version.parse(match.group(2))
            constraints.append(cls(match.group(1) or "=", version, written))
        return constraints

    def allows(self, version: Version) -> bool:
        # As in Terraform: a pre-release satisfies only a constraint that names it exactly.
        if version.prerelease and not (self.operator == "=" and self.version == version):
            return False
        if self.operator == "=":
            return version == self.version
        if self.operator == "!=":
            return version != self.version
        if self.operator == ">":
            return version > self.version
        if self.operator == ">=":
            return version >= self.version
        if self.operator == "<":
            return version < self.version
        if self.operator == "<=":
            return version <= self.version
        # ~>: the rightmost written part may grow; ~> 1.2 allows 1.x from 1.2, ~> 1.2.3 1.2.x.
        upper = list(self.version.parts)
        if self.written <= 1:
            upper = [upper[0] + 1, 0, 0]
        else:
            bump = self.written - 2
            upper[bump] += 1
            upper[bump + 1 :] = [0] * (2 - bump)
        return self.version.parts <= version.parts < tuple(upper)

    def canonical(self) -> str:
        """As terraform init writes it into the lock file's constraints."""
        if self.operator == "~>":
            numbers = ".".join(str(part) for part in self.version.parts[: max(self.written, 1)])
            text = f"{numbers}-{self.version.prerelease}" if self.version.prerelease else numbers
            return f"~> {text}"
        if self.operator == "=":
            return str(self.version)
        return f"{self.operator} {self.version}"


# --- Configuration and lock ----------------------------------------------------------------------


def normalize_source(source: str) -> str:
    parts = source.strip().lower().split("/")
    if len(parts) == 1:
        parts = ["hashicorp", parts[0]]
    if len(parts) == 2:
        parts = [DEFAULT_REGISTRY, *parts]
    return "/".join(parts)


@dataclass
class Requirement:
    source: str
    # Each declared constraint with the file that declares it.
    constraints: list[tuple[Constraint, str]] = field(default_factory=list)
    declared_in: list[str] = field(default_factory=list)


def read_configuration(directory: Path, problems: list[str], seen: set[Path] | None = None) -> tuple[dict[str, Requirement], dict[str, list[Constraint]]]:
    """The providers a module requires, with those of the local modules it calls.

    Returns the requirements of the whole tree and, separately, the root's own constraints.
    """
    seen = seen if seen is not None else set()
    directory = directory.resolve()
    requirements: dict[str, Requirement] = {}
    own: dict[str, list[Constraint]] = {}
    if directory in seen:
        return requirements, own
    seen.add(directory)
    module_sources: list[str] = []
    for path in sorted(directory.glob("*.tf")):
        document = parse_file(path)
        for terraform in document.children("terraform"):
            for block in terraform.children("required_providers"):
                for local_name, value in block.attributes.items():
                    source, version = f"hashicorp/{local_name}", None
                    if isinstance(value, dict):
                        source = value.get("source", source)
                        version = value.get("version")
                    elif isinstance(value, str):
                        version = value
                    if not isinstance(source, str) or (version is not None and not isinstance(version, str)):
                        problems.append(f"{path}: required_providers.{local_name}: source and version must be plain strings")
                        continue
                    address = normalize_source(source)
                    requirement = requirements.setdefault(address, Requirement(address))
                    shown = display(path)
                    requirement.declared_in.append(shown)
                    if version is not None:
                        try:
                            parsed = Constraint.parse_all(version)
                        except ValueError as error:
                            problems.append(f"{path}: required_providers.{local_name}: {error}")
                            continue
                        requirement.constraints.extend((constraint, shown) for constraint in parsed)
                        own.setdefault(address, []).extend(parsed)
        for module in document.children("module"):
            source = module.attributes.get("source")
            if isinstance(source, str) and source.startswith(("./", "../")):
                module_sources.append(source)
    for source in module_sources:
        child, _ = read_configuration(directory / source, problems, seen)
        for address, requirement in child.items():
            merged = requirements.setdefault(address, Requirement(address))
            merged.constraints.extend(requirement.constraints)
            merged.declared_in.extend(requirement.declared_in)
    return requirements, own


@dataclass
class LockEntry:
    address: str
    version: str | None
    constraints: str | None
    hashes: list[str]
    line: int


def read_lock(path: Path) -> tuple[dict[str, LockEntry], list[str]]:
    problems: list[str] = []
    entries: dict[str, LockEntry] = {}
    for block in parse_file(path).children("provider"):
        if len(block.labels) != 1:
            problems.append(f"{path}:{block.line}: a provider block needs exactly one label (its address)")
            continue
        address = block.labels[0].lower()
        version = block.attributes.get("version")
        constraints = block.attributes.get("constraints")
        hashes = block.attributes.get("hashes", [])
        if not isinstance(hashes, list) or not all(isinstance(item, str) for item in hashes):
            problems.append(f"{path}:{block.line}: {address}: hashes must be a list of strings")
            hashes = []
        entries[address] = LockEntry(
            address,
            version if isinstance(version, str) else None,
            constraints if isinstance(constraints, str) else None,
            hashes,
            block.line,
        )
    return entries, problems


# --- Checks ------------------------------------------------------------------------------------

_H1 = re.compile(r"h1:[A-Za-z0-9+/]{43}=")
_ZH = re.compile(r"zh:[0-9a-f]{64}")


def display(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def check_root(root: Path, allow_ranges: bool) -> list[str]:
    shown = display(root)
    problems: list[str] = []
    requirements, own = read_configuration(root, problems)
    lock_path = root / LOCK_FILE
    if not lock_path.is_file():
        return problems + [f"{shown}: no {LOCK_FILE}: commit the lock file of the provider versions this root pins"]
    entries, lock_problems = read_lock(lock_path)
    problems += [f"{shown}: {problem}" for problem in lock_problems]

    for address, requirement in sorted(requirements.items()):
        where = f"{shown}: {address}"
        root_constraints = own.get(address, [])
        if not allow_ranges:
            if not root_constraints:
                problems.append(
                    f"{where}: required by {', '.join(sorted(set(requirement.declared_in)))} but not pinned by the environment root: "
                    f"add it to the root's required_providers with version = \"X.Y.Z\""
                )
            elif len(root_constraints) != 1 or root_constraints[0].operator != "=":
                pinned = ", ".join(c.canonical() for c in root_constraints)
                problems.append(f"{where}: the environment root must pin exactly one version (version = \"X.Y.Z\"), not {pinned}")
        entry = entries.get(address)
        if entry is None:
            problems.append(f"{where}: required (by {', '.join(sorted(set(requirement.declared_in)))}) but missing from {LOCK_FILE}")
            continue
        if entry.version is None:
            problems.append(f"{where}: the lock entry has no version")
            continue
        try:
            locked, _ = Version.parse(entry.version)
        except ValueError as error:
            problems.append(f"{where}: the lock's {error}")
            continue
        for constraint, declared_in in requirement.constraints:
            if not constraint.allows(locked):
                problems.append(f"{where}: locked version {entry.version} does not satisfy {constraint.canonical()!r} ({declared_in})")
        expected = sorted({constraint.canonical() for constraint, _ in requirement.constraints})
        recorded: list[str] = []
        if entry.constraints is not None:
            try:
                recorded = sorted({c.canonical() for c in Constraint.parse_all(entry.constraints)})
            except ValueError as error:
                problems.append(f"{where}: the lock's constraints: {error}")
        if recorded != expected:
            problems.append(
                f"{where}: the lock records constraints {entry.constraints!r} but the configuration declares {', '.join(expected) or 'none'!r}: "
                "terraform init would rewrite the lock (and refuses to with -lockfile=readonly)"
            )
        h1 = [item for item in entry.hashes if item.startswith("h1:")]
        zh = [item for item in entry.hashes if item.startswith("zh:")]
        malformed = [item for item in entry.hashes if not (_H1.fullmatch(item) or _ZH.fullmatch(item))]
        if not h1:
            problems.append(f"{where}: the lock entry has no h1: hash")
        if not zh:
            problems.append(f"{where}: the lock entry has no zh: hash")
        if malformed:
            problems.append(f"{where}: malformed hashes in the lock entry: {', '.join(malformed)}")

    for address in sorted(set(entries) - set(requirements)):
        problems.append(f"{shown}: {LOCK_FILE} locks {address}, which the configuration does not require")
    return problems


def environment_roots(environments: Path) -> list[Path]:
    return sorted(path for path in environments.iterdir() if path.is_dir() and any(path.glob("*.tf")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--environments", type=Path, default=DEFAULT_ENVIRONMENTS, help="directory of the environment roots (default: %(default)s)")
    parser.add_argument("--allow-ranges", action="store_true", help="accept version ranges in the roots instead of exact pins")
    args = parser.parse_args(argv)

    environments = args.environments.resolve()
    if not environments.is_dir():
        print(f"terraform lock check: {environments} is not a directory", file=sys.stderr)
        return 2
    roots = environment_roots(environments)
    if not roots:
        print(f"terraform lock check: no environment root (a directory with .tf files) under {environments}", file=sys.stderr)
        return 1

    problems: list[str] = []
    for root in roots:
        try:
            problems += check_root(root, args.allow_ranges)
        except HclError as error:
            problems.append(f"cannot read: {error}")
    if problems:
        for problem in problems:
            print(f"terraform lock check: {problem}", file=sys.stderr)
        print(f"terraform lock check: {len(problems)} problem(s) in {len(roots)} environment root(s)", file=sys.stderr)
        return 1
    for root in roots:
        print(f"terraform lock check: {display(root)}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
