"""What the commands share: their common options, the error handler and the config each command resolves.

Every option decorator here is a factory, called with parentheses: ``@quiet_option()``. Where commands word the
same option differently, the factory takes the help text (or the part of it that differs).

Every failure is one line (``handle_errors``): a library error, an OS error the library did not foresee, and
Ctrl-C, which says what was kept and the exact command that continues. Library messages say how to continue as
`` `litcache COMMAND ... --resume` ``; here that becomes the command line the user typed, with the flag.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shlex
from collections.abc import Callable
from typing import Any

import click

from litcache.config import PipelineConfig, load_pipeline
from litcache.errors import LitcacheError, store_access

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

MODEL_KEYS = ("teacher.model", "train.student")  # values are YAML: a built-in name or a {factory: ...} mapping

SET_HELP = "Override one config value, e.g. --set train.epochs=3 (repeatable)."
DATA_HELP = (
    "cifar10 / cifar100 (torchvision, downloaded to data.root); a folder, pattern or fsspec URL of "
    "WebDataset shards (train-*.tar, test-*.tar); or an image folder (train/<class>/*.jpg, test/ or val/). "
    "Default: the pipeline's data.source."
)
JSON_HELP = "Print a JSON object instead of text."


ARGV = "litcache.argv"  # ctx.meta key: the arguments the command line was given (set by the main group)
# how each command continues after Ctrl-C or a full disk: the flag its exact command gets ("": the same command)
CONTINUES = {
    "train-teacher": "--resume",
    "extract": "--resume",
    "train-sections": "--resume",
    "kd": "--resume",
    "run": "",  # a rerun with the same settings resumes
    "quickstart": "",
    "report": "--overwrite",  # a report is made again
}
_HINT = re.compile(r"`litcache ([\w-]+) \.\.\.(?: (--[\w-]+))?`")
WHOLE_RUNS = ("run", "quickstart")  # they run every stage: a stage's hint is continued by the run's own command


class Interrupted(click.ClickException):
    """Ctrl-C, said in one line; exit status 130, as a shell gives a command that SIGINT stopped."""

    exit_code = 130


def command_line(flag: str | None = None) -> str:
    """The command line being run, as ``litcache ARGS``, with ``--resume`` / ``--overwrite`` replaced by ``flag``
    (None: as given)."""
    ctx = click.get_current_context(silent=True)
    args = list(ctx.meta.get(ARGV, [])) if ctx is not None else []
    if not args and ctx is not None:
        args = [ctx.command_path.partition(" ")[2]]
    if flag is not None:
        args = [a for a in args if a not in ("--resume", "--overwrite")] + ([flag] if flag else [])
    return shlex.join(["litcache", *args])


def _command() -> str:
    """The name of the command being run (``extract``), or "" outside one."""
    ctx = click.get_current_context(silent=True)
    return (ctx.info_name or "") if ctx is not None else ""


def exact(message: str) -> str:
    """``message`` with each `` `litcache CMD ... --FLAG` `` replaced by the exact command line that does it, when
    CMD is the command being run (or a stage of the whole run being run); a hint that names another command (a
    cache to extract again, given to ``train-sections``) stays as it is: this command line has no such flag."""
    command = _command()
    continues = CONTINUES.get(command)

    def sub(m: re.Match[str]) -> str:
        if m.group(1) != command and command not in WHOLE_RUNS:
            return m.group(0)
        flag = m.group(2) or ""
        if continues == "" and flag == "--resume":  # run and quickstart resume by being run again
            flag = ""
        return f"`{command_line(flag)}`"

    return _HINT.sub(sub, message)


def _interrupted(exc: KeyboardInterrupt) -> str:
    """What Ctrl-C kept (the notes the library added) and the command that continues: the command's own way, or
    the one a note names (`` `litcache extract ... --overwrite` `` for a cache cut short while it was created)."""
    notes = getattr(exc, "__notes__", [])
    kept = "; ".join(note for note in notes if not _HINT.fullmatch(note))
    flag = CONTINUES.get(_command())
    if flag is None:  # evaluate, inspect, verify: nothing written
        return f"interrupted (Ctrl-C); nothing was written: run it again with `{command_line()}`"
    named = [m.group(2) or "" for m in map(_HINT.fullmatch, notes) if m]
    if named and flag:  # run and quickstart continue by being run again, whatever their stages would say
        flag = named[-1]
    said = f"interrupted (Ctrl-C); {kept}" if kept else "interrupted (Ctrl-C) before this run wrote anything"
    verb = "start again with" if flag == "--overwrite" else "continue with"
    return f"{said}; {verb} `{command_line(flag)}`"


def _os_error(exc: OSError) -> str:
    """An OS error the library did not turn into its own (a bug to report, but still one line)."""
    from litcache.outputs import failure

    flag = CONTINUES.get(_command())
    then = f"continue with `{command_line(flag)}`" if flag is not None else f"run `{command_line()}` again"
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename or exc}: no such file or folder"
    return failure(exc.filename or "", exc, then=then)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors, OS errors and Ctrl-C into a one-line message and exit status 1 (130 for Ctrl-C),
    without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with store_access():  # an object store's library refusing to authenticate (data or outputs on s3://)
                return fn(*args, **kwargs)
        except LitcacheError as exc:
            message = str(exc)
            if "Original Traceback" in message:  # re-raised from a DataLoader worker: keep the error's own text
                message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
            raise click.ClickException(exact(message)) from exc
        except KeyboardInterrupt as exc:
            # zarr's event loop still holds the store call Ctrl-C left waiting: at exit asyncio would log it
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            raise Interrupted(_interrupted(exc)) from None
        except OSError as exc:
            raise click.ClickException(_os_error(exc)) from exc

    return wrapper


def resolve(pipeline: str, overrides: tuple[str, ...], data: str | None = None, **extra: Any) -> PipelineConfig:
    """Defaults < pipeline file < --set < the command's own flags (--data, --views, --student, ...).

    A pipeline that names a model factory that cannot be imported is refused here, by every command."""
    items = list(overrides)
    if data is not None:
        items.append(f"data.source={json.dumps(data)}")
    for key, value in extra.items():
        if value is not None:
            items.append(f"{key}={value if key in MODEL_KEYS else json.dumps(value)}")
    cfg = load_pipeline(pipeline, items)
    named = {"teacher.model": cfg.teacher.model, "train.student": cfg.train.student}
    named |= {f"students[{i}]": spec for i, spec in enumerate(cfg.students)}
    factories = {key: spec for key, spec in named.items() if spec.factory}  # built-ins are litcache's own
    if factories:
        from litcache.models.registry import check_importable

        check_importable(factories)
    return cfg


def set_option(help_text: str = SET_HELP) -> Decorator:
    """``--set KEY=VALUE`` (repeatable), passed to the command as ``overrides``."""
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=help_text)


def pipeline_options() -> Decorator:
    """``--pipeline/-p`` then ``--set``: the two halves of the config that `resolve` loads."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = set_option()(fn)
        return click.option(
            "--pipeline",
            "-p",
            default="tiny",
            show_default=True,
            metavar="NAME|FILE",
            help="A built-in pipeline name (see `litcache pipelines`) or a path to a YAML file.",
        )(fn)

    return decorate


def data_option(help_text: str = DATA_HELP) -> Decorator:
    """``--data/-d SOURCE``; without it, the pipeline's data.source."""
    return click.option("--data", "-d", default=None, metavar="SOURCE", help=help_text)


def limit_option() -> Decorator:
    """``--limit N``: the first N samples of the split."""
    return click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help="Use only the first N samples of the split (smoke runs, tests).",
    )


def test_limit_option(help_text: str) -> Decorator:
    """``--test-limit N``: the first N samples of the test split."""
    return click.option("--test-limit", type=click.IntRange(min=1), default=None, metavar="N", help=help_text)


def quiet_option() -> Decorator:
    """``--quiet/-q``: no progress bars."""
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars.")


def json_option(help_text: str = JSON_HELP) -> Decorator:
    """``--json``, passed to the command as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def resume_option(help_text: str) -> Decorator:
    """``--resume``: each command says what it continues from."""
    return click.option("--resume", is_flag=True, help=help_text)


def overwrite_option(help_text: str) -> Decorator:
    """``--overwrite``: replace what this command wrote there before (never anything else)."""
    return click.option("--overwrite", is_flag=True, help=help_text)


def epochs_option(key: str) -> Decorator:
    """``--epochs``, overriding the config value ``key``."""
    return click.option("--epochs", type=click.IntRange(min=1), default=None, help=f"Override {key}.")


def output_option(metavar: str, help_text: str, default: str | None = None) -> Decorator:
    """``--output/-o``: required, unless the command names a default."""
    if default is None:
        return click.option("--output", "-o", required=True, metavar=metavar, help=help_text)
    return click.option("--output", "-o", default=default, show_default=True, metavar=metavar, help=help_text)


def teacher_option(help_text: str, required: bool = False) -> Decorator:
    """``--teacher/-t CKPT``: a teacher checkpoint."""
    if required:
        return click.option("--teacher", "-t", required=True, metavar="CKPT", help=help_text)
    return click.option("--teacher", "-t", default=None, metavar="CKPT", help=help_text)


def cache_option() -> Decorator:
    """``--cache/-c CACHE``, passed to the command as ``cache_url``."""
    return click.option(
        "--cache", "-c", "cache_url", required=True, metavar="CACHE", help="Cache written by `extract`."
    )


def cache_argument() -> Decorator:
    """The ``CACHE`` argument of the commands that read one cache."""
    return click.argument("cache", metavar="CACHE")


def model_option(name: str, key: str, what: str) -> Decorator:
    """A model option (``--model``, ``--student``) that overrides the config value ``key``."""
    return click.option(
        name,
        default=None,
        metavar="MODEL",
        help=f"{what} (default: {key}): a built-in name (resnet20, resnext29, generator6, ...) or a YAML mapping "
        "such as '{factory: torchvision.models:resnet50, sections: [layer1, layer2, layer3, layer4]}'.",
    )
