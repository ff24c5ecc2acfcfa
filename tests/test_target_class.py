"""A model trained on other classes: --names labels its detections, --target-class picks what the
`person` topic follows (and its messages then say which class), over real ZeroMQ sockets."""
import pytest

from conftest import run_cli
from daemon_helpers import Daemon, run_until_exit
from dataset_files import write_small_model
from robot_client import protocol


@pytest.fixture(scope="module")
def cone_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cones")
    # class 0 "ball" (large, would win as the largest object), class 1 "cone" (small)
    weights, cfg = write_small_model(folder, 2, [(0, 0.3, 0.6, 0.4, 0.4, 0.9), (1, 0.8, 0.7, 0.1, 0.2, 0.7)], "cones")
    names = folder / "names.txt"
    names.write_text("ball\ncone\n")
    return weights, cfg, names


def test_person_topic_follows_the_target_class(cone_model):
    weights, cfg, names = cone_model
    listener = run_until_exit(Daemon("--source", "synthetic", "--weights", weights, "--cfg", cfg, "--names", names,
                                     "--target-class", "cone", "--classes", "cone", "--max-frames", 40, http=False),
                              topics=["person", "detections"])
    for _, raw, _ in listener.messages:
        protocol.decode(raw)  # the optional "cls" passes the shared schema
    persons, detections = listener.of("person"), listener.of("detections")
    assert persons and all(m["found"] and m["cls"] == "cone" for m in persons)
    assert (persons[-1]["x"], persons[-1]["y"], persons[-1]["w"], persons[-1]["h"]) == pytest.approx(
        (0.8, 0.7, 0.1, 0.2), abs=1e-4)
    assert [(d["cls"], d["cls_id"]) for d in detections[-1]["detections"]] == [("cone", 1)]  # --classes by name


def test_names_must_fit_the_model_and_the_target_must_be_a_name(cone_model, tmp_path):
    weights, cfg, names = cone_model
    three = tmp_path / "three.txt"
    three.write_text("ball\ncone\nperson\n")
    wrong_count = Daemon("--source", "synthetic", "--weights", weights, "--cfg", cfg, "--names", three,
                         "--target-class", "cone", "--max-frames", 1, http=False).start()
    assert wrong_count.wait(60) == 78 and "lists 3 class names, but the cfg (cones) has classes=2" in wrong_count.stderr
    no_names = Daemon("--source", "synthetic", "--weights", weights, "--cfg", cfg, "--max-frames", 1, http=False).start()
    assert no_names.wait(60) == 78 and "pass --names FILE" in no_names.stderr
    unknown = Daemon("--source", "synthetic", "--weights", weights, "--cfg", cfg, "--names", names,
                     "--max-frames", 1, http=False).start()  # the default target, person, is not a class here
    assert unknown.wait(60) == 78 and "'target_class' must be one of the class names (ball, cone)" in unknown.stderr
    detect = run_cli("detect", "never-read.png", "--weights", weights, "--cfg", cfg, "--names", three)
    assert detect.returncode == 78 and "lists 3 class names" in detect.stderr


def test_config_keys_names_and_target_class(tmp_path):
    from detector.daemon.config import load_config
    from detector.errors import UserError
    names = tmp_path / "names.txt"
    names.write_text("ball\ncone\n")
    config = tmp_path / "robot.toml"
    config.write_text(f'names = "{names}"\ntarget_class = "cone"\nclasses = ["ball"]\n')
    loaded = load_config(config)
    assert (loaded.names, loaded.target_class, loaded.classes) == (str(names), "cone", ("ball",))
    for text, message in [("names = 3\n", "'names' must be the path of a class names file"),
                          (f'names = "{tmp_path}/none.txt"\n', "none.txt: class names file not found"),
                          (f'names = "{names}"\nclasses = ["person"]\n', "'classes' must be names from: ball, cone")]:
        config.write_text(text)
        with pytest.raises(UserError, match=message) as error:
            load_config(config)
        assert error.value.exit_code == 78
