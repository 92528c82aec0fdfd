"""The ``litcache`` command: parse, load the pipeline, call one library function, print.

Each command lives in the module of its stage; shared options are in ``options.py``.

  run.py      pipelines, run, quickstart
  extract.py  extract (stage one: the teacher writes the cache)
  cache.py    inspect, verify
  train.py    train-teacher, train-sections, kd (stage two: from the cache), evaluate
  report.py   report
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

from litcache import __version__
from litcache.cli.cache import inspect_cmd, verify_cmd
from litcache.cli.extract import extract_cmd
from litcache.cli.options import ARGV, Interrupted, command_line
from litcache.cli.report import report_cmd
from litcache.cli.run import pipelines_cmd, quickstart_cmd, run_cmd
from litcache.cli.train import evaluate_cmd, kd_cmd, train_sections_cmd, train_teacher_cmd


class LitcacheGroup(click.Group):
    """The command group; it keeps the arguments it was given, so a message can say the exact command to rerun."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGV] = list(args)
        return super().parse_args(ctx, args)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        finally:
            if _litcache_process():  # its command is done: a Ctrl-C while Python exits changes nothing
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # before a command's own handler runs (click would print a bare "Aborted!")
            message = f"interrupted (Ctrl-C) before it started; nothing was written: run `{command_line()}`"
            raise Interrupted(message) from None


def _litcache_process() -> bool:
    """Whether this process is the ``litcache`` command (the script, or ``python -m litcache``), not a program that
    calls ``main`` (a test runner), whose signal handling is its own."""
    started = Path(sys.argv[0])
    return started.name == "litcache" or (started.name == "__main__.py" and started.parent.name == "litcache")


class _EchoNotices(logging.Handler):
    """Prints what the library tells the user (``litcache.outputs.say``: what a resumed run skipped) on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(record.getMessage(), err=True)


@click.group(cls=LitcacheGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="litcache")
@click.option("--verbose", "-v", is_flag=True, help="Log what the library does (INFO level).")
def main(verbose: bool) -> None:
    """Cache a teacher's intermediate representations once; train LIT students from the cache.

    \b
    A whole run on the tiny pipeline (seconds on a CPU; `litcache run` does it in one command):
      litcache train-teacher -p tiny -d ../shared/data/cifar10 -o runs/teacher.pt
      litcache extract -p tiny --teacher runs/teacher.pt -d ../shared/data/cifar10 -o runs/cache.zarr
      litcache inspect runs/cache.zarr
      litcache train-sections -p tiny -c runs/cache.zarr -o runs/sections
      litcache kd -p tiny -c runs/cache.zarr -s runs/sections -o runs/student.pt
      litcache evaluate -m runs/student.pt -d ../shared/data/cifar10
      litcache report runs -o runs/report
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    notices = logging.getLogger("litcache.notice")
    notices.handlers = [_EchoNotices()]
    notices.setLevel(logging.INFO)
    notices.propagate = False


# `litcache --help` lists the commands alphabetically, whatever the order here
for command in (
    pipelines_cmd,
    train_teacher_cmd,
    extract_cmd,
    inspect_cmd,
    verify_cmd,
    train_sections_cmd,
    kd_cmd,
    run_cmd,
    quickstart_cmd,
    report_cmd,
    evaluate_cmd,
):
    main.add_command(command)


if __name__ == "__main__":
    main()
