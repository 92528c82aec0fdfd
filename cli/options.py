"""What the commands share: their common options, the error handler and the config each command resolves.

Every option decorator here is a factory, called with parentheses: ``@quiet_option()``. Where commands word the
same option differently, the factory takes the help text (or the part of it that differs).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click

from litcache.config import PipelineConfig, load_pipeline
from litcache.errors import LitcacheError

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

MODEL_KEYS = ("teacher.model", "train.student")  # values are YAML: a built-in name or a {factory: ...} mapping

SET_HELP = "Override one config value, e.g. --set train.epochs=3 (repeatable)."
DATA_HELP = (
    "cifar10 / cifar100 (torchvision, downloaded to data.root); a folder, pattern or fsspec URL of "
    "WebDataset shards (train-*.tar, test-*.tar); or an image folder (train/<class>/*.jpg, test/ or val/). "
    "Default: the pipeline's data.source."
)
JSON_HELP = "Print a JSON object instead of text."


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into a one-line message and exit status 1, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LitcacheError as exc:
            message = str(exc)
            if "Original Traceback" in message:  # re-raised from a DataLoader worker: keep the error's own text
                message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
            raise click.ClickException(message) from exc

    return wrapper


def resolve(pipeline: str, overrides: tuple[str, ...], data: str | None = None, **extra: Any) -> PipelineConfig:
    """Defaults < pipeline file < --set < the command's own flags (--data, --views, --student, ...)."""
    items = list(overrides)
    if data is not None:
        items.append(f"data.source={json.dumps(data)}")
    for key, value in extra.items():
        if value is not None:
            items.append(f"{key}={value if key in MODEL_KEYS else json.dumps(value)}")
    return load_pipeline(pipeline, items)


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
