"""Regenerate the documentation's figures (docs/figures/) from the commands that made them, instead of by hand.

    python scripts/regenerate_figures.py                     # list every figure, its command and its cost
    python scripts/regenerate_figures.py --check             # check every command without running it (about a minute)
    python scripts/regenerate_figures.py --run NAME [NAME..] # run those (or `--run all`) and copy their figures
                                                             # into docs/figures/ (run folders under runs/figures/)

Each figure is one trajopt command's output file, copied as it is (the paper's figures are
examples/reproduce_paper.sh's). The costs are wall times on the 2-core development machine; the whole set is
about an hour. `--check` needs no compute: every input file exists, every option is one the verb takes (read from
the CLI itself), and each problem with its variants and seeds passes `trajopt validate`, each study
`trajopt study --dry-run`, the shell script `bash -n`. tests/test_docs.py checks the first two on every run, and
that every PNG under docs/figures/ is made by an entry here: a new figure in the docs gets its command here.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures"
OUT = Path("runs") / "figures"


@dataclass(frozen=True)
class Figure:
    name: str      # the entry's name (--run NAME)
    target: str    # the figure(s) under docs/figures/: a file, or a folder for a script that makes several
    command: str   # run from the repository root; {out} is this entry's run folder
    output: str    # the file (or folder) inside {out} that is copied to target
    cost: str      # wall time on the 2-core development machine


PUSHING_ORACLES = "fobg,zobg,aobg"
EVERY_METHOD = "fobg,zobg,aobg,ilqr,cem,mppi,ps,dial,lbfgs"

ENTRIES = (
    Figure("pushing_soft", "pushing_soft.png", "trajopt compare problems/pushing_soft.toml --out {out}",
           "convergence.png", "10 s"),
    Figure("pushing_stiff", "pushing_stiff.png", "trajopt compare problems/pushing_stiff.toml --out {out}",
           "convergence.png", "6 s"),
    Figure("pushing_stiff_variants", "pushing_stiff_variants.png",
           "trajopt compare problems/pushing_stiff.toml --variants fobg,zobg,aobg,fobg_adam,zobg_adam,aobg_adam "
           "--x rollouts --out {out}", "convergence.png", "20 s"),
    Figure("pushing_stiff_tuned", "pushing_stiff_tuned.png",
           "trajopt compare problems/pushing_stiff.toml --variants fobg,zobg,aobg,tuned_aobg,tuned_fobg,tuned,"
           "tuned_exact --seeds 30 --x iterations,rollouts --out {out}", "convergence.png", "5 min"),
    Figure("baselines_pushing_stiff", "baselines_pushing_stiff.png",
           f"trajopt compare problems/pushing_stiff.toml --variants {EVERY_METHOD} --x iterations,rollouts "
           "--out {out}", "convergence.png", "3 min"),
    Figure("baselines_pushing_soft", "baselines_pushing_soft.png",
           f"trajopt compare problems/pushing_soft.toml --variants {EVERY_METHOD} --x iterations,rollouts "
           "--out {out}", "convergence.png", "4 min"),
    Figure("baselines_pendulum_trajax", "baselines_pendulum_trajax.png",
           f"trajopt compare problems/pendulum_trajax.toml --variants {EVERY_METHOD} --x iterations,rollouts "
           "--out {out}", "convergence.png", "2 min"),
    Figure("diagnose_pushing_stiff", "diagnose_pushing_stiff.png",
           "trajopt diagnose problems/pushing_stiff.toml --out {out}", "diagnose.png", "20 s"),
    Figure("tennis_rollouts", "tennis_rollouts.png",
           f"trajopt compare problems/tennis.toml --oracles {PUSHING_ORACLES} --seeds 0,1,2 --out {{out}}",
           "rollouts.png", "10 min"),
    Figure("study_stiffness_grid", "study_stiffness_grid.png",
           "trajopt study examples/studies/stiffness_grid.toml --fresh --out {out}", "study_system_stiffness.png",
           "11 min"),
    Figure("oracle_or_optimiser", "oracle_or_optimiser.png",
           "trajopt study examples/studies/oracle_or_optimiser.toml --fresh --out {out}", "study_variants.png",
           "15 min"),
    Figure("mpc_budget", "mpc_budget_compute.png",
           "trajopt study examples/studies/mpc_budget.toml --fresh --out {out}", "study_mpc_iterations_compute.png",
           "45 min"),
    Figure("paper", "paper", "bash examples/reproduce_paper.sh {out}", "figures", "2.5 min"),
)


def made_figures() -> set[str]:
    """Every path under docs/figures/ (relative to it) that an entry makes: a file target, or each file that a
    folder target holds now."""
    made = set()
    for e in ENTRIES:
        target = FIGURES / e.target
        if target.is_dir():
            made |= {p.relative_to(FIGURES).as_posix() for p in target.rglob("*") if p.is_file()}
        else:
            made.add(e.target)
    return made


def verb_options() -> dict[str, set[str]]:
    """{verb: its option names} read from trajopt's own CLI (no JAX is imported)."""
    import typer.main

    from trajopt.cli import app

    cli = typer.main.get_command(app)
    return {name: {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}
            for name, cmd in cli.commands.items()}


def static_problems(entries=ENTRIES) -> list[str]:
    """What is wrong with the entries without running anything: a command that is not trajopt or bash, an
    unknown verb or option, an input path (a word with a '/' before {out}) that does not exist, an output that
    is not the verb's, a duplicate name or target. One line each."""
    options, problems, seen = verb_options(), [], set()
    for e in entries:
        words = shlex.split(e.command.format(out=OUT / e.name))
        if e.name in seen or e.target in seen:
            problems.append(f"{e.name}: name or target {e.target!r} given twice")
        seen |= {e.name, e.target}
        if words[0] == "bash":
            if not (ROOT / words[1]).is_file():
                problems.append(f"{e.name}: {words[1]}: no such script")
            continue
        if words[0] != "trajopt" or words[1] not in options:
            problems.append(f"{e.name}: {' '.join(words[:2])!r}: not a trajopt verb")
            continue
        for w in words[2:]:
            if w.startswith("-") and w.split("=")[0] not in options[words[1]]:
                problems.append(f"{e.name}: trajopt {words[1]}: no option {w!r}")
            elif "/" in w and not w.startswith(str(OUT)) and not (ROOT / w).exists():
                problems.append(f"{e.name}: {w}: no such file")
        if "{out}" not in e.command:
            problems.append(f"{e.name}: the command does not write into {{out}} (--out {{out}})")
    return problems


def dry_runs(entries=ENTRIES) -> list[str]:
    """Each command checked by trajopt itself without computing: `trajopt validate` of the problem with the
    command's variants (or oracles) and seeds, `trajopt study --dry-run`, `bash -n`. One line per failure."""
    problems = []
    for e in entries:
        words = shlex.split(e.command.format(out=OUT / e.name))
        if words[0] == "bash":
            check = ["bash", "-n", words[1]]
        elif words[1] == "study":
            check = ["trajopt", "study", words[2], "--dry-run", "--out", str(OUT / e.name)]
        else:
            sets = []
            for flag, key in (("--variants", "solve.variants"), ("--oracles", "solve.variants"),
                              ("--seeds", "solve.seeds")):
                if flag in words:
                    items = words[words.index(flag) + 1].split(",")
                    value = items[0] if flag == "--seeds" and len(items) == 1 else json.dumps(
                        [int(i) for i in items] if flag == "--seeds" else items)
                    sets += ["--set", f"{key}={value}"]
            check = ["trajopt", "validate", words[2], *sets]
        r = subprocess.run(check, cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"{e.name}: {shlex.join(check)}: exit {r.returncode}: {(r.stderr or r.stdout).strip()}")
    return problems


def run(entries) -> None:
    for e in entries:
        out = ROOT / OUT / e.name
        command = e.command.format(out=OUT / e.name)
        print(f"+ {command}    # {e.cost}", flush=True)
        words = shlex.split(command)
        extra = [o for o in ("--force", "--quiet") if words[0] == "trajopt" and o in verb_options()[words[1]]]
        subprocess.run(words + extra, cwd=ROOT, check=True)
        source, target = out / e.output, FIGURES / e.target
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(source, target)
        print(f"  {source.relative_to(ROOT)} -> {target.relative_to(ROOT)}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="check every command without running it")
    parser.add_argument("--run", nargs="+", metavar="NAME", help="run these entries (or all) and copy their figures")
    args = parser.parse_args(argv)
    if args.run:
        names = {e.name for e in ENTRIES}
        unknown = sorted(set(args.run) - names - {"all"})
        if unknown:
            parser.error(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        run([e for e in ENTRIES if "all" in args.run or e.name in args.run])
        return 0
    if args.check:
        problems = static_problems() + dry_runs()
        print("\n".join(problems) if problems else f"all {len(ENTRIES)} commands check out")
        return 1 if problems else 0
    for e in ENTRIES:
        print(f"{e.name:26} docs/figures/{e.target:30} {e.cost:>8}  {e.command.format(out=OUT / e.name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
