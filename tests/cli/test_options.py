"""Every `kiu` command reads its settings from flags and KIU_* variables the same way."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys

import pytest

from kiu import logs, options
from kiu.controller import command as operator_command
from kiu.gateway import command as gateway_command
from kiu.unit import command as unit_command

PARSERS = {
    "operator": operator_command._parser,
    "gateway": gateway_command.parser,
    "unit": unit_command._parser,
}


def _example() -> argparse.ArgumentParser:
    p = options.parser(prog="kiu example", description=None)
    p.add_argument("--port", type=int, default=8080, help="listen port")
    p.add_argument("--ratio", type=float, default=0.5, help="a ratio (default one half)")
    p.add_argument("--name", action="append", dest="names", help="repeatable")
    p.add_argument("--fast", action="store_true", help="go fast")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--file")
    source.add_argument("--remote", action="store_true")
    options.add_logging(p)
    return p


def test_variables_set_defaults_and_flags_win() -> None:
    env = {"KIU_PORT": "9090", "KIU_NAMES": "a, b", "KIU_FAST": "yes", "KIU_FILE": "f.yaml"}
    parsed = options.parse(_example(), [], environ=env)
    assert (parsed.port, parsed.names, parsed.fast, parsed.file) == (
        9090,
        ["a", "b"],
        True,
        "f.yaml",
    )
    parsed = options.parse(_example(), ["--port", "1", "--name", "c", "--remote"], environ=env)
    assert (parsed.port, parsed.names, parsed.remote) == (1, ["c"], True)
    parsed = options.parse(_example(), ["--file", "x"], environ={"KIU_FAST": "off"})
    assert (parsed.port, parsed.names, parsed.fast) == (8080, None, False)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("KIU_PORT", "eighty", "invalid int value"),
        ("KIU_RATIO", "1/2", "invalid float value"),
        ("KIU_FAST", "maybe", "expected true or false"),
        ("KIU_LOG_LEVEL", "verbose", "expected one of DEBUG, INFO, WARNING, ERROR"),
        ("KIU_LOG_FORMAT", "xml", "expected one of text, json"),
    ],
)
@pytest.mark.parametrize("argv", [["--file", "x"], ["--help"]])
def test_a_bad_variable_is_refused_in_one_line_naming_it(
    name: str, value: str, reason: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        options.parse(_example(), argv, environ={name: value})
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"kiu example: {name}={value!r}: {reason}\n"


def test_log_levels_are_spelled_one_way() -> None:
    assert options.parse(
        _example(), ["--remote", "--log-level", "debug"], environ={}
    ).log_level == ("DEBUG")
    for parser in PARSERS.values():
        actions = {a.dest: a for a in parser()._actions}
        assert tuple(actions["log_level"].choices or ()) == options.LOG_LEVELS
        assert tuple(actions["log_format"].choices or ()) == options.LOG_FORMATS


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_help_shows_every_variable_and_the_defaults(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = PARSERS[command]()
    with pytest.raises(SystemExit):
        options.parse(parser, ["--help"], environ={})
    pieces = re.split(r"\[\$(KIU_[A-Z0-9_]+)\]", " ".join(capsys.readouterr().out.split()))
    helps = dict(zip(pieces[1::2], pieces[0::2], strict=False))  # variable -> its option's help
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        name = getattr(action, "env", None)
        if name is None:  # a second flag of the same setting (--all-namespaces)
            continue
        assert name in helps
        if action.default not in (None, False, [], ""):
            assert "default" in helps[name].split(" --")[-1].lower(), name


def test_gateway_takes_its_source_from_the_environment() -> None:
    parsed = options.parse(
        gateway_command.parser(),
        [],
        environ={"KIU_DIRECTORY": "/etc/kiu/models.yaml", "KIU_MAX_BODY": "1024"},
    )
    assert (parsed.directory, parsed.max_body, parsed.kubernetes) == (
        "/etc/kiu/models.yaml",
        1024,
        False,
    )


@pytest.mark.parametrize("command", ["operator", "gateway", "unit", "calibrate"])
def test_the_command_refuses_a_bad_variable_without_a_traceback(command: str) -> None:
    env = {**os.environ, "KIU_MODEL": "", "KIU_LOG_LEVEL": "loud", "KIU_REFINEMENTS": "x"}
    done = subprocess.run(
        [sys.executable, "-m", "kiu", command, "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"kiu {command}: KIU_")


def test_log_lines_carry_the_call_they_are_about(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure(level="INFO", format="json")
        token = logs.request_id.set("8f6c1d2e")
        try:
            logging.getLogger("kiu.gateway.routing").warning("unit %s did not answer", "u1")
        finally:
            logs.request_id.reset(token)
        logging.getLogger("kiu.gateway").info("idle")
        logs.configure(level="INFO", format="text")
        token = logs.request_id.set("8f6c1d2e")
        try:
            logging.getLogger("kiu.gateway").info("held")
        finally:
            logs.request_id.reset(token)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    first, second, third = capsys.readouterr().err.splitlines()
    call = json.loads(first)
    assert call["message"] == "unit u1 did not answer"
    assert (call["level"], call["logger"], call["request_id"]) == (
        "WARNING",
        "kiu.gateway.routing",
        "8f6c1d2e",
    )
    assert "request_id" not in json.loads(second)
    assert third.endswith("INFO kiu.gateway: held request_id=8f6c1d2e")
