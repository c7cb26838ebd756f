"""Mutation testing of chosen sconet modules with mutmut (``make mutants``).

    python tools/mutants.py --modules python/sconet/training/optim.py --tests tests/test_optim.py

mutmut mutates the functions of the given modules one small change at a time (an operator, a
constant, a dropped argument ...) and runs the tests that reach each function: a mutant the
tests still pass with ("survived") is a bug they would not notice. mutmut reads its settings from
a ``pyproject.toml`` and imports the code from ``src/``, so this script lays out a scratch copy
under ``build/mutmut/`` (the package as ``src/sconet`` with the installed renderer extension,
the tests and the shipped experiment plans, a generated ``[tool.mutmut]`` table) and runs
``mutmut run`` there; a second run with the same modules reuses the results of unchanged
functions. It prints mutmut's summary and the survivors, and exits 0 (the score is a figure
to read, not a gate).

Only in-process tests see the mutants: the CLI tests run the installed ``sconet`` command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "sconet"


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{x}"' for x in items) + "]"


def _extension() -> Path:
    """The built renderer extension (the installed package's, else one beside the sources)."""
    found = sorted(PACKAGE.glob("_skelmap*.so"))
    if found:
        return found[0]
    import sconet._skelmap

    return Path(sconet._skelmap.__file__)


def prepare(work: Path, modules: list[str], tests: list[str]) -> None:
    """Refresh the scratch copy (sources, extension, tests) and write its mutmut settings."""
    src = work / "src" / "sconet"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copy2(_extension(), src / _extension().name)
    # the tests, and the data files they read from the checkout (the shipped experiment plans)
    for folder in ("tests", "experiments"):
        if (work / folder).exists():
            shutil.rmtree(work / folder)
        shutil.copytree(ROOT / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__"))
    only = []
    for m in modules:
        rel = Path(m).resolve().relative_to(PACKAGE)
        if rel.suffix != ".py":
            raise SystemExit(f"mutants: {m} is not a Python module of python/sconet/")
        only.append(str(Path("src") / "sconet" / rel))
    selection = [str(Path(t)) for t in tests]
    (work / "pyproject.toml").write_text(
        "# written by tools/mutants.py\n"
        "[tool.pytest.ini_options]\n"
        'testpaths = ["tests"]\n'
        "addopts = \"-p no:cacheprovider -m 'not slow and not gpu'\"\n"
        'markers = ["slow: long-running", "gpu: needs CUDA"]\n\n'
        "[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f"only_mutate = {_toml_list(only)}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(selection)}\n"
        'process_isolation = "forkserver"\n'
        'also_copy = ["experiments"]\n'
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", nargs="+", required=True, help="python/sconet/... .py files to mutate")
    ap.add_argument("--tests", nargs="+", default=["tests"], help="test files or folders to run")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "mutmut", help="scratch folder")
    ap.add_argument("--max-children", type=int, default=os.cpu_count() or 1, help="parallel mutants")
    args = ap.parse_args(argv)

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    prepare(work, args.modules, [str((ROOT / t).relative_to(ROOT)) for t in args.tests])
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the mutated copy must be the one imported
    mutmut = [sys.executable, "-m", "mutmut"]
    subprocess.run([*mutmut, "run", "--max-children", str(args.max_children)], cwd=work, env=env, check=False)
    results = subprocess.run(
        [*mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    lines = [ln.strip() for ln in results.stdout.splitlines() if ":" in ln]
    status: dict[str, int] = {}
    for ln in lines:
        status[ln.rsplit(":", 1)[1].strip()] = status.get(ln.rsplit(":", 1)[1].strip(), 0) + 1
    caught = status.get("killed", 0) + status.get("timeout", 0)  # a mutant that hangs is caught too
    total = sum(status.values())
    print(f"\nmutants: {total}; " + ", ".join(f"{k} {v}" for k, v in sorted(status.items())))
    if total:
        print(f"score (killed or timed out / all): {caught}/{total} = {100 * caught / total:.0f} %")
    for ln in lines:
        if ln.endswith("survived"):
            print(f"  survived: {ln.rsplit(':', 1)[0]}  (show it: cd {work} && mutmut show NAME)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
