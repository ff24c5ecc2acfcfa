"""The one option table (detector/options.py): both ends of every range on the command line and in
the config file, the issue 17 refusals, the documented table, and the one predictor builder."""
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from conftest import ROOT, run_cli
from detector.cli import build_parser
from detector.daemon.config import Config, load_config, validate
from detector.errors import UserError
from detector.options import CONFIG_OPTIONS, DAEMON, OPTIONS, markdown_table, options_for

# what each command needs besides the option under test to parse
POSITIONALS = {"detect": ["x.png"], "evaluate": ["data"], "train": ["data"], "label": ["data"]}
NUMERIC = [(command, option) for option in OPTIONS if option.kind in ("int", "float") and option.cli_flag
           for command in option.commands]


def beyond(option, end: str):
    """The nearest value outside the range at `end` ("low" or "high")."""
    value = option.low if end == "low" else option.high
    sign = -1 if end == "low" else 1
    if option.kind == "int":
        return value + sign
    return value + sign * max(abs(value) * 1e-6, 1e-9)


def parse(command, *argv):
    return build_parser().parse_args([command, *POSITIONALS.get(command, []), *map(str, argv)])


@pytest.mark.parametrize("command, option", NUMERIC, ids=[f"{c}-{o.key}" for c, o in NUMERIC])
def test_both_ends_on_the_command_line(command, option, capsys):
    for end in (option.low, option.high):
        assert getattr(parse(command, f"{option.cli_flag}={end!r}"), option.key) == end
    for bad in (beyond(option, "low"), beyond(option, "high"), math.nan, math.inf):
        with pytest.raises(SystemExit) as exit_:
            parse(command, f"{option.cli_flag}={bad!r}")  # `=`: -1e-09 is a value, not an option
        assert exit_.value.code == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and f"argument {option.cli_flag}: expected {option.expected()}" in error, error


def test_an_interval_takes_both_ends_in_order(capsys):
    assert parse("collect", "--band", "0,1").band == (0.0, 1.0)
    for bad in ("0.4,0.1", "-0.1,0.5", "0.5,1.1", "0.2", "0.2,0.2", "nan,0.5", "0.1,0.2,0.3"):
        with pytest.raises(SystemExit):
            parse("collect", f"--band={bad}")
        assert "--band: expected LOW,HIGH with 0 <= LOW < HIGH <= 1" in capsys.readouterr().err


CONFIG_NUMERIC = [option for option in CONFIG_OPTIONS.values() if option.kind in ("int", "float")]


@pytest.mark.parametrize("option", CONFIG_NUMERIC, ids=[o.key for o in CONFIG_NUMERIC])
def test_both_ends_in_the_config_file(option, tmp_path):
    config = tmp_path / "c.toml"
    for end in (option.low, option.high):
        config.write_text(f'source = "synthetic"\n{option.key} = {end!r}\n')
        assert getattr(load_config(config), option.key) == end
    for bad in (beyond(option, "low"), beyond(option, "high"), "nan", "inf", "true"):
        config.write_text(f'source = "synthetic"\n{option.key} = {bad}\n')
        with pytest.raises(UserError) as error:
            load_config(config)
        assert error.value.exit_code == 78 and "\n" not in str(error.value)
        assert f"'{option.key}' must be {option.expected()}" in str(error.value)


def test_every_number_has_a_range_and_a_default_inside_it():
    for option in OPTIONS:
        if option.kind in ("int", "float"):
            assert option.low is not None and option.high is not None and option.low <= option.high, option.key
            assert option.default is None or option.low <= option.default <= option.high, option.key
        elif option.default is not None:
            assert option.validate(option.default) == option.default, option.key
    assert set(Config.__dataclass_fields__) == set(CONFIG_OPTIONS)


def test_keys_wired_by_other_branches_are_on_the_config_object(tmp_path):
    """frozen_s, relock_s, lock and low_memory: defaults, the config file and the command line."""
    default = validate(Config())
    assert (default.frozen_s, default.relock_s, default.lock, default.low_memory) == (1.0, 2.0, "auto", False)
    config = tmp_path / "c.toml"
    config.write_text('frozen_s = 0.3\nrelock_s = 30\nlock = "manual"\nlow_memory = true\n')
    loaded = load_config(config)
    assert (loaded.frozen_s, loaded.relock_s, loaded.lock, loaded.low_memory) == (0.3, 30.0, "manual", True)
    args = parse("run", "--relock-s", "0", "--lock", "manual", "--low-memory")
    assert (args.relock_s, args.lock, args.low_memory) == (0.0, "manual", True)
    config.write_text('lock = "follow-me"\n')
    with pytest.raises(UserError, match="'lock' must be auto or manual, found 'follow-me'"):
        load_config(config)
    for command in ("detect", "evaluate", "bench", "collect"):
        assert parse(command, "--low-memory").low_memory is True


def test_inproc_only_through_the_python_api():
    assert validate(Config(pub="inproc://tests"), in_process=True).pub == "inproc://tests"
    with pytest.raises(UserError, match="'pub' must be a tcp:// or ipc:// endpoint"):
        validate(Config(pub="inproc://tests"))
    result = run_cli("run", "--demo", "--pub", "inproc://x")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "inproc://" in result.stderr


def test_non_loopback_pub_needs_an_acknowledgement(tmp_path):
    for endpoint in ("tcp://0.0.0.0:5556", "tcp://*:5556", "tcp://192.168.1.5:5556"):
        with pytest.raises(UserError) as error:
            validate(Config(pub=endpoint))
        assert error.value.exit_code == 78 and "--pub-insecure" in str(error.value)
        assert validate(Config(pub=endpoint, pub_insecure=True)).pub == endpoint
    for endpoint in ("tcp://127.0.0.1:5556", "tcp://localhost:5556", f"ipc://{tmp_path}/d.sock"):
        assert validate(Config(pub=endpoint)).pub == endpoint
    result = run_cli("run", "--demo", "--no-http", "--pub", "tcp://0.0.0.0:5556")
    assert result.returncode == 78 and result.stderr.count("\n") == 1 and "--pub-insecure" in result.stderr


def test_the_daemon_publishes_on_an_ipc_socket_file(tmp_path):
    endpoint = f"ipc://{tmp_path}/detector.sock"
    subscriber = zmq.Context.instance().socket(zmq.SUB)
    subscriber.setsockopt(zmq.SUBSCRIBE, b"status ")
    subscriber.connect(endpoint)
    script = str(Path(sys.executable).parent / "robot-detector")
    daemon = subprocess.Popen([script, "run", "--demo", "--no-http", "--pub", endpoint], stderr=subprocess.PIPE,
                              text=True)
    try:
        assert subscriber.poll(60_000), "no status on the ipc endpoint"
        assert subscriber.recv().startswith(b"status ")
        assert (tmp_path / "detector.sock").is_socket()
    finally:
        daemon.terminate()
        daemon.wait(30)
        subscriber.close(linger=0)


@pytest.mark.parametrize("argv, message", [
    (["detect", "IMG", "--annotate", "out.xyz"], "--annotate: expected an image file name ending in .png"),
    (["detect", "IMG", "--annotate", "out"], "--annotate: expected an image file name ending in .png"),
    (["detect", "IMG", "--annotate", "/nonexistent/x.png"], "--annotate: expected a file in an existing folder"),
    (["view", "--connect", "garbage"], "--connect: expected a ZeroMQ endpoint like tcp://127.0.0.1:5556"),
    (["view", "--timeout", "nan"], "--timeout: expected a number of seconds from 0.01 to 3600, found 'nan'"),
    (["simulate-follow", "--straight-s", "nan"], "--straight-s: expected a number of seconds from 0 to 600"),
    (["simulate-follow", "--png", "/nonexistent/x.png"], "--png: expected a file in an existing folder"),
    (["simulate-follow", "--png", "out.xyz"], "--png: expected an image file name ending in .png, found 'out.xyz'"),
])
def test_issue_17_item_8_one_line_usage_errors(argv, message, test_image):
    argv = [str(test_image) if arg == "IMG" else arg for arg in argv]
    result = run_cli(*argv)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "internal error" not in result.stderr


def test_the_documented_tables_are_the_option_table():
    text = (ROOT / "docs" / "configuration.md").read_text()
    others = tuple(option for option in OPTIONS if DAEMON not in option.commands)
    for options in (options_for(DAEMON), others):
        assert markdown_table(options) in text, "run .venv/bin/python scripts/option-tables.py"


def test_one_place_builds_engines_and_predictors():
    """Only model/builder.py calls create_engine; commands build predictors through it."""
    callers = {path.relative_to(ROOT).as_posix() for path in (ROOT / "detector").rglob("*.py")
               if re.search(r"\bcreate_engine\(", path.read_text()) and path.name != "engines.py"}
    assert callers == {"detector/model/builder.py"}
    for module in ("cli.py", "bench.py", "daemon/service.py", "train/evaluate.py"):
        source = (ROOT / "detector" / module).read_text()
        assert "build_predictor(" in source and "load_model(" not in source, module


def test_train_defaults_in_the_table_are_the_library_defaults():
    """`train` passes the table's defaults; TrainOptions' own defaults serve library callers
    (scripts, tests). The two must not drift apart."""
    import dataclasses
    from detector.train.trainer import TrainOptions
    library = {field.name: field.default for field in dataclasses.fields(TrainOptions)}
    compared = [option.key for option in options_for("train") if option.key in library and option.default is not None]
    assert {"batch", "augment", "image_cache_mb", "freeze", "seed"} <= set(compared)
    for key in compared:
        table = next(option for option in options_for("train") if option.key == key)
        assert table.default == library[key], key
