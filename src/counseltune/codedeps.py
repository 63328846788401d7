"""The code files each stage depends on, computed from imports instead of listed by hand.

A stage is one `counseltune <command>` call. Its code is cli.py with what cli.py imports at module level, plus
the import closure of the modules its handler in cli.py imports (every `import`/`from ... import` of our package
anywhere in a module, function-level ones included, so the set can only be too large, never too small), plus the
package data (pyproject's package-data) of every package in that closure. Snakemake computes this at parse time
(workflow/rules/common.smk); dvc.yaml's code deps are written by `counseltune code-deps --write` and checked
against it by the tests, so neither engine can miss a file a stage imports.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

from counseltune.llm_inputs import FLAG, LLM_CLIENT_COMMANDS, LOCAL_LLM_DEP

PACKAGE = "counseltune"
CODE_PREFIXES = ("src/", "schemas")


class CodeTree:
    """The code of one project checkout (the Snakefile passes its own folder: a copy of the project computes its
    own files, not the installed package's)."""

    def __init__(self, repo: Path | str):
        self.repo = Path(repo).resolve()
        self.src = self.repo / "src" / PACKAGE
        self.schemas = self.repo / "schemas"  # shipped as counseltune.schemas (pyproject's package-dir)
        self.cli = self.src / "cli.py"
        self._trees: dict[Path, ast.Module] = {}
        self._closures: dict[frozenset[str], frozenset[str]] = {}
        self._imports: dict[str, set[str]] = {}
        self._files: dict[str, Path] = {}

    def stage_code(self, command: str, *extra_modules: str) -> list[str]:
        """Repo-relative paths of the files `counseltune <command>` runs (extra_modules: ones it imports by name at
        run time, e.g. the ingest format chosen by params)."""
        modules = set(self._cli_imports) | set(self.handler_imports(command)) | set(extra_modules)
        files = {self.cli} | {self.module_file(m) for m in self.closure(frozenset(modules))}
        files |= {data for package in self.packages_of(files) for data in self.package_data(package)}
        return sorted(self.relative(f) for f in files)

    @functools.cached_property
    def _commands(self) -> dict[str, str]:
        return self.stage_commands()

    def stage_commands(self) -> dict[str, str]:
        """CLI command -> name of its handler in cli.py (from the `_stage(sub, "<command>", ..., handler)` calls)."""
        out = {}
        for node in ast.walk(self.tree(self.cli)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_stage" and len(node.args) >= 4:
                name, handler = node.args[1], node.args[3]
                if isinstance(name, ast.Constant) and isinstance(handler, ast.Name):
                    out[name.value] = handler.id
        return out

    def handler_imports(self, command: str) -> list[str]:
        handler = self._commands.get(command)
        if handler is None:
            raise KeyError(f"cli.py has no stage command {command!r}")
        function = next(n for n in self.tree(self.cli).body if isinstance(n, ast.FunctionDef) and n.name == handler)
        return sorted(self.imports_in(function, f"{PACKAGE}.cli"))

    @functools.cached_property
    def _cli_imports(self) -> list[str]:
        return self.module_level_imports(self.cli)

    def module_level_imports(self, path: Path) -> list[str]:
        tree = self.tree(path)
        top = ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[])
        return sorted(self.imports_in(top, self.module_name(path)))

    def closure(self, modules: frozenset[str]) -> frozenset[str]:
        """Our modules reachable from `modules` by imports, with the packages that contain them (importing a.b.c
        runs a/__init__.py and a/b/__init__.py first)."""
        if modules not in self._closures:
            seen: set[str] = set()
            todo = [m for m in modules if _is_ours(m)]
            while todo:
                name = todo.pop()
                if name in seen or not self.exists(name):
                    continue
                seen.add(name)
                parts = name.split(".")
                todo += [".".join(parts[:i]) for i in range(1, len(parts))]
                todo += [m for m in self.module_imports(name) if m not in seen]
            self._closures[modules] = frozenset(seen)
        return self._closures[modules]

    def module_imports(self, name: str) -> set[str]:
        """Our modules that module `name` imports anywhere in its text (a scan, not a parse: Snakemake does this at
        every start, also inside each cluster job, so it must cost milliseconds; a match inside a string can only
        add a dependency, never lose one)."""
        if name not in self._imports:
            text = self.module_file(name).read_text(encoding="utf-8")
            package = name if self.module_file(name).name == "__init__.py" else name.rpartition(".")[0]
            found = set(_BY_NAME.findall(text))
            for modules in _IMPORT.findall(text):
                found |= {m.split(" as ")[0].strip() for m in modules.split(",")}
            for base, names in _FROM_IMPORT.findall(text):
                if base.startswith("."):  # relative: from . import x / from ..a import b
                    level = len(base) - len(base.lstrip("."))
                    anchor = package.split(".")[: len(package.split(".")) - (level - 1)]
                    base = ".".join(anchor + ([base.lstrip(".")] if base.lstrip(".") else []))
                found.add(base)
                for item in names.strip("()").replace("\\", " ").split(","):
                    item = item.split("#")[0].split(" as ")[0].strip()
                    if item and self.exists(f"{base}.{item}"):
                        found.add(f"{base}.{item}")
            self._imports[name] = {m for m in found if _is_ours(m)}
        return self._imports[name]

    def module_file(self, name: str) -> Path:
        if name not in self._files:
            self._files[name] = self._module_file(name)
        return self._files[name]

    def _module_file(self, name: str) -> Path:
        parts = name.split(".")
        base = self.schemas.joinpath(*parts[2:]) if parts[:2] == [PACKAGE, "schemas"] else self.src.joinpath(*parts[1:])
        return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")

    def module_name(self, path: Path) -> str:
        path = Path(path).resolve()
        if path.is_relative_to(self.schemas):
            parts = [PACKAGE, "schemas", *path.relative_to(self.schemas).with_suffix("").parts]
        else:
            parts = [PACKAGE, *path.relative_to(self.src).with_suffix("").parts]
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def packages_of(self, files: Iterable[Path]) -> set[str]:
        return {self.module_name(f) for f in files if f.name == "__init__.py"}

    def package_data(self, package: str) -> list[Path]:
        """Data files pyproject ships with a package (e.g. counseltune.fidelity's data/*.jsonl)."""
        pyproject = tomllib.loads((self.repo / "pyproject.toml").read_text(encoding="utf-8"))
        patterns = pyproject["tool"]["setuptools"].get("package-data", {}).get(package, [])
        folder = self.module_file(package).parent
        return sorted(p for pattern in patterns for p in folder.glob(pattern) if p.is_file())

    def imports_in(self, tree: ast.AST, current: str) -> set[str]:
        """Our module names imported anywhere in tree; `from pkg import name` counts pkg.name when it is a module."""
        found: set[str] = set()
        package = current if self.module_file(current).name == "__init__.py" else current.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x / from ..a import b
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in node.names if self.exists(f"{base}.{alias.name}")}
            elif isinstance(node, ast.Call) and _by_name(node):  # importlib.resources.files("counseltune.schemas")
                found.add(node.args[0].value)
        return {m for m in found if _is_ours(m)}

    def exists(self, name: str) -> bool:
        return _is_ours(name) and self.module_file(name).is_file()

    def tree(self, path: Path) -> ast.Module:
        if path not in self._trees:
            self._trees[path] = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
        return self._trees[path]

    def relative(self, path: Path) -> str:
        path = Path(path)
        return (path if path.is_absolute() else path.resolve()).relative_to(self.repo).as_posix()

    # -- dvc.yaml: its code deps written from the same computation -------------------------------------------

    def dvc_stage_code(self, cmd: str, templated: list[str]) -> list[str]:
        """The code deps of one dvc.yaml stage: its command's code, plus, for a templated entry such as
        src/counseltune/ingest/${item.format}.py, what any file it can stand for imports (the entry itself stays)."""
        files = set(self.stage_code(command_of(cmd)))
        for entry in templated:
            files |= self.imports_of_any(entry.split("${")[0] + "*" + entry.rsplit("}", 1)[1])
        return sorted(files)

    def imports_of_any(self, pattern: str) -> set[str]:
        """What any file matching pattern imports (not the file itself, unless another one imports it): the part
        of a per-item stage (one ingest format per source) that DVC can only declare for every item alike."""
        files: set[str] = set()
        for candidate in self.repo.glob(pattern):
            imported = self.module_imports(self.module_name(candidate))
            files |= {self.relative(self.module_file(m)) for m in self.closure(frozenset(imported))}
        return files

    def ingest_code(self, fmt: str) -> list[str]:
        """Snakemake's ingest job for one format: the same files dvc.yaml declares for it."""
        own = f"src/{PACKAGE}/ingest/{fmt}.py"
        return sorted(set(self.stage_code("ingest")) | self.imports_of_any(f"src/{PACKAGE}/ingest/*.py") | {own})

    def sync_dvc_yaml(self, write: bool) -> list[str]:
        """Compare (and with write=True, rewrite) every dvc.yaml stage's code deps with the computed ones, and its
        params with counseltune/stage_params.py's declaration; return a line per difference. Comments, data deps
        and key order are kept."""
        from ruamel.yaml import YAML

        from counseltune.stage_params import dvc_params

        path = self.repo / "dvc.yaml"
        yaml_rt = YAML()
        yaml_rt.width = 4096
        yaml_rt.indent(mapping=2, sequence=4, offset=2)
        document = yaml_rt.load(path.read_text(encoding="utf-8"))
        drift = []
        for name, stage in document["stages"].items():
            body = stage.get("do", stage)
            deps = body.get("deps", [])
            code = [d for d in deps if isinstance(d, str) and d.startswith(CODE_PREFIXES)]
            wanted = self.dvc_stage_code(body["cmd"], [d for d in code if "${" in d])
            have = {f for entry in code if "${" not in entry for f in self.expand(entry)}
            if have != set(wanted):
                missing, extra = sorted(set(wanted) - have), sorted(have - set(wanted))
                drift.append(f"{name}: missing {missing or '-'}; not imported {extra or '-'}")
                if write:
                    keep = [d for d in deps if not (isinstance(d, str) and d.startswith(CODE_PREFIXES) and "${" not in d)]
                    deps.clear()
                    deps.extend(keep + wanted)
            declared = dvc_params(command_of(body["cmd"]))
            if params_set(body.get("params", [])) != params_set(declared):
                drift.append(f"{name}: params {list(body.get('params', []))} but the stage declares {declared}")
                if write and declared:
                    body["params"] = declared
                elif write:
                    body.pop("params", None)
            if command_of(body["cmd"]) in LLM_CLIENT_COMMANDS:
                drift += self.sync_llm_inputs(name, body, write)
        if write and drift:
            buffer = io.StringIO()
            yaml_rt.dump(document, buffer)
            path.write_text(buffer.getvalue(), encoding="utf-8")
        return drift

    def sync_llm_inputs(self, name: str, body: dict, write: bool) -> list[str]:
        """A stage with an LLM client: the local LLM's model is a dep iff params.yaml's llm.backend is local, and
        its command says which backend its inputs are for (counseltune/llm_inputs.py)."""
        import yaml

        params = yaml.safe_load((self.repo / "params.yaml").read_text(encoding="utf-8"))
        backend = params["llm"]["backend"]
        drift = []
        deps = body["deps"]
        has = LOCAL_LLM_DEP in deps
        if has != (backend == "local"):
            drift.append(f"{name}: {'a' if has else 'no'} dep {LOCAL_LLM_DEP} but params.yaml's llm.backend is {backend}")
            if write and has:
                deps.remove(LOCAL_LLM_DEP)
            elif write:
                code = [i for i, d in enumerate(deps) if isinstance(d, str) and d.startswith(CODE_PREFIXES)]
                deps.insert(code[0] if code else len(deps), LOCAL_LLM_DEP)
        wanted = re.sub(rf" {FLAG} \S+", "", body["cmd"]) + f" {FLAG} {backend}"
        if body["cmd"] != wanted:
            drift.append(f"{name}: the command must end with {FLAG} {backend}")
            if write:
                body["cmd"] = wanted
        return drift

    def expand(self, entry: str) -> list[str]:
        """A dvc.yaml dep as the files it covers (a folder: every file below it but __pycache__)."""
        path = self.repo / entry
        if path.is_dir():
            return sorted(self.relative(p) for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        return [entry]


def params_set(entries: Iterable[str | dict]) -> set[tuple[str, str | None]]:
    """A dvc.yaml params list as (file, key) pairs: a plain key is params.yaml's, a file with no keys is whole."""
    out: set[tuple[str, str | None]] = set()
    for entry in entries:
        if isinstance(entry, str):
            out.add(("params.yaml", entry))
        else:
            out |= {(str(path), None if key is None else str(key)) for path, keys in entry.items() for key in keys or [None]}
    return out


def ingest_format_module(params: dict, source: str) -> str:
    """The format reader `counseltune ingest --source <source>` imports by name at run time."""
    return f"{PACKAGE}.ingest.{params['sources'][source]['format']}"


def command_of(cmd: str) -> str:
    words = cmd.split()
    if len(words) < 2 or words[0] != PACKAGE:
        raise ValueError(f"not a `{PACKAGE} <command>` call: {cmd}")
    return words[1]


_IMPORT = re.compile(r"^[ \t]*import[ \t]+([\w., \t]+)", re.MULTILINE)
_FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.MULTILINE)
_BY_NAME = re.compile(r"(?:import_module|files)\(\s*[\"'](counseltune[\w.]*)[\"']")


def _is_ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _by_name(call: ast.Call) -> bool:
    """A call that loads a module or its files by a literal name: import_module("..."), resources.files("...")."""
    name = getattr(call.func, "attr", None) or getattr(call.func, "id", None)
    return (name in ("import_module", "files") and bool(call.args) and isinstance(call.args[0], ast.Constant)
            and isinstance(call.args[0].value, str))
