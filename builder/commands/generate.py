"""`generate`: the Dockerfile tree from the versions file and the templates; with --check,
how the committed tree differs from what generate writes (release runs the check first)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from builder.generate.render import render
from builder.generate.tree import check, generate
from builder.model.errors import EXIT_FAILED, EXIT_OK
from builder.model.report import Report, Status
from builder.model.versions import Family, load
from builder.options import DEFAULT_VERSIONS


@dataclass(frozen=True)
class GenerateOptions:
    """`generate`'s options; `release` runs the check."""
    versions: str = DEFAULT_VERSIONS
    templates: str | None = None
    out: str | None = None  # the tree; default: next to the versions file
    check: bool = False  # write nothing; report how the tree differs


@dataclass(frozen=True)
class GenerateResult:
    out_dir: Path
    dockerfiles: int  # how many the family renders
    problems: tuple[str, ...] = ()  # --check: each stale, missing or extra file
    written: tuple[Path, ...] = ()
    removed: tuple[Path, ...] = ()

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.problems else EXIT_OK

    def add_to(self, report: Report) -> None:
        if self.problems:
            report.stage("generate", Status.FAILED, problems=list(self.problems),
                         reason="committed Dockerfiles differ from the templates; "
                                "run `invoke generate`")
        else:
            report.stage("generate", Status.OK, dockerfiles=self.dockerfiles)


def run(options: GenerateOptions, out: TextIO, *, family: Family | None = None) -> GenerateResult:
    """Write the tree (or, with check, say how it differs) and tell `out`. `family` is the
    loaded versions file when the caller has it already."""
    family = family or load(options.versions, options.templates)
    out_dir = Path(options.out) if options.out is not None else family.source.parent
    if options.check:
        rendered = render(family)
        problems = check(family, out_dir, rendered)
        for problem in problems:
            print(f"{out_dir / problem}", file=out)
        if problems:
            print(f"{len(problems)} file(s) differ from what generate writes; run `invoke "
                  "generate` (extra files other than Dockerfiles are yours to remove) and commit "
                  "the result", file=out)
        else:
            print(f"{len(rendered)} Dockerfiles up to date", file=out)
        return GenerateResult(out_dir, len(rendered), tuple(problems))
    written, removed = generate(family, out_dir)
    for path in written:
        print(f"wrote {out_dir / path}", file=out)
    for path in removed:
        print(f"removed {out_dir / path}", file=out)
    if not written and not removed:
        print("all Dockerfiles up to date", file=out)
    count = sum(len(version.variants) for version in family.versions)
    return GenerateResult(out_dir, count, written=tuple(written), removed=tuple(removed))
