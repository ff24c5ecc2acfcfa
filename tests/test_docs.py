"""The documentation stays true to the tree: every relative Markdown link (and its #anchor) and every
repository path named in the README, docs/, the code, the tests, the units and the scripts exists;
the README stays a short guide; each measurement says when, where and how it was taken."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 350

# Top-level folders whose paths are checked wherever they are named. A path counts only where it
# starts a token (not inside /etc/systemd/..., ../shared/..., robot-detector/weights or a URL).
PATH_PREFIXES = (".ci", "docs", "design", "detector", "robot_client", "tests", "scripts", "systemd", "weights")
PATH = re.compile(r"(?<![\w./~-])(?:" + "|".join(re.escape(p) for p in PATH_PREFIXES) + r")/[\w./-]*")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def documents(root: Path) -> list:
    """The Markdown files whose links are checked."""
    found = [root / "README.md", root / "weights" / "README.md", *sorted((root / "docs").rglob("*.md"))]
    return [path for path in found if path.is_file()]


def sources(root: Path) -> list:
    """Every file whose text may name repository paths: the documents, code, tests, units, scripts."""
    files = documents(root) + [root / "pyproject.toml", root / ".ci" / "run"]
    for folder, pattern in (("detector", "*.py"), ("detector", "*.html"), ("robot_client", "*.py"),
                            ("tests", "*.py"), ("systemd", "*"), ("scripts", "*")):
        files += [path for path in sorted((root / folder).rglob(pattern))
                  if path.is_file() and "__pycache__" not in path.parts]
    # this file names made-up paths on purpose: its last test builds a small tree with them
    return [path for path in files if path.is_file() and path != Path(__file__).resolve()]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set:
    names, seen = set(), {}
    for heading in HEADING.findall(FENCE.sub("", markdown)):
        name = anchor(heading)
        count = seen.get(name, 0)
        seen[name] = count + 1
        names.add(name if count == 0 else f"{name}-{count}")
    return names


def link_problems(path: Path, root: Path) -> list:
    """Relative links in a Markdown file whose target (or #anchor in a Markdown target) is missing."""
    text = path.read_text(encoding="utf-8")
    problems = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}: link {target}"
        if not resolved.exists():
            problems.append(f"{where}: {file_part} does not exist")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved.read_text(encoding="utf-8")):
            problems.append(f"{where}: {resolved.relative_to(root)} has no heading #{fragment}")
    return problems


def path_problems(path: Path, root: Path) -> list:
    """Repository paths named in a file that exist neither from the root nor beside the file."""
    problems = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        for named in PATH.findall(line):
            named = named.rstrip(".")
            if not (root / named).exists() and not (path.parent / named).exists():
                problems.append(f"{path.relative_to(root)}:{line_number}: {named} does not exist")
    return problems


def test_readme_is_a_short_guide():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; keep it under {README_MAX_LINES}: move details to docs/"


def test_readme_commands_are_what_ci_runs():
    """CI does exactly the README's set-up and runs exactly the README's test command."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    setup = next(line.strip() for line in ci if line.strip().startswith("scripts/"))
    test = ci[ci.index("# The README's test command:") + 1].strip()
    assert setup == "scripts/setup" and any(line.split("#")[0].strip() == setup for line in readme), setup
    assert any(line.strip() == test for line in readme), f"README.md lacks CI's test command: {test}"


def test_every_relative_link_resolves():
    problems = [problem for path in documents(ROOT) for problem in link_problems(path, ROOT)]
    assert len(documents(ROOT)) > 10  # the README, weights/README.md and the docs tree were found
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_every_repository_path_named_resolves():
    files = sources(ROOT)
    assert any(path.suffix == ".py" for path in files) and any(path.parent.name == "systemd" for path in files)
    problems = [problem for path in files for problem in path_problems(path, ROOT)]
    assert not problems, "paths that do not exist (moved? update the text):\n" + "\n".join(problems)


def test_each_measurement_says_when_where_and_how():
    files = [path for path in sorted((ROOT / "docs" / "measurements").glob("*.md")) if path.name != "README.md"]
    assert {path.stem for path in files} >= {"engines", "memory", "int8", "soak", "training", "follower", "suite"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert re.search(r"\b20\d\d-\d\d-\d\d\b", text), f"{path.name}: no date"
        assert re.search(r"\bcommits? [0-9a-f]{7,40}\b", text), f"{path.name}: no commit"
        assert "CPU" in text, f"{path.name}: no CPU (or 'historical, CPU not recorded')"
        assert "Command" in text, f"{path.name}: no command to repeat it"


def test_the_checks_catch_broken_links_anchors_and_paths(tmp_path):
    """The checkers themselves, on a small tree with one good and one broken case of each kind."""
    (tmp_path / "docs" / "design").mkdir(parents=True)
    (tmp_path / "detector").mkdir()
    (tmp_path / "docs" / "design" / "facts.md").write_text("# Facts\n\n## Weights files\n")
    missing_doc, missing_code = "docs/gone.md", "detector/moved.py"
    missing_design = "design/facts.md"    # beside detector/, not beside docs/
    (tmp_path / "README.md").write_text(
        "[facts](docs/design/facts.md#weights-files) [gone](" + missing_doc + ") "
        "[no heading](docs/design/facts.md#training) [web](https://example.org/x.md) [self](#guide)\n\n"
        "# Guide\n\n```sh\n[not a link](nowhere.md)\n```\n")
    (tmp_path / "detector" / "code.py").write_text(
        f'"""See docs/design/facts.md and {missing_code}; also {missing_design}.\n'
        'Not paths: /etc/systemd/system/x.service, ../shared/docs/x, robot-detector/weights/x."""\n')

    assert [p.split(": ", 1)[1] for p in link_problems(tmp_path / "README.md", tmp_path)] == [
        f"link {missing_doc}: {missing_doc} does not exist",
        "link docs/design/facts.md#training: docs/design/facts.md has no heading #training"]
    assert path_problems(tmp_path / "detector" / "code.py", tmp_path) == [
        f"detector/code.py:1: {missing_code} does not exist",
        f"detector/code.py:1: {missing_design} does not exist"]
    assert anchor("int8 (`--precision int8`)") == "int8---precision-int8"
    assert anchor("What the simulator says, and what it cannot") == "what-the-simulator-says-and-what-it-cannot"
