"""The documentation's examples, run and checked so that they cannot rot (README.md, docs/*.md).

- Python: every ```python block runs. The blocks of one page run in order, in one namespace, in a
  fresh interpreter per page (cwd a temporary folder, XPNET_BACKEND=numpy, XPNET_DATA an empty
  folder so nothing is downloaded, a timeout); tracebacks give the page's own line numbers. A
  block that cannot run on a CPU test machine (a GPU device, a long run, the network) is marked
  by a line `<!-- no-run: the reason -->` just before it (or a fence ```python no-run) and is
  only compiled.
- Commands: every `xpnet …` (or `python -m xpnet …`) command line shown in a ```console block
  (after `$ `), a ```sh, ```bash or ```shell block, or a ```usage block (a synopsis, where
  indented lines continue the command above) must name a subcommand that exists and only options
  its `--help` lists, with values among the choices `--help` lists; `xpnet experiment NAME` must
  name an experiment of `xpnet experiment --list`; `make TARGET` must be a Makefile target, and a
  script run by its path must exist.
- Links: every relative link leads to a file (and its #anchor to a heading there); the README
  links every page of docs/ and every page links back to the README; the README's Layout block
  names only paths that exist.
"""
import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]  # docs/benchmarks/*.md are reports, not pages

PAGE_TIMEOUT = 240          # seconds for all the Python blocks of one page
HELP_TIMEOUT = 120
SHELL_LANGUAGES = ("sh", "bash", "shell")
NO_RUN = re.compile(r"<!--\s*no-run:\s*(.*?)\s*-->")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`]*)$")


class Block(NamedTuple):
    page: str        # path relative to the repository root
    line: int        # line number of the opening fence (1-based)
    language: str    # first word of the fence's info string
    info: str        # the whole info string
    source: str
    no_run: str      # the reason it must not run, or ""


def _rel(path):
    return path.relative_to(ROOT).as_posix()


@functools.lru_cache(maxsize=None)
def parse(page):
    """(blocks, prose lines with their numbers) of a Markdown page."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, prose, i = [], [], 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        fence, info = opened.group(1), opened.group(2).strip()
        start, body = i, []
        i += 1
        while i < len(lines) and not re.match(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        # the marker: the last non-blank line before the fence (one blank line between is fine)
        before = next(((n, text) for n, text in reversed(prose) if text.strip()), (0, ""))
        marked = NO_RUN.search(before[1]) if before[0] >= start - 1 else None
        words = info.split()
        reason = marked.group(1) if marked else (" ".join(words[2:]) or "marked no-run"
                                                 if "no-run" in words[1:2] else "")
        blocks.append(Block(_rel(page), start + 1, words[0] if words else "", info,
                            "\n".join(body) + "\n", reason))
    return tuple(blocks), tuple(prose)


def blocks_of(page, *languages):
    return [b for b in parse(page)[0] if b.language in languages]


# --- Python examples --------------------------------------------------------------------------

RUNNER = '''\
import json, sys, time

def main():
    namespace = {"__name__": "__main__"}  # as a script's, so `if __name__ == "__main__":` runs
    for block in json.load(open(sys.argv[1], encoding="utf-8")):
        # blank lines in front, so that a traceback gives the line in the page
        code = compile("\\n" * block["line"] + block["source"], block["page"], "exec")
        if block["no_run"]:
            print(f"--- {block['page']}:{block['line']}: compiled only ({block['no_run']})", flush=True)
            continue
        print(f"--- {block['page']}:{block['line']}", flush=True)
        started = time.perf_counter()
        exec(code, namespace)
        print(f"--- {block['page']}:{block['line']}: {time.perf_counter() - started:.1f} s", flush=True)

if __name__ == "__main__":  # the search's spawned workers import this file again: do nothing then
    main()
'''

PYTHON_PAGES = [p for p in PAGES if blocks_of(p, "python")]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=_rel)
def test_python_examples_run(page, tmp_path):
    blocks = blocks_of(page, "python")
    (tmp_path / "blocks.json").write_text(json.dumps([b._asdict() for b in blocks]))
    (tmp_path / "runner.py").write_text(RUNNER)
    (tmp_path / "data").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("XPNET_DEVICE", "JAX_PLATFORMS")}
    env.update(XPNET_BACKEND="numpy", XPNET_DATA=str(tmp_path / "data"), MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    try:
        done = subprocess.run([sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "blocks.json")],
                              cwd=work, env=env, capture_output=True, text=True, timeout=PAGE_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"{_rel(page)}: the examples ran over {PAGE_TIMEOUT} s; the blocks started:\n"
                    f"{out[-2000:]}")
    assert done.returncode == 0, (f"an example of {_rel(page)} failed (the traceback gives the "
                                  f"page's line):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")


def test_no_run_blocks_are_few_and_say_why():
    skipped = [b for p in PAGES for b in blocks_of(p, "python") if b.no_run]
    assert all(b.no_run.strip() for b in skipped)
    assert len(skipped) <= 3, "keep the examples runnable: " + ", ".join(
        f"{b.page}:{b.line}" for b in skipped)
    assert sum(len(blocks_of(p, "python")) for p in PAGES) >= 10  # the parser found the examples


# --- command lines ------------------------------------------------------------------------------

class Command(NamedTuple):
    page: str
    line: int
    words: list      # without a prompt, leading VAR=value words and the trailing comment

    def __str__(self):
        return f"{self.page}:{self.line}: {' '.join(self.words)}"


def _strip_comment(text):
    return re.split(r"(?:^|\s)#", text, maxsplit=1)[0]


def _commands(block):
    """The command lines of a console, shell or usage block (continuation lines joined)."""
    found, current = [], None
    for n, raw in enumerate(block.source.splitlines(), start=block.line + 1):
        if block.language == "console":
            if current is not None and current[2]:  # a continued line (backslash)
                text = raw
            elif raw.startswith("$ "):
                text = raw[2:]
            else:
                current = None
                continue
        elif block.language == "usage":
            if raw[:1].isspace() and current is not None:
                current[1].append(_strip_comment(raw))
                continue
            text = raw
        else:
            text = raw
        text = _strip_comment(text).rstrip()
        if not text.strip():
            current = None
            continue
        continued = text.endswith("\\")
        if current is not None and current[2]:
            current[1].append(text.rstrip("\\"))
            current[2] = continued
            continue
        current = [n, [text.rstrip("\\")], continued]
        found.append(current)
    commands = []
    for n, parts, _ in found:
        words = " ".join(parts).split()
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
            words = words[1:]
        if words:
            commands.append(Command(block.page, n, words))
    return commands


def _xpnet_args(words):
    """The arguments after `xpnet` / `python -m xpnet`, or None for another program."""
    if words[0] == "xpnet":
        return words[1:]
    if re.fullmatch(r"\S*python[\d.]*", words[0]) and words[1:3] == ["-m", "xpnet"]:
        return words[3:]
    return None


ALL_COMMANDS = [c for p in PAGES
                for b in blocks_of(p, "console", "usage", *SHELL_LANGUAGES) for c in _commands(b)]
XPNET_COMMANDS = [(c, _xpnet_args(c.words)) for c in ALL_COMMANDS if _xpnet_args(c.words) is not None]


#: Subcommands whose first argument is an action (`xpnet book run`): documented as one.
NESTED = ("book",)


def _subcommand(args):
    if args and args[0] in NESTED and len(args) > 1 and not args[1].startswith("-"):
        return f"{args[0]} {args[1]}"
    return args[0] if args and not args[0].startswith("-") else ""


SUBCOMMANDS = sorted({_subcommand(args) for _, args in XPNET_COMMANDS})


@functools.lru_cache(maxsize=None)
def xpnet_help(*args):
    env = {**os.environ, "COLUMNS": "1000"}  # one option per line, choices never wrapped
    return subprocess.run([sys.executable, "-m", "xpnet", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=HELP_TIMEOUT)


def _options(help_text):
    """{--option: its choices (a set) or None} of an argparse help text."""
    options = {}
    for match in re.finditer(r"(?<![\w-])(--[A-Za-z0-9][\w-]*)(?: \{([^}]*)\})?", help_text):
        flag, choices = match.group(1), match.group(2)
        if choices is not None or flag not in options:
            options[flag] = None if choices is None else set(choices.split(","))
    return options


@pytest.mark.parametrize("subcommand", SUBCOMMANDS, ids=lambda s: s or "xpnet")
def test_documented_commands_exist(subcommand):
    shown = [(c, args) for c, args in XPNET_COMMANDS if _subcommand(args) == subcommand]
    done = xpnet_help(*subcommand.split(), "--help")
    assert done.returncode == 0, (
        f"`xpnet {subcommand}` does not exist, but the docs show it:\n"
        + "\n".join(str(c) for c, _ in shown) + f"\n{done.stderr.strip()}")
    options = _options(done.stdout)
    wrong = []
    for command, args in shown:
        rest = args[len(subcommand.split()):]
        for k, word in enumerate(rest):
            for flag in re.findall(r"(?<![\w-])--[A-Za-z0-9][\w-]*", word):
                if flag not in options:
                    wrong.append(f"{command}\n    {flag}: not an option of `xpnet {subcommand}`")
            given = re.match(r"^[\[(]*(--[A-Za-z0-9][\w-]*)[\])]*$", word)
            if given and options.get(given.group(1)) and k + 1 < len(rest):
                values = rest[k + 1].strip("[]()").split("|")
                for value in values:
                    if re.fullmatch(r"[a-z0-9][a-z0-9._-]*", value) and value not in options[given.group(1)]:
                        wrong.append(f"{command}\n    {given.group(1)} {value}: not one of "
                                     f"{sorted(options[given.group(1)])}")
        if subcommand == "experiment" and rest and not rest[0].startswith(("-", "[")) \
                and not rest[0].isupper():
            listed = xpnet_help("experiment", "--list")
            names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
            if rest[0] not in names:
                wrong.append(f"{command}\n    {rest[0]}: not in `xpnet experiment --list`")
    assert not wrong, "the docs show options that do not exist:\n" + "\n".join(wrong)


def test_documented_make_targets_and_scripts_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", makefile, flags=re.M))
    wrong, makes = [], 0
    for command in ALL_COMMANDS:
        program, *rest = command.words
        if program == "make":
            makes += 1
            for target in (w for w in rest if not w.startswith("-") and "=" not in w):
                if target not in targets:
                    wrong.append(f"{command}: no Makefile target {target!r}")
        elif "/" in program and not program.startswith(("/", ".venv/", "$")):
            if not (ROOT / program).is_file():
                wrong.append(f"{command}: no file {program}")
    assert makes >= 2 and not wrong, "\n".join(wrong)
    assert XPNET_COMMANDS, "the parser found no xpnet command lines"


# --- links and layout ----------------------------------------------------------------------------

def _anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*]|<[^>]+>", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@functools.lru_cache(maxsize=None)
def anchors(page):
    return {_anchor(text.lstrip("#")) for _, text in parse(page)[1] if re.match(r"^#{1,6} ", text)}


def _links(page):
    for n, text in parse(page)[1]:
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
            yield n, target


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_links_resolve(page):
    wrong = []
    for n, target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        goal = (page.parent / path).resolve() if path else page
        if not goal.exists():
            wrong.append(f"{_rel(page)}:{n}: {target}: no such file")
        elif anchor and goal.suffix == ".md" and anchor not in anchors(goal):
            wrong.append(f"{_rel(page)}:{n}: {target}: no heading #{anchor} in {_rel(goal)}")
    assert not wrong, "\n".join(wrong)


def test_readme_and_pages_link_each_other():
    linked = {(README.parent / t.partition("#")[0]).resolve() for _, t in _links(README)}
    missing = [_rel(p) for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"the README does not link {missing}"
    for page in PAGES[1:]:
        head = page.read_text(encoding="utf-8").splitlines()[:6]
        assert any("(../README.md)" in line for line in head), \
            f"{_rel(page)} should say what it covers and link back to the README in its first lines"


def test_layout_names_existing_paths():
    _, prose = parse(README)
    start = next(n for n, text in prose if text.strip() == "## Layout")
    block = next(b for b in parse(README)[0] if b.line > start)
    missing = []
    for text in block.source.splitlines():
        if not text or text[0].isspace():
            continue
        for word in text.split():
            if "/" not in word:
                break
            if not list(ROOT.glob(word.rstrip("/"))):
                missing.append(word)
    assert not missing, f"README's Layout names paths that do not exist: {missing}"
