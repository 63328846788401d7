"""One error type: every project exception named *Error is a CounseltuneError (so `counseltune` prints it as one
line), unless it is listed here as a bug signal that must keep its traceback."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "counseltune"
NOT_USER_ERRORS = {
    "DuplicateKeyError": "config.StrictLoader's internal signal; load_params turns it into a ParamsError",
    "SchemaError": "llm.constrained: a schema in our code the grammar engine cannot compile is a bug",
    "TurnError": "synthesize.turn_schema's internal signal: generate ends that session as invalid_turn, counted",
}


def project_classes() -> dict[str, tuple[str, list[str]]]:
    """class name -> (file, base names), for every class defined under src/counseltune."""
    classes = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [b.id if isinstance(b, ast.Name) else b.attr for b in node.bases if isinstance(b, (ast.Name, ast.Attribute))]
                classes[node.name] = (str(path.relative_to(SRC)), bases)
    return classes


def test_every_project_error_is_a_counseltune_error():
    classes = project_classes()

    def is_counseltune(name: str, seen: frozenset = frozenset()) -> bool:
        if name == "CounseltuneError":
            return True
        if name not in classes or name in seen:
            return False
        return any(is_counseltune(base, seen | {name}) for base in classes[name][1])

    stray = [f"{file}: {name}({', '.join(bases)})" for name, (file, bases) in classes.items()
             if name.endswith("Error") and name != "CounseltuneError" and name not in NOT_USER_ERRORS
             and not is_counseltune(name)]
    assert stray == [], ("subclass counseltune.errors.CounseltuneError (an expected, user-fixable failure) or list "
                         f"the class in NOT_USER_ERRORS with why it is a bug: {stray}")
