"""The daemon's configuration: one validated object built from defaults, a TOML file and the
command line (in that order of precedence, the command line winning).

`Config` has one attribute per daemon option of the table in detector/options.py (key, default and
range are written there); this module adds what concerns the options together: class names that
must exist, and the policies on where the daemon may listen.
"""
from __future__ import annotations

from dataclasses import field, make_dataclass, replace
from pathlib import Path

from ..errors import EX_CONFIG, UserError
from ..model.classnames import read_names
from ..model.decode import VOC_CLASSES
from ..options import CONFIG_OPTIONS, OptionError, is_loopback_host

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib


def _http_address(self) -> tuple | None:
    """(host, port) of the debug stream, or None without one."""
    if self.http is None:
        return None
    host, _, port = self.http.rpartition(":")
    return host, int(port)


Config = make_dataclass(
    "Config", [(key, object, field(default=option.default)) for key, option in CONFIG_OPTIONS.items()],
    frozen=True, namespace={"http_address": property(_http_address),
                            "__doc__": "The daemon's settings: one attribute per option of detector.options."})
Config.__module__ = __name__


def _fail(key: str, expected: str, shown: str) -> UserError:
    return UserError(f"config: '{key}' must be {expected}, found {shown}", EX_CONFIG)


def validate(config: Config, in_process: bool = False) -> Config:
    """Check every value against the option table; return a normalised copy or raise UserError
    (exit code 78). `in_process`: also admit an inproc:// `pub` endpoint, which only a subscriber in
    the same process can reach (tests); the config file and the command line never may."""
    values = {}
    for key, option in CONFIG_OPTIONS.items():
        value = getattr(config, key)
        if in_process and key == "pub" and isinstance(value, str) and value.startswith("inproc://"):
            values[key] = value
            continue
        try:
            values[key] = option.validate(value)
        except OptionError as error:
            expected = str(error) + (" (or left out)" if option.default is None and option.check is None else "")
            raise _fail(key, expected, option.shown(value)) from None
    c = replace(config, **values)
    known = read_names(c.names) if c.names is not None else VOC_CLASSES
    unknown = [name for name in c.classes if name not in known]
    if unknown:
        raise _fail("classes", f"names from: {', '.join(known)}", repr(",".join(unknown)))
    if c.target_class not in known:
        raise _fail("target_class", f"one of the class names ({', '.join(known)})", repr(c.target_class))
    _check_http_access(c)
    _check_pub_access(c)
    return c


def _check_http_access(c: Config) -> None:
    """The debug stream shows the camera picture: off loopback it needs a token (or an explicit waiver)."""
    if c.http is None or c.http_token is not None or c.http_insecure:
        return
    if not is_loopback_host(c.http.rpartition(":")[0]):
        raise UserError(f"the debug stream would serve the camera picture on {c.http} to anyone who can reach it: "
                        "set an access token with --http-token (better: the ROBOT_DETECTOR_HTTP_TOKEN environment "
                        "variable, or http_token in a config file only root can read), or pass --http-insecure to "
                        "allow it without one", EX_CONFIG)


def _check_pub_access(c: Config) -> None:
    """ZeroMQ messages carry no authentication: off loopback, anyone on the network reads where people
    are (and a robot follows whoever holds the endpoint), so it takes an explicit acknowledgement."""
    if not c.pub.startswith("tcp://") or c.pub_insecure:
        return
    host = c.pub[len("tcp://"):].rpartition(":")[0]
    if not is_loopback_host(host):
        raise UserError(f"the daemon would publish the positions of people on {c.pub} to anyone who can reach it, "
                        "without authentication: publish on tcp://127.0.0.1:PORT or an ipc:// socket file (and "
                        "reach it through an ssh tunnel), or pass --pub-insecure (pub_insecure = true) to allow it",
                        EX_CONFIG)


def read_toml(path) -> dict:
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except OSError as error:
        raise UserError(f"cannot read config file {path}: {error.strerror}", EX_CONFIG) from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"config file {path} is not valid TOML: {error}", EX_CONFIG) from None
    unknown = sorted(set(values) - set(CONFIG_OPTIONS))
    if unknown:
        raise UserError(f"config file {path}: unknown key(s) {', '.join(unknown)}; known keys: "
                        f"{', '.join(CONFIG_OPTIONS)}", EX_CONFIG)
    if isinstance(values.get("source"), int) and not isinstance(values.get("source"), bool):
        values["source"] = str(values["source"])  # `source = 0` is a camera index
    if values.get("http") is False:
        values["http"] = None
    return values


def load_config(path=None, overrides: dict | None = None) -> Config:
    """Defaults, then the TOML file at `path`, then `overrides` (CLI values that were given)."""
    values = read_toml(Path(path)) if path else {}
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return validate(Config(**values))
