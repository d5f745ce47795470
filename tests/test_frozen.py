"""Released migrations are frozen: alembic/frozen.sha256 records, per released revision, the SHA-256 of its
revision file and of the files frozen with it (sql/aggregates with 0003); a listed file that changes or
disappears fails here, as promscale freezes its incremental migrations. A database that ran a revision never
runs it again, so an edit to a released one reaches only new databases: change the schema with a new
revision instead.

Revisions newer than the manifest's last entry are unreleased (being written) and are not checked. The lead
releases revision NNNN by appending its block to the manifest, from the repository root:

    { echo "# revision NNNN"; sha256sum alembic/versions/NNNN_*.py [files frozen with it]; } >> alembic/frozen.sha256

and commits it with the release. From then on that revision is never edited.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

from tests.conftest import ROOT

MANIFEST = Path("alembic") / "frozen.sha256"
VERSIONS = Path("alembic") / "versions"
RELEASE_HINT = (
    "released files are frozen: undo the edit and change the schema with a new revision (next free number in"
    " alembic/versions). To release a revision NNNN, append to alembic/frozen.sha256:"
    ' { echo "# revision NNNN"; sha256sum alembic/versions/NNNN_*.py; } >> alembic/frozen.sha256'
    " (see tests/test_frozen.py)"
)
_SECTION = re.compile(r"^# revision (\d{4})$")
_ENTRY = re.compile(r"^([0-9a-f]{64})  (\S+)$")
_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")


def parse_manifest(text: str) -> dict[str, list[tuple[str, str]]]:
    """Revision -> [(sha256, path)] in manifest order; raises ValueError on a malformed line."""
    revisions: dict[str, list[tuple[str, str]]] = {}
    current = None
    for number, line in enumerate(text.splitlines(), 1):
        if section := _SECTION.match(line):
            current = section.group(1)
            if current in revisions:
                raise ValueError(f"line {number}: revision {current} listed twice")
            revisions[current] = []
        elif entry := _ENTRY.match(line):
            if current is None:
                raise ValueError(f"line {number}: a hash before the first '# revision NNNN' line")
            revisions[current].append((entry.group(1), entry.group(2)))
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"line {number}: expected '# revision NNNN' or '<sha256>  <path>', got {line!r}")
    return revisions


def frozen_problems(root: Path) -> list[str]:
    """Everything that breaks the freeze in the tree at root (empty when it holds)."""
    revisions = parse_manifest((root / MANIFEST).read_text())
    if not revisions:
        return [f"{MANIFEST} lists no revision"]
    problems = []
    numbers = list(revisions)
    if numbers != sorted(numbers) or [int(n) for n in numbers] != list(range(1, len(numbers) + 1)):
        problems.append(f"{MANIFEST}: revisions must be 0001, 0002, ... in order, got {', '.join(numbers)}")
    for revision, entries in revisions.items():
        own = [p for _, p in entries if Path(p).parent == VERSIONS and Path(p).name.startswith(f"{revision}_")]
        if len(own) != 1:
            problems.append(f"{MANIFEST}: revision {revision} must list exactly one {VERSIONS}/{revision}_*.py")
        for digest, path in entries:
            file = root / path
            if not file.is_file():
                problems.append(f"{path} (frozen with revision {revision}) is gone")
            elif hashlib.sha256(file.read_bytes()).hexdigest() != digest:
                problems.append(f"{path} (frozen with revision {revision}) changed")
        for path in own:
            text = (root / path).read_text() if (root / path).is_file() else ""
            down = numbers[numbers.index(revision) - 1] if numbers.index(revision) else None
            if text and f'revision = "{revision}"' not in text:
                problems.append(f"{path} does not declare revision = {revision!r}")
            expected_down = "None" if down is None else f'"{down}"'
            if text and f"down_revision = {expected_down}" not in text:
                problems.append(f"{path} does not declare down_revision = {expected_down}")
    released = max(numbers)
    listed = {p for entries in revisions.values() for _, p in entries}
    for file in sorted((root / VERSIONS).glob("*.py")):
        match = _REVISION_FILE.match(file.name)
        path = f"{VERSIONS}/{file.name}"
        if match and match.group(1) <= released and path not in listed:
            problems.append(
                f"{path} is numbered inside the released revisions (up to {released}) but not in {MANIFEST}:"
                f" a new revision takes the next free number above {released}"
            )
    return problems


def test_released_revisions_and_aggregates_are_unchanged():
    problems = frozen_problems(ROOT)
    assert not problems, "\n".join(problems) + "\n" + RELEASE_HINT


def test_every_rollup_definition_is_frozen_with_its_revision():
    """sql/aggregates is applied by revisions (0003 the first four): a definition is listed in the manifest with
    its released revision, or named by an unreleased one (released with it)."""
    revisions = parse_manifest((ROOT / MANIFEST).read_text())
    listed = {p for entries in revisions.values() for _, p in entries}
    unreleased = "".join(
        f.read_text()
        for f in (ROOT / VERSIONS).glob("*.py")
        if (m := _REVISION_FILE.match(f.name)) and m.group(1) > max(revisions)
    )
    orphans = [
        f"sql/aggregates/{f.name}"
        for f in sorted((ROOT / "sql" / "aggregates").glob("*.sql"))
        if f"sql/aggregates/{f.name}" not in listed and f.name not in unreleased
    ]
    assert not orphans, f"rollup definitions no revision applies: {orphans}"


def _copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "alembic").mkdir(parents=True)
    shutil.copy(ROOT / MANIFEST, root / MANIFEST)
    shutil.copytree(ROOT / VERSIONS, root / VERSIONS, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "sql" / "aggregates", root / "sql" / "aggregates")
    return root


def test_the_check_fails_on_an_edit_or_removal_and_passes_unreleased_revisions(tmp_path: Path):
    root = _copy_tree(tmp_path)
    released = max(parse_manifest((root / MANIFEST).read_text()))
    # An unreleased revision above the last released one (being written now) is not checked.
    (root / VERSIONS / f"{int(released) + 1:04d}_work_in_progress.py").write_text(
        f'revision = "{int(released) + 1:04d}"\ndown_revision = "{released}"\n'
    )
    assert frozen_problems(root) == []
    # Any byte of a released revision or of a frozen aggregate changed: named.
    revision_file = next((root / VERSIONS).glob("0002_*.py"))
    revision_file.write_bytes(revision_file.read_bytes() + b"\n")
    aggregate = root / "sql" / "aggregates" / "010_btc_primitive_1h.sql"
    aggregate.write_text(aggregate.read_text().replace("SELECT", "SELECT  ", 1))
    assert frozen_problems(root) == [
        f"{VERSIONS}/{revision_file.name} (frozen with revision 0002) changed",
        "sql/aggregates/010_btc_primitive_1h.sql (frozen with revision 0003) changed",
    ]
    # A released revision removed, or a file slipped in among the released numbers.
    root = _copy_tree(tmp_path / "again")
    gone = next((root / VERSIONS).glob("0005_*.py"))
    gone.unlink()
    (root / VERSIONS / "0004_extra.py").write_text('revision = "0004b"\n')
    problems = frozen_problems(root)
    assert f"{VERSIONS}/{gone.name} (frozen with revision 0005) is gone" in problems
    assert any(p.startswith(f"{VERSIONS}/0004_extra.py is numbered inside the released revisions") for p in problems)
