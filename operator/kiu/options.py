"""Settings of every ``kiu`` command, from flags and ``KIU_*`` environment variables.

Each option ``--some-thing`` (destination ``some_thing``) can also be set as
``KIU_SOME_THING``; the flag wins. A repeatable option takes a comma-separated
list (``KIU_NAMESPACES=a,b``), a switch ``true``/``false``. A value the option
would refuse is refused the same way from the environment, before anything
else (``--help`` included), with one line that names the variable. ``--help``
shows each option's default and variable.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any

PREFIX = "KIU_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class _Help(argparse.RawDescriptionHelpFormatter):
    """Appends each option's default (unless its help states it) and its variable."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shows_default = "default" in text.lower()
        if not shows_default and action.nargs != 0 and action.default not in (None, [], ""):
            text += " (default: %(default)s)"
        name = getattr(action, "env", None)
        return f"{text} [${name}]" if name else text


def parser(*, prog: str, description: str | None) -> argparse.ArgumentParser:
    """An argument parser whose help shows defaults and variables (fill it, then :func:`parse`)."""
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=_Help)


def add_logging(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format``, spelled the same by every command."""
    parser.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="log threshold"
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="text lines, or one JSON object per line",
    )


def parse(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    *,
    environ: Mapping[str, str] | None = None,
) -> argparse.Namespace:
    """Parse ``argv`` over the defaults the environment gives (exits 2 on a bad value)."""
    env = os.environ if environ is None else environ
    named: set[str] = set()
    lists: dict[str, tuple[object, list[Any]]] = {}  # a repeated flag replaces, never extends
    for action in parser._actions:
        if not action.option_strings or action.dest in named or action.default == argparse.SUPPRESS:
            continue
        named.add(action.dest)
        name = PREFIX + action.dest.upper()
        action.env = name  # type: ignore[attr-defined]  # read by _Help
        text = env.get(name, "").strip()
        if not text:
            continue
        try:
            value = _convert(parser, action, text)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            parser.exit(2, f"{parser.prog}: {name}={text!r}: {exc}\n")
        if isinstance(action, argparse._AppendAction):
            lists[action.dest] = (action.default, value)
        else:
            action.default = value
        action.required = False
        for group in parser._mutually_exclusive_groups:
            if action in group._group_actions:
                group.required = False
    namespace = parser.parse_args(None if argv is None else list(argv))
    for dest, (default, value) in lists.items():
        if getattr(namespace, dest) is default:
            setattr(namespace, dest, value)
    return namespace


def _convert(parser: argparse.ArgumentParser, action: argparse.Action, text: str) -> Any:
    if action.nargs == 0:  # a switch
        word = text.lower()
        if word not in _TRUE | _FALSE:
            raise ValueError("expected true or false")
        return action.const if word in _TRUE else action.default
    if isinstance(action, argparse._AppendAction):
        return [_value(parser, action, part.strip()) for part in text.split(",") if part.strip()]
    return _value(parser, action, text)


def _value(parser: argparse.ArgumentParser, action: argparse.Action, text: str) -> Any:
    convert = parser._registry_get("type", action.type, action.type)
    try:
        value = convert(text) if callable(convert) else text
    except (ValueError, TypeError) as exc:
        kind = getattr(convert, "__name__", "")
        raise ValueError(f"invalid {kind} value" if kind in {"int", "float"} else str(exc)) from exc
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"expected one of {', '.join(map(str, action.choices))}")
    return value
