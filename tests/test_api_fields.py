"""docs/architecture.md names, for every field of every api view, the one SQL object that computes it; the table
is generated from the SQL and this test keeps it equal, so it cannot drift.

The SQL says where a field is computed with a header comment above the function or view that computes it:

    -- api fields of core.btc_primitive_10m: block_count, tx_count_10m
    -- api fields of core.btc_market_cap_{10m,1h,24h}: *
    -- api fields of core.btc_primitive_1h by sql/aggregates/050_btc_primitive_1h_v2.sql: *
    -- api fields of core.btc_primitive_10m: issued_sat_10m=issued_sat, tx_count_10m=tx_count,
    --     fees_sat_10m=fee_sat

The relation is the table or view the field is stored in (braces list several); `*` is every column of it that
no other comment names; a long list goes on in comment lines indented further; `field=name` is a field the
home computes under another name (a part its caller stores under the field's name); the home is the CREATE
that follows the comment (its function or view), unless `by` names another (a frozen rollup definition file,
which takes no comments). A field of an api view is found through the relations the view reads it from
(information_schema.view_column_usage), or on the view itself: the view before what it reads, and on each a
named field before `*`. Checked: every api field has exactly one home, every named field exists, every home's
text mentions each field it is the home of (under its name there), and the generated table is the one in
docs/architecture.md. `MQNODE_WRITE_DOCS=1` rewrites that table from the SQL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.conftest import ROOT

DOC = ROOT / "docs" / "architecture.md"
BEGIN = "<!-- generated: api fields (tests/test_api_fields.py; MQNODE_WRITE_DOCS=1 rewrites it) -->\n"
END = "<!-- end generated: api fields -->"
SQL_FILES = [*sorted((ROOT / "sql" / "functions").glob("*.sql"))]
_DECLARATION = re.compile(r"^-- api fields of (?P<relation>[\w.{},]+)(?: by (?P<home>\S+))?: (?P<fields>.+)$")
_CREATE = re.compile(
    r"^CREATE (?:OR REPLACE )?(?:FUNCTION|PROCEDURE|VIEW|MATERIALIZED VIEW)\s+(?P<name>[\w.]+)", re.I | re.M
)


@dataclass(frozen=True)
class Declaration:
    relation: str  # schema.name
    fields: tuple[str, ...] | None  # None: *
    home: str  # a function/view name, or a file path
    where: str  # file:line of the comment
    names: tuple[str, ...] = ()  # what the home calls each field (field=name), else the field's own name


def _expand(relation: str) -> list[str]:
    match = re.fullmatch(r"(.*)\{([^}]*)\}(.*)", relation)
    if not match:
        return [relation]
    return [out for part in match.group(2).split(",") for out in _expand(match.group(1) + part + match.group(3))]


def declarations(files: list[Path] = SQL_FILES) -> list[Declaration]:
    out = []
    for path in files:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            match = _DECLARATION.match(line)
            if not match:
                continue
            where = f"{path.relative_to(ROOT)}:{number + 1}"
            text = match.group("fields").strip()
            for more in lines[number + 1 :]:  # a long list goes on in comment lines indented by 3 or more
                if not more.startswith("--   "):
                    break
                text += " " + more[2:].strip()
            home = match.group("home")
            if home is None:
                following = _CREATE.search("\n".join(lines[number + 1 :]))
                assert following, f"{where}: no CREATE after the comment"
                home = following.group("name")
            pairs = [(f.split("=", 1) + [f])[:2] for f in (p.strip() for p in text.split(","))]
            fields = None if text == "*" else tuple(field.strip() for field, _ in pairs)
            names = () if text == "*" else tuple(name.strip() for _, name in pairs)
            for relation in _expand(match.group("relation")):
                out.append(Declaration(relation, fields, home, where, names))
    return out


def object_texts(files: list[Path] = SQL_FILES) -> dict[str, str]:
    """Each CREATEd object's text (to the next CREATE), by name; each rollup definition file by its path."""
    texts: dict[str, str] = {}
    for path in files:
        text = path.read_text()
        starts = list(_CREATE.finditer(text))
        for i, match in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            texts[match.group("name")] = texts.get(match.group("name"), "") + text[match.start() : end]
    for path in sorted((ROOT / "sql" / "aggregates").glob("*.sql")):
        texts[str(path.relative_to(ROOT))] = path.read_text()
    return texts


def api_fields(conn: psycopg.Connection) -> dict[str, list[str]]:
    rows = conn.execute(
        "SELECT c.table_name, c.column_name FROM information_schema.columns AS c"
        " JOIN information_schema.views AS v ON (v.table_schema, v.table_name) = (c.table_schema, c.table_name)"
        " WHERE c.table_schema = 'api' ORDER BY c.table_name, c.ordinal_position"
    ).fetchall()
    out: dict[str, list[str]] = {}
    for view, column in rows:
        out.setdefault(f"api.{view}", []).append(column)
    return out


def columns_of(conn: psycopg.Connection, relation: str) -> list[str]:
    schema, name = relation.split(".", 1)
    return [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped"
            " ORDER BY attnum",
            (f"{schema}.{name}",),
        )
    ]


def read_from(conn: psycopg.Connection, view: str) -> dict[str, list[str]]:
    """Column -> the relations (schema.name) the view reads a column of that name from."""
    out: dict[str, list[str]] = {}
    rows = conn.execute(
        "SELECT column_name, table_schema || '.' || table_name FROM information_schema.view_column_usage"
        " WHERE view_schema = 'api' AND view_name = %s ORDER BY 2",
        (view.split(".", 1)[1],),
    ).fetchall()
    for column, relation in rows:
        out.setdefault(column, []).append(relation)
    return out


def resolve(conn: psycopg.Connection) -> tuple[dict[str, list[tuple[str, str, str]]], list[str]]:
    """view -> [(field, home, the home's name for it)] in column order, and the problems (no home, two homes,
    unknown fields)."""
    decls = declarations()
    problems = []
    named: dict[tuple[str, str], set[str]] = {}
    star: dict[str, set[str]] = {}
    aliases: dict[tuple[str, str], str] = {}  # (home, field) -> the name the home's text uses
    for d in decls:
        if d.fields is None:
            star.setdefault(d.relation, set()).add(d.home)
            continue
        existing = set(columns_of(conn, d.relation))
        for field, name in zip(d.fields, d.names, strict=True):
            if field not in existing:
                problems.append(f"{d.where}: {d.relation} has no column {field}")
            named.setdefault((d.relation, field), set()).add(d.home)
            aliases[(d.home, field)] = name
    for relation, homes in star.items():
        if len(homes) > 1:
            problems.append(f"{relation}: `*` declared by {sorted(homes)}")
        if not columns_of(conn, relation):
            problems.append(f"{relation} (declared with *) does not exist")
    out: dict[str, list[tuple[str, str]]] = {}
    for view, fields in api_fields(conn).items():
        sources = read_from(conn, view)
        for field in fields:
            relations = [r for r in sources.get(field, []) if field in columns_of(conn, r)]
            levels = [  # the view before what it reads; on each, a named field before `*`
                named.get((view, field), set()),
                star.get(view, set()),
                set().union(*(named.get((r, field), set()) for r in relations)),
                set().union(*(star.get(r, set()) for r in relations)),
            ]
            homes = next((level for level in levels if level), set())
            if len(homes) != 1:
                problems.append(
                    f"{view}.{field}: " + (f"two homes {sorted(homes)}" if homes else f"no home (reads {relations})")
                )
                continue
            home = next(iter(homes))
            out.setdefault(view, []).append((field, home, aliases.get((home, field), field)))
    return out, problems


def render(resolved: dict[str, list[tuple[str, str, str]]]) -> str:
    lines = ["| api view | fields | computed by |", "|---|---|---|"]
    for view in sorted(resolved):
        groups: dict[str, list[str]] = {}
        for field, home, name in resolved[view]:
            groups.setdefault(home, []).append(field if name == field else f"{field} ({name})")
        for home, fields in groups.items():
            lines.append(f"| {view} | {', '.join(fields)} | `{home}` |")
    return "\n".join(lines)


def test_every_api_field_has_one_home_that_computes_it(db_url):
    with psycopg.connect(db_url) as conn:
        resolved, problems = resolve(conn)
    texts = object_texts()
    for view, fields in resolved.items():
        for field, home, name in fields:
            text = texts.get(home)
            if text is None:
                problems.append(f"{view}.{field}: its home {home} is no CREATE in sql/ (nor a rollup file)")
            elif not re.search(rf"\b{re.escape(name)}\b", text):
                problems.append(f"{view}.{field}: its home {home} does not mention {name}")
    assert not problems, "\n".join(problems)
    generated = render(resolved)
    doc = DOC.read_text()
    if os.environ.get("MQNODE_WRITE_DOCS") == "1":
        before, rest = doc.split(BEGIN, 1)
        DOC.write_text(before + BEGIN + generated + "\n" + END + rest.split(END, 1)[1])
        doc = DOC.read_text()
    assert BEGIN in doc and END in doc, f"docs/architecture.md has no generated api fields table ({BEGIN.strip()})"
    current = doc.split(BEGIN, 1)[1].split(END, 1)[0]
    assert current == generated + "\n", "docs/architecture.md's api fields table is stale: run with MQNODE_WRITE_DOCS=1"
