"""The docs stay true: docs/RELIABILITY.md's count is its rows and every test it names exists;
every `drn` command line of the README (and docs/ARCHITECTURE.md) parses, every setting it names
is one of the schema's, and every repository path it names exists."""

from __future__ import annotations

import ast
import glob
import itertools
import re
import shlex
import subprocess

import pytest
import yaml
from conftest import REPO

from drn.cli import build_parser
from drn.pipeline.params import SCHEMA, apply_overrides, load_params, validate_params

RELIABILITY = REPO / "docs/RELIABILITY.md"


def fault_rows() -> list[str]:
    """The table rows of the fault matrix, headers and separators left out."""
    rows, previous = [], ""
    for line in RELIABILITY.read_text().splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            rows.append(line)
        if line.startswith("|---"):
            rows.remove(previous)  # the line above a separator is a header
        previous = line
    return rows


def defined_tests() -> set[str]:
    names = set()
    for path in (REPO / "tests").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                names.add(node.name)
                names.add(f"{path.name}::{node.name}")
    return names


def test_the_count_at_the_top_is_the_number_of_rows():
    count = re.search(r"\*\*(\d+) faults and bad inputs", RELIABILITY.read_text())
    assert count is not None and int(count.group(1)) == len(fault_rows())


def test_every_row_names_a_test_that_exists():
    """The last cell names tests (`test_x` or `test_file.py::test_x`), or says "same test"."""
    known = defined_tests()
    for row in fault_rows():
        cell = row.rstrip(" |").rsplit(" | ", 1)[-1]
        named = re.findall(r"`((?:test_\w+\.py::)?test_\w+)`", cell)
        assert named or cell == "same test", f"no test named in: {row[:80]}"
        assert set(named) <= known, f"unknown test in: {row[:80]}"


# --- README.md and docs/ARCHITECTURE.md: commands, settings and paths -------------------------

DOCS = ["README.md", "docs/ARCHITECTURE.md"]
FENCE = re.compile(r"^ *```(\w*)\n(.*?)^ *```", re.S | re.M)
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$")  # NAME, S, N: any value of the option will do
SEGMENT_ENDS = {"&&", "||", ";", "|"}
FILE_NAME = re.compile(r"\.(py|md|yaml|yml|toml|txt|smk|json|cfg|j2|tsv|log|pt|db|html)$")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def prose(text: str) -> str:
    return FENCE.sub("", text)


def shell_segments(line: str) -> list[list[str]]:
    """The simple commands of a shell line: comments, redirections, `[...]` marking optional
    arguments and `<placeholder>`s resolved, split at && || ; and |."""
    line = re.sub(r"<[\w-]+>", "PLACEHOLDER", line)
    line = re.sub(r"\[(-[^\]]*)\]", r"\1", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    try:
        tokens = list(lexer)
    except ValueError:  # not a shell line (an unbalanced quote, a lone backslash)
        return []
    segments, current = [], []
    skip = False
    for token in tokens:
        if skip:
            skip = False
        elif token in SEGMENT_ENDS:
            segments.append(current)
            current = []
        elif token in (">", ">>", "<", "2>", "&>"):
            skip = True  # its target
        elif token not in ("&", "2>&1", "..."):
            current.append(token)
    return [s for s in [*segments, current] if s]


def drn_arguments(tokens: list[str]) -> list[str] | None:
    """The arguments of `drn ...`, `python -m drn ...` or `torchrun ... -m drn ...`; else None."""
    if tokens[0] == "drn":
        return tokens[1:]
    for i in range(len(tokens) - 1):
        if tokens[i : i + 2] == ["-m", "drn"]:
            return tokens[i + 2 :]
    return None


def doc_commands(name: str) -> list[tuple[list[str], bool]]:
    """Every `drn` command of a doc: (arguments, whole); whole for the lines of its sh blocks
    (which must parse as they are), not for `drn ...` spans in its prose (which may show a
    subcommand and some options only)."""
    text = (REPO / name).read_text()
    found = []
    for language, body in fenced_blocks(text):
        if language == "sh":
            for line in body.replace("\\\n", " ").splitlines():
                found += [(args, True) for seg in shell_segments(line)
                          if (args := drn_arguments(seg)) is not None]  # fmt: skip
    for span in re.findall(r"`([^`\n]+)`", prose(text)):
        for seg in shell_segments(span):
            if (args := drn_arguments(seg)) is not None:
                found.append((args, False))
    return found


def subcommands() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if a.choices and "train" in a.choices).choices


@pytest.mark.parametrize("name", DOCS)
def test_every_drn_command_line_of_the_docs_parses(name):
    commands = doc_commands(name)
    assert name != "README.md" or len(commands) > 20  # the extraction finds them
    known = subcommands()
    for args, whole in commands:
        shown = "drn " + " ".join(args)
        if not args:
            continue  # `drn`, the command itself
        assert args[0] in known, f"{name}: {shown}: no subcommand {args[0]}"
        options = known[args[0]]._option_string_actions
        for arg in args[1:]:
            if arg.startswith("-") and not re.match(r"^-\d", arg):
                assert arg.split("=")[0] in options, f"{name}: {shown}: no option {arg}"
        if whole:
            filled = [arg if not PLACEHOLDER.match(arg) else "2" for arg in args]
            try:
                build_parser().parse_args(filled)
            except SystemExit:
                pytest.fail(f"{name}: {shown}: drn refuses these arguments")


def is_pattern(item: str) -> bool:
    """``models.NAME.SIZE=VALUE``: the shape of an item, not one to try."""
    return any(PLACEHOLDER.match(part) for part in item.split("=")[0].split("."))


def set_items(name: str) -> list[list[str]]:
    """The KEY=VALUE items of each `drn ... --set` and `dvc exp run -S` line of a doc."""
    text = (REPO / name).read_text()
    blocks = [body.replace("\\\n", " ") for lang, body in fenced_blocks(text) if lang == "sh"]
    lines = [line for body in blocks for line in body.splitlines()]
    lines += re.findall(r"`([^`\n]+)`", prose(text))
    found = []
    for line in lines:
        for seg in shell_segments(line):
            flags = ("--set", "-S") if seg[:3] == ["dvc", "exp", "run"] else ("--set",)
            if seg[0] != "drn" and seg[:3] != ["dvc", "exp", "run"]:
                continue
            items = [b for a, b in itertools.pairwise(seg) if a in flags]
            items = [i for i in items if not is_pattern(i)]
            if items:
                found.append(items)
    return found


@pytest.mark.parametrize("name", DOCS)
def test_every_set_of_the_docs_is_a_valid_change_of_params_yaml(name):
    """`drn train --set`, `drn info --set` and `dvc exp run -S` take dotted paths of params.yaml."""
    params = load_params(REPO / "params.yaml")
    for items in set_items(name):
        validate_params(apply_overrides(params, items), f"{name}: --set {' '.join(items)}")


SETTING_ROOTS = ("paths", "sources", "downscaled", "evaluation", "ablations", "models", "train",
                 "tracking", "report", "resources")  # fmt: skip


def schema_allows(node: dict, parts: list[str], defs: dict) -> bool:
    """Whether the schema ``node`` has the dotted key ``parts`` (``<name>`` parts: any name)."""
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    if not parts:
        return True
    branches = node.get("oneOf", []) + node.get("anyOf", [])
    if any(schema_allows(b, parts, defs) for b in branches if isinstance(b, dict)):
        return True
    part, rest = parts[0], parts[1:]
    properties = node.get("properties", {})
    if part in properties:
        return schema_allows(properties[part], rest, defs)
    if part.startswith("<") and properties:
        return any(schema_allows(p, rest, defs) for p in properties.values())
    extra = node.get("additionalProperties")
    return isinstance(extra, dict) and schema_allows(extra, rest, defs)


@pytest.mark.parametrize("name", DOCS)
def test_every_setting_the_docs_name_is_in_the_schema(name):
    """`train.data.hr`, `models.<variant>`, `train.loss: l2`: keys of params.yaml's schema."""
    schema = yaml.safe_load(SCHEMA.read_text())
    keys = []
    for span in re.findall(r"`([^`\n]+)`", prose((REPO / name).read_text())):
        key = re.split(r"[:=\s]", span, maxsplit=1)[0]
        if key.split(".")[0] in SETTING_ROOTS and "." in key and not FILE_NAME.search(key):
            keys.append(key)
    assert name != "README.md" or len(keys) > 10
    for key in keys:
        assert schema_allows(schema, key.split("."), schema["$defs"]), f"{name}: `{key}`"


def tracked_top_level() -> set[str]:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    return {line.split("/")[0] for line in files.stdout.splitlines()}


def ignored(paths: list[str]) -> set[str]:
    """The paths git ignores: what the pipeline makes (data/, runs/, reports/report.html...)."""
    done = subprocess.run(["git", "check-ignore", "--stdin"], cwd=REPO, input="\n".join(paths),
                          capture_output=True, text=True)  # fmt: skip
    return set(done.stdout.splitlines())


def expand(path: str) -> list[str]:
    """``a/{b,c}`` -> ``a/b``, ``a/c``."""
    found = re.search(r"\{([^{}]*,[^{}]*)\}", path)
    if not found:
        return [path]
    head, tail = path[: found.start()], path[found.end() :]
    return [p for alt in found.group(1).split(",") for p in expand(head + alt + tail)]


def exists(path: str) -> bool:
    return all(glob.glob(str(REPO / p)) if "*" in p else (REPO / p).exists() for p in expand(path))


def path_like(token: str) -> bool:
    if re.search(r"<|>|://|\$|~|=|:|^/|^\.\.|\{[^{},]*\}", token):
        return False  # a URL, a placeholder, outside the repository, a setting
    return ("/" in token or bool(FILE_NAME.search(token))) and bool(re.search(r"[A-Za-z]", token))


def tokens(text: str) -> list[str]:
    return [t.rstrip(".,;:").lstrip("(") for t in re.split(r"[\s`\[\]()\"']+", text) if t]


def layout_paths(text: str) -> list[str]:
    """The files of the README's Layout tree: entries (`drn/`, then `  imresize.py` inside it)
    and the files their descriptions name (inside the entry's folder, or else at the top)."""
    section = text.split("## Layout", 1)[1]
    body = fenced_blocks(section)[0][1]
    found, folder = [], ""
    for line in body.splitlines():
        indent = len(line) - len(line.lstrip())
        entry, _, description = line.strip().partition(" ")
        if indent == 0:
            folder, base = (entry if entry.endswith("/") else ""), ""
            found.append(entry)
        elif indent == 2:
            found.append(folder + entry)
            base = folder + entry if entry.endswith("/") else folder
        else:
            description = line  # continues the description of the entry above
        here = base if indent else folder
        for token in tokens(description):
            if path_like(token):
                inside = here + token
                found.append(inside if exists(inside) or not exists(token) else token)
    return found


@pytest.mark.parametrize("name", DOCS)
def test_every_repository_path_the_docs_name_exists(name):
    """Files and folders of the repository (`drn/pipeline/plan.py`, `workflow/rules/*.smk`, the
    Layout
    tree); not what the pipeline makes (git ignores it: runs/, reports/report.html...), not
    paths of other places (`path/to/Set5`, `../shared/data`, `~/.config/...`)."""
    text = (REPO / name).read_text()
    named = [t for t in tokens(text) if path_like(t)]
    if name == "README.md":
        named += layout_paths(text)
    top = tracked_top_level()
    repository = [p for p in named if p.split("/")[0] in top]
    assert name != "README.md" or len(repository) > 20
    skipped = ignored(repository)
    missing = sorted({p for p in repository if p not in skipped and not exists(p)})
    assert not missing, f"{name} names paths that do not exist: {missing}"
