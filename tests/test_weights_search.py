"""Where weights are found without --weights, and where `weights fetch` saves them (docs/install.md)."""
import functools
import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from conftest import run_cli
from detector.errors import EX_CONFIG, UserError
from detector.model import weights_store as weights


@pytest.fixture
def search_env(tmp_path, monkeypatch):
    """$ROBOT_DETECTOR_WEIGHTS and $XDG_DATA_HOME pointing into tmp_path; returns both folders."""
    if weights.SERVICE_WEIGHTS_DIR.is_dir() and any(weights.SERVICE_WEIGHTS_DIR.iterdir()):
        pytest.skip(f"{weights.SERVICE_WEIGHTS_DIR} holds files on this machine: the search would find them")
    env_dir, data_home = tmp_path / "env-weights", tmp_path / "data"
    monkeypatch.setenv("ROBOT_DETECTOR_WEIGHTS", str(env_dir))
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    return env_dir, data_home / "robot-detector" / "weights"


def test_search_order_env_then_user_then_service(search_env, monkeypatch):
    env_dir, user_dir = search_env
    assert weights.weights_search_dirs() == [env_dir, user_dir, Path("/var/lib/robot-detector/weights")]
    for folder in (env_dir, user_dir):
        folder.mkdir(parents=True)
        (folder / "model.weights").write_bytes(b"x")
    assert weights.default_weights_path() == env_dir / "model.weights"
    (env_dir / "model.weights").unlink()  # an empty first folder does not hide the next one
    assert weights.default_weights_path() == user_dir / "model.weights"
    monkeypatch.delenv("ROBOT_DETECTOR_WEIGHTS")
    assert weights.weights_search_dirs()[0] == user_dir


def test_user_dir_follows_xdg_and_ignores_a_relative_value(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # the XDG spec: ignore non-absolute values
    assert weights.user_weights_dir() == tmp_path / ".local" / "share" / "robot-detector" / "weights"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert weights.user_weights_dir() == tmp_path / ".local" / "share" / "robot-detector" / "weights"


def test_two_model_files_in_one_folder_ask_for_a_choice(search_env):
    env_dir, _ = search_env
    env_dir.mkdir()
    for name in ("a.weights", "b.npz", "notes.txt"):
        (env_dir / name).write_bytes(b"x")
    with pytest.raises(UserError) as caught:
        weights.default_weights_path()
    assert caught.value.exit_code == EX_CONFIG
    assert "a.weights, b.npz" in str(caught.value) and "--weights" in str(caught.value)


def test_nothing_found_names_every_folder_searched(search_env):
    env_dir, user_dir = search_env
    with pytest.raises(UserError) as caught:
        weights.default_weights_path()
    for folder in (env_dir, user_dir, weights.SERVICE_WEIGHTS_DIR):
        assert str(folder) in str(caught.value)
    assert caught.value.exit_code == EX_CONFIG and "weights fetch" in str(caught.value)


def test_fetch_goes_to_the_first_folder_that_can_be_created(search_env, tmp_path, monkeypatch):
    env_dir, user_dir = search_env
    assert weights.default_fetch_dir() == env_dir  # absent, but its parent is writable
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ROBOT_DETECTOR_WEIGHTS", str(blocker / "weights"))  # under a regular file
    assert weights.default_fetch_dir() == user_dir


def test_fetch_then_detect_without_weights_argument(search_env, person_weights, test_image, tmp_path):
    """`weights fetch` from a local mirror saves into the user folder, and `detect` finds it there."""
    _, user_dir = search_env
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    os.symlink(person_weights["yolov1-tiny"], mirror / "tiny-yolov1.weights")  # exactly the public file's size
    handler = functools.partial(_QuietHandler, directory=str(mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {key: value for key, value in os.environ.items() if key != "ROBOT_DETECTOR_WEIGHTS"}
    try:
        fetched = run_cli("weights", "fetch", "--mirror", f"http://127.0.0.1:{server.server_port}", env=env)
    finally:
        server.shutdown()
    assert fetched.returncode == 0, fetched.stderr
    assert f"saved {user_dir / 'tiny-yolov1.weights'}" in fetched.stdout
    result = run_cli("detect", test_image, "--json", env=env)
    assert result.returncode == 0, result.stderr
    [person] = json.loads(result.stdout)["detections"]  # the one planted in person_weights
    assert (person["cls"], person["x"], person["y"]) == ("person", pytest.approx(0.75, abs=1e-5), pytest.approx(0.4, abs=1e-5))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
