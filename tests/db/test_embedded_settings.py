"""scripts/embedded.py honours FLIPGUARD_* settings of the environment over its defaults."""

import json
from pathlib import Path

from scripts.embedded import with_environment
from scripts.stack import embedded_env


def test_data_roots_from_the_environment_win(tmp_path):
    defaults = embedded_env(tmp_path)
    env, taken = with_environment(defaults, {"FLIPGUARD_DATA_ROOTS": json.dumps(["/srv/data"]), "HOME": "/root"})
    assert json.loads(env["FLIPGUARD_DATA_ROOTS"]) == ["/srv/data"] and taken == ["FLIPGUARD_DATA_ROOTS"]
    assert env["FLIPGUARD_DATABASE_URL"] == defaults["FLIPGUARD_DATABASE_URL"]


def test_data_roots_may_be_a_path_list(tmp_path):
    env, _ = with_environment(embedded_env(tmp_path), {"FLIPGUARD_DATA_ROOTS": "/srv/a:/srv/b"})
    assert json.loads(env["FLIPGUARD_DATA_ROOTS"]) == ["/srv/a", "/srv/b"]


def test_without_the_variable_the_embedded_roots_stay(tmp_path):
    env, taken = with_environment(embedded_env(tmp_path), {})
    assert taken == [] and str(Path(tmp_path).resolve() / "data") in json.loads(env["FLIPGUARD_DATA_ROOTS"])
