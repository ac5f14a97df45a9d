"""``python -m eval``: the few-shot adaptation benchmark (grid, references, tables, plots).

The output files and their format are described in the README, "Benchmark tables";
:func:`run` is the same thing for Python callers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from eval import grid, groups, references, report, runner
from eval.scorer import Scorer

PRESETS = {
    # 2 CPU cores, under 5 minutes: two speakers per group, one draw, two sentences
    "quick": {"shots": (1,), "steps": (0, 10), "tasks": 1, "test_sentences": 2, "speakers": 2,
              "asr": "tiny.en", "bootstrap": 1000, "optimizer_study": False,
              "finetune": tuple(grid.FINETUNE)},
    # the published table: every speaker, 5 sentences x 3 draws per k (15 clips per speaker and
    # cell); the meta-learned start(s) against fine-tuning with Adam
    "full": {"shots": (1, 5), "steps": (0, 5, 10, 20, 50, 100), "tasks": 3,
             "test_sentences": 5, "speakers": 0, "asr": "base", "bootstrap": 2000,
             "optimizer_study": False, "finetune": ("finetune-adam", "finetune-encoder")},
}
POWER = 100  # matched clips per cell the natural group should reach
STUDY_LRS = (0.001, 0.01, 0.1, 1.0)
BASELINE = "finetune-adam"


@dataclass(frozen=True)
class Options:
    data: str
    out: Path
    checkpoint_dir: Path
    methods: tuple[str, ...]  # empty: every method whose checkpoint exists
    shots: tuple[int, ...]
    steps: tuple[int, ...]
    tasks: int
    test_sentences: int
    speakers: int  # at most this many speakers per group (the first by name); 0 = all
    seed: int
    asr: str
    bootstrap: int
    optimizer_study: bool
    baseline: str = BASELINE
    progress: bool = True
    plan: bool = False  # only count the work (and estimate its time from costs_from)
    costs_from: Path | None = None  # an earlier run's folder, for the per-unit costs
    finetune: tuple[str, ...] = tuple(grid.FINETUNE)  # fine-tuning methods run by default
    # where the tables go (summary, report, CSVs, plots); None: ``out``. A finished run read
    # against another baseline writes here and leaves the run's own tables as they are.
    report_dir: Path | None = None
    groups: tuple[str, ...] = ()  # only the speakers of these groups (empty: every group)


class BenchmarkError(ValueError):
    """The benchmark cannot start: no data, no checkpoints, a bad argument."""


def available_methods(checkpoint_dir: Path,
                      finetune: tuple[str, ...] = tuple(grid.FINETUNE)) -> list[str]:
    """Methods whose checkpoint folder exists under ``checkpoint_dir`` (of the fine-tuning
    methods, those in ``finetune``)."""
    names = [m for m in grid.META_METHODS if (checkpoint_dir / m).exists()]
    if (checkpoint_dir / "pretrained").exists():
        encoder = _has_encoder(checkpoint_dir / "pretrained")
        names += [m for m in grid.FINETUNE if m in finetune
                  and (encoder or grid.FINETUNE_START[m] != "encoder")]
    return names


def _has_encoder(path: Path) -> bool:
    """Whether the checkpoint's saved config turns the speaker encoder on (weights not read)."""
    from metatts.model.checkpoint import CheckpointError, read_metadata

    try:
        return bool(read_metadata(path)["config"]["model"].get("speaker_encoder", False))
    except (CheckpointError, KeyError, TypeError, OSError):
        return False  # load_bases reports an unreadable checkpoint


def load_bases(methods: list[grid.Method], checkpoint_dir: Path) -> dict:
    from metatts.adapt import AdaptError, load_base
    from metatts.model.checkpoint import CheckpointError

    bases = {}
    for m in methods:
        if m.checkpoint in bases:
            continue
        path = checkpoint_dir / m.checkpoint
        if not path.exists():
            raise BenchmarkError(f"method {m.name}: no checkpoint at {path}. Put one there "
                                 "(or point --checkpoint-dir at the folder holding pretrained/, "
                                 "maml/, fomaml/, reptile/), or leave the method out.")
        try:
            bases[m.checkpoint] = load_base(m.init, path)
        except CheckpointError as err:
            raise BenchmarkError(f"method {m.name}: {err}") from None
        except AdaptError:  # given a path, load_base refuses only a checkpoint that was not
            # meta-learned, in words for `python -m metatts adapt` (--checkpoint, --init)
            raise BenchmarkError(
                f"method {m.name} adapts from a meta-learned checkpoint, and {path} is not one "
                "(its config has no meta.inner settings). Put one there (meta-trained with "
                "`python -m metatts train` and a meta-learning config), or point "
                f"--checkpoint-dir at a folder whose {m.checkpoint}/ holds one, or leave the "
                "method out (--methods names the ones to run).") from None
    return bases


def needs_encoder(methods: list[grid.Method], bases: dict, named: bool
                  ) -> tuple[list[grid.Method], list[str]]:
    """Methods that start from the speaker encoder's estimate need a checkpoint with an encoder:
    without one such a method is left out with a note, or, when the user named it, refused."""
    keep, notes = [], []
    for m in methods:
        start = grid.FINETUNE_START.get(m.base)
        if start == "encoder" and bases[m.checkpoint].model.speaker_encoder is None:
            why = (f"method {m.name} starts from the speaker encoder's estimate, and the "
                   f"{m.checkpoint} checkpoint has no speaker encoder (a previous-generation "
                   "model)")
            if named:
                raise BenchmarkError(f"{why}; leave it out or pass a v2 checkpoint.")
            notes.append(f"{why}: left out.")
            continue
        keep.append(m)
    return keep, notes


def read_tasks(options: Options) -> tuple[list[grid.Task], dict[str, str], list[str]]:
    """The grid's tasks, speaker -> group, and the problems met reading the data."""
    from metatts.data import DatasetError, read_dataset

    data = Path(options.data)
    if not data.exists():
        hint = (" (the default: the shipped held-out speakers, which this checkout does not "
                "have yet; build them with `python -m metatts corpus`)"
                if data == grid.DEFAULT_DATA else "")
        raise BenchmarkError(f"{data}: no such data{hint}. Pass --data with a folder of "
                             "<speaker>/<utt>.wav + <utt>.txt or a manifest.")
    try:
        readout = read_dataset(data)
    except DatasetError as err:
        raise BenchmarkError(str(err)) from None
    problems = [f"{len(paths)} file(s) left out of the data: {reason} (e.g. {paths[0]})"
                for reason, paths in sorted(readout.skipped.items())]
    utts = readout.utterances
    try:
        speaker_group = groups.speaker_groups(data, readout.speakers)
    except ValueError as err:
        raise BenchmarkError(str(err)) from None
    if options.groups:
        wrong = [g for g in options.groups if g not in groups.GROUPS]
        if wrong:
            raise BenchmarkError(f"unknown group(s) {', '.join(wrong)}: choose from "
                                 f"{', '.join(groups.GROUPS)}.")
        utts = tuple(u for u in utts if speaker_group[u.speaker] in options.groups)
        if not utts:
            present = sorted(set(speaker_group.values()), key=groups.GROUPS.index)
            raise BenchmarkError(f"{data}: no speaker of group(s) {', '.join(options.groups)}; "
                                 f"its speakers are in {', '.join(present) or 'no group'}. "
                                 "Change --groups or --data.")
    if options.speakers:
        keep = set()
        for g in groups.GROUPS:  # the first speakers by name of each group
            keep |= set(sorted(s for s in readout.speakers if speaker_group[s] == g)
                        [: options.speakers])
        utts = tuple(u for u in utts if u.speaker in keep)
    tasks, skipped = grid.draw_tasks(utts, options.shots, options.test_sentences,
                                     options.tasks, options.seed, speaker_group)
    problems += [f"speaker {s}: {why}" for s, why in skipped.items()]
    if not tasks:
        raise BenchmarkError(f"{data}: no speaker has enough clips for the grid "
                             f"({'; '.join(problems) or 'no speakers'}).")
    return tasks, speaker_group, problems


def grid_methods(options: Options) -> list[grid.Method]:
    names = list(options.methods) or available_methods(options.checkpoint_dir, options.finetune)
    if options.optimizer_study:
        names += [n for n in grid.optimizer_study(STUDY_LRS) if n not in names]
    if not names:
        raise BenchmarkError(f"{options.checkpoint_dir}: no checkpoints found (expected "
                             "sub-folders pretrained/, maml/, fomaml/, reptile/). Pass "
                             "--checkpoint-dir.")
    try:
        return [grid.parse_method(n) for n in dict.fromkeys(names)]
    except ValueError as err:
        raise BenchmarkError(str(err)) from None


def plan_lines(options: Options) -> list[str]:
    """``--plan``: the work of the grid, and its estimated time from measured costs."""
    from eval import plan

    tasks, _, problems = read_tasks(options)
    work = plan.count(grid.units(grid_methods(options), tasks, options.steps))
    lines = [f"adaptations (to {work.max_steps} steps): "
             + ", ".join(f"k={k}: {n}" for k, n in work.adaptations.items()),
             f"clips in the tables: {work.records}; to synthesize and judge: {work.clips}"]
    for group in groups.GROUPS:
        cells = {c: n for c, n in work.per_cell.items() if c[0] == group}
        if cells:
            lines.append(f"{group}: {min(cells.values())}-{max(cells.values())} clips per cell "
                         f"({len(cells)} cells)")
    lines += [f"warning: {p}" for p in problems]
    if options.costs_from is not None:
        try:
            costs = plan.measured_costs(runner.read_results(
                options.costs_from / runner.RESULTS, runner.RECORD_FIELDS))
        except ValueError as err:
            raise BenchmarkError(f"{options.costs_from}: {err}") from None
        lines += [f"measured in {options.costs_from}: adaptation "
                  + ", ".join(f"k={k}: {s:.3f} s/step" for k, s in costs.adapt_per_step.items())
                  + f"; synthesis {costs.synthesis:.2f} s/clip; scoring {costs.scoring:.2f} "
                  "s/clip", f"estimated wall time: {plan.wall_seconds(work, costs) / 60:.0f} min "
                  "(references and model loading not included)"]
    return lines


def run(options: Options, scorer: Scorer | None = None, vocoder=None) -> dict:
    """Run (or resume) the benchmark into ``options.out``; returns the summary."""
    started = time.perf_counter()
    scorer = scorer or Scorer(asr_model=options.asr)
    tasks, speaker_group, problems = read_tasks(options)
    methods = grid_methods(options)
    bases = load_bases(methods, options.checkpoint_dir)
    methods, dropped = needs_encoder(methods, bases, named=bool(options.methods))
    problems += dropped
    if options.baseline not in {m.name for m in methods}:  # said, not refused: one method alone
        problems.append(f"--baseline {options.baseline} is not among the methods this run "
                        f"measures ({', '.join(m.name for m in methods)}), so the tables hold no "
                        "paired test; name one of them with --baseline for those columns")
    if vocoder is None:
        from metatts.vocoder import load_vocoder

        vocoder = load_vocoder()
    units = grid.units(methods, tasks, options.steps)
    try:  # a resume of other settings or another vocoder path is refused before any work
        recorded, setups = runner.check_resumable(units, bases, options.out, vocoder)
    except runner.StaleResultsError as err:
        raise BenchmarkError(str(err)) from None
    options.out.mkdir(parents=True, exist_ok=True)
    loader = runner.Loader()
    real = references.real_test_clips(tasks, loader, problems)
    bank = references.embedding_bank(real, scorer, loader, options.out / references.EMBEDDINGS)
    refs = references.reference_records_cached(options.out, real, bank, speaker_group, scorer,
                                               loader, vocoder)
    problems += runner.run_units(units, bases, scorer, options.out, bank, recorded, setups,
                                 vocoder=vocoder, progress=options.progress)
    wanted = {runner.unit_drawn_key(u): {t.text for t in u.task.test} for u in units}
    records = [{**r, "group": speaker_group[r["speaker"]]}
               for r in runner.read_results(options.out / runner.RESULTS, runner.RECORD_FIELDS)
               if r["text"] in wanted.get(runner.drawn_key(r), ())]
    missing = scorer.ge2e_missing()
    summary = report.summarize(records, refs, options.baseline, seed=options.seed,
                               resamples=options.bootstrap, power_target=POWER)
    summary.update({
        "config": {**config_dict(options, [m.name for m in methods], bases, missing),
                   "vocoder": getattr(vocoder, "mode", None)},
        "problems": problems,
        "timing": {"this_run_seconds": time.perf_counter() - started},
    })
    report_dir = options.report_dir or options.out
    report_dir.mkdir(parents=True, exist_ok=True)
    report.write_report(report_dir, summary, run_dir=options.out)
    return summary


def config_dict(options: Options, methods: list[str], bases: dict, ge2e_missing: str) -> dict:
    from eval import metrics
    from eval.naturalness import NAME
    from eval.scorer import ECAPA_NAME, GE2E_NAME

    config = {k: (str(v) if isinstance(v, Path) else v)
              for k, v in dataclasses.asdict(options).items()}
    return {**config, "methods": methods, "asr_model": options.asr,
            "normalizer": metrics.NORMALIZER, "speaker_model": ECAPA_NAME,
            "second_speaker_model": None if ge2e_missing else GE2E_NAME,
            "second_speaker_model_missing": ge2e_missing or None,
            "mos_model": NAME, "paired_test": "Wilcoxon signed-rank, two-sided, Holm-adjusted",
            "checkpoints": {k: {"path": str(b.path), "step": b.step} for k, b in bases.items()}}


# what a run writes into --out before anything else (a folder holding one is a run to resume)
RUN_FILES = (runner.RESULTS, references.RECORDS, references.EMBEDDINGS)


def written_by_eval(folder: Path) -> bool:
    """Whether ``folder`` holds a run of this benchmark (RUN_FILES) or a report of one (a
    summary.json with the rows and config that report.write_report writes)."""
    if any((folder / name).is_file() for name in RUN_FILES):
        return True
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(summary, dict) and {"rows", "config"} <= summary.keys()


def foreign_folder(folder: Path) -> str | None:
    """Why eval should not write into ``folder`` (it holds files and is no run or report of this
    benchmark, whose report.md, summary.json... would be replaced), or None when it may."""
    try:
        if not folder.is_dir() or not any(folder.iterdir()) or written_by_eval(folder):
            return None
        names = sorted(p.name for p in folder.iterdir())
    except OSError as err:
        return f"{folder}: cannot be read ({err}); choose another folder."
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"{folder} holds files that are not a python -m eval run or report ({shown}), "
            "and the benchmark would write its results.jsonl, summary.json, report.md, CSVs and "
            "plots there, replacing any of that name. Give a new or empty folder (or an earlier "
            "run's, to resume it), or add --force to write there anyway.")


def _groups(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(g.strip() for g in text.split(",") if g.strip()))
    wrong = [g for g in names if g not in groups.GROUPS]
    if not names or wrong:
        raise argparse.ArgumentTypeError(f"expected groups from {', '.join(groups.GROUPS)} "
                                         f"joined by commas, got {text!r}")
    return names


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def parse_args(argv: list[str]) -> Options:
    from metatts.adapt import CHECKPOINTS

    p = argparse.ArgumentParser(
        prog="python -m eval",
        description="Few-shot voice adaptation benchmark: for every held-out speaker, method, "
        "k and step count, adapt on k seeded support clips, synthesize test sentences disjoint "
        "from the support texts, and score WER (Whisper), speaker similarity (ECAPA, and GE2E "
        "where metatts.ge2e is installed) and DNSMOS; tables per speaker group (natural, real, "
        "engine). Resumable: rerun with the same settings to finish. Also: `python -m eval "
        "score AUDIO --text TEXT`.")
    p.add_argument("--data", default=str(grid.DEFAULT_DATA),
                   help="held-out speakers: speaker folders or a manifest (default: the "
                   "shipped metatts/eval_speakers)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                   help="quick: minutes on 2 CPU cores; full: the published table")
    p.add_argument("--methods", nargs="+", default=[],
                   help=f"any of {', '.join((*grid.META_METHODS, *grid.FINETUNE))}, optionally "
                   "with :lr=X, :batching=full|stochastic|minibatch, :batch_size=N (default: "
                   "every method whose checkpoint exists; the full preset leaves finetune-sgd "
                   "to the optimizer study)")
    p.add_argument("--shots", type=_ints, help="support clip counts k, e.g. 1,5")
    p.add_argument("--steps", type=_ints, help="adaptation step counts, e.g. 0,5,10,20,50,100")
    p.add_argument("--tasks", type=int, help="support draws per speaker and k")
    p.add_argument("--test-sentences", type=int, help="test sentences per speaker")
    p.add_argument("--speakers", type=int,
                   help="use at most this many speakers per group, the first by name (0: all)")
    p.add_argument("--groups", type=_groups, default=(),
                   help=f"only the speakers of these groups, e.g. natural,real (any of "
                   f"{', '.join(groups.GROUPS)}; default: all)")
    p.add_argument("--asr", help="Whisper model for WER: base or tiny.en (default by preset)")
    p.add_argument("--optimizer-study", action=argparse.BooleanOptionalAction, default=None,
                   help="also run the inner-optimizer experiment (plain SGD variants; off by "
                   "default)")
    p.add_argument("--baseline", default=BASELINE, help="method the paired test compares with")
    p.add_argument("--checkpoint-dir", type=Path, default=CHECKPOINTS,
                   help="folder with pretrained/ and maml/, fomaml/, reptile/ checkpoints "
                   "(default: the shipped checkpoints/)")
    p.add_argument("--out", type=Path, help="output folder (default runs/eval/<preset>); a "
                   "folder holding other files than an earlier run is refused without --force")
    p.add_argument("--force", action="store_true",
                   help="write into an --out or --report-dir folder that holds other files than "
                   "a run or report of this benchmark (files of the names it writes are replaced)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--plan", action="store_true",
                   help="run nothing: print the grid's adaptations, clips and matched clips per "
                   "cell, and with --costs-from its estimated wall time")
    p.add_argument("--costs-from", type=Path, metavar="RUN_DIR",
                   help="with --plan: an earlier run of this version whose results.jsonl gives "
                   "the measured per-unit costs")
    p.add_argument("--report-dir", type=Path, metavar="DIR",
                   help="write the tables (summary, report.md, CSVs, plots) here instead of "
                   "--out, e.g. to read a finished run against another --baseline; results, "
                   "references and adaptations stay in --out")
    a = p.parse_args(argv)
    preset = PRESETS[a.preset]

    def pick(value, key):
        return preset[key] if value is None else value

    for name in ("tasks", "test_sentences"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.speakers is not None and a.speakers < 0:
        p.error(f"--speakers must be 0 (every speaker) or more, got {a.speakers}")
    if a.shots is not None and min(a.shots) < 1:
        p.error(f"--shots are support clip counts of at least 1, got {a.shots}")
    if a.costs_from is not None:
        if not a.plan:
            p.error("--costs-from estimates a grid's time for --plan; add --plan, or leave it out")
        if not (a.costs_from / runner.RESULTS).is_file():
            p.error(f"--costs-from {a.costs_from}: no {runner.RESULTS} there; give the folder of "
                    "an earlier python -m eval run")
    out = a.out or Path("runs/eval") / a.preset
    for flag, folder in (("--out", out), ("--report-dir", a.report_dir)):
        if folder is not None and folder.exists() and not folder.is_dir():
            p.error(f"{flag} {folder} is a file; give a folder (it holds results.jsonl, the "
                    "tables and plots)")
        problem = None if folder is None or a.plan or a.force else foreign_folder(folder)
        if problem:  # --plan writes nothing
            p.error(f"{flag} {problem}")
    return Options(
        data=a.data, out=out, checkpoint_dir=a.checkpoint_dir,
        methods=tuple(m for arg in a.methods for m in arg.split(",") if m),
        shots=pick(a.shots, "shots"), steps=pick(a.steps, "steps"), tasks=pick(a.tasks, "tasks"),
        test_sentences=pick(a.test_sentences, "test_sentences"),
        speakers=pick(a.speakers, "speakers"), seed=a.seed, asr=pick(a.asr, "asr"),
        bootstrap=preset["bootstrap"], optimizer_study=pick(a.optimizer_study, "optimizer_study"),
        baseline=a.baseline, progress=not a.no_progress, finetune=preset["finetune"],
        plan=a.plan, costs_from=a.costs_from, report_dir=a.report_dir, groups=a.groups)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(list(sys.argv[1:] if argv is None else argv))
    from metatts.assets import AssetError

    try:
        if options.plan:
            print("\n".join(plan_lines(options)))
            return 0
        summary = run(options)
    except (BenchmarkError, AssetError, runner.ResultsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for problem in summary["problems"]:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"{sum(r['n'] for r in summary['rows'])} clips in the tables "
          f"({summary['timing']['this_run_seconds']:.0f} s this run); wrote results.jsonl, "
          f"summary.json, report.md, CSV and plots to {options.out}"
          + (f" (tables to {options.report_dir})" if options.report_dir else ""))
    return 0
