"""params.yaml checked as a whole against spanlib.config.schema: unknown and misspelt names (with the
nearest valid one), duplicated keys, types, --set and recipe overrides, missing groups."""

from pathlib import Path

import pytest
import yaml

from spanlib.config import schema as config
from spanlib.config.schema import Config, apply_overrides, check_params
from spanlib.utils.errors import ParamError
from spanlib.config.params import load_params, resolve

REPO = Path(__file__).resolve().parents[1]


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def write(tmp_path, params: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_the_repository_params_load_complete_with_every_recipe():
    params = load_params(REPO / "params.yaml", complete=True)
    assert params == repo_params()  # returned as in the file: no defaults filled in
    typed = Config.from_params(params, "params.yaml")
    assert typed.train.iterations == params["train"]["iterations"]
    assert typed.train.compile is False  # optional, absent from the file: the schema's default
    from spanlib.config.schema import apply_recipe

    for name in params["recipes"]:
        apply_recipe(params, name)


def test_a_misspelt_group_names_it_the_file_the_line_and_the_nearest_group(tmp_path):
    text = (REPO / "params.yaml").read_text().replace("\ntrain:", "\ntrian:")
    path = tmp_path / "params.yaml"
    path.write_text(text)
    line = text.splitlines().index("trian:") + 1
    with pytest.raises(ParamError, match=rf"params.yaml line {line}: unknown group 'trian' \(did you mean 'train'\?\)"):
        load_params(path)


def test_a_misspelt_key_suggests_the_valid_one(tmp_path):
    params = repo_params()
    params["train"]["iteratons"] = params["train"].pop("iterations")
    with pytest.raises(ParamError, match=r"unknown parameter 'train.iteratons' \(did you mean 'train.iterations'\?\)"):
        load_params(write(tmp_path, params))


def test_a_duplicated_group_is_an_error_naming_both_lines(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("model:\n  variant: scpan\n  stages: 2\nseed: 0\nmodel:\n  width: 32\n")
    with pytest.raises(ParamError, match=r"line 5: duplicate key 'model' \(first at line 1\)"):
        load_params(path)
    path.write_text("train:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ParamError, match=r"line 3: duplicate key 'train.lr'"):
        load_params(path)


@pytest.mark.parametrize("key, value, expected", [
    ("train.iterations", "many", "an integer >= 1"),
    ("train.iterations", 2.5, "an integer >= 1"),
    ("train.lr", "1e-3", "YAML 1.1"),
    ("train.compile", "yes please", "true or false"),
    ("model.variant", "hrnet", "one of shn"),
    ("disturb.p_flip", 1.5, "<= 1"),
    ("data.test_splits", "common", "a list of"),
])
def test_a_wrong_type_or_range_names_the_key_and_what_was_expected(tmp_path, key, value, expected):
    params = repo_params()
    group, name = key.split(".")
    params[group][name] = value
    with pytest.raises(ParamError, match=rf"{key}: expected .*{expected}"):
        load_params(write(tmp_path, params))


def test_set_overrides_are_checked_like_the_file(tmp_path):
    path = write(tmp_path, repo_params())
    assert resolve(path, overrides=["train.iterations=7"])["train"]["iterations"] == 7
    with pytest.raises(ParamError, match=r"--set train.iteratons: unknown parameter .*did you mean 'train.iterations'"):
        resolve(path, overrides=["train.iteratons=7"])
    with pytest.raises(ParamError, match=r"--set trian.iterations: unknown group 'trian' \(did you mean 'train'\?\)"):
        resolve(path, overrides=["trian.iterations=7"])
    with pytest.raises(ParamError, match=r"train.batch_size: expected an integer >= 1, got 0"):
        resolve(path, overrides=["train.batch_size=0"])
    # optional keys the file leaves out may be set (the code reads them with a default)
    small = {"train": {"iterations": 3}}
    assert apply_overrides(small, ["train.compile=true"])["train"] == {"iterations": 3, "compile": True}
    assert apply_overrides(small, ["loss.heatmap_loss=ce"])["loss"] == {"heatmap_loss": "ce"}


@pytest.mark.parametrize("extra, expected", [
    ([{"source": "csv"}], r"data.extra_train\[0\]: expected a mapping with keys source, root"),
    ([{"source": "csv", "root": "x", "folder": "y"}], r"data.extra_train\[0\]: expected a mapping"),
    ([{"source": "300W", "root": "x"}], r"data.extra_train\[0\].source: '300W' is not one of .*did you mean '300w'"),
])
def test_extra_training_folders_are_checked(tmp_path, extra, expected):
    path = write(tmp_path, repo_params())
    ok = resolve(path, overrides=['data.extra_train=[{source: csv, root: faces, split: training}]'])
    assert ok["data"]["extra_train"] == [{"source": "csv", "root": "faces", "split": "training"}]
    params = repo_params()
    params["data"]["extra_train"] = extra
    with pytest.raises(ParamError, match=expected):
        load_params(write(tmp_path, params))


def test_recipes_are_checked_when_the_file_loads(tmp_path):
    params = repo_params()
    params["recipes"]["paper"]["train.iteratons"] = 5
    with pytest.raises(ParamError, match=r"\(recipe paper\).*did you mean 'train.iterations'"):
        load_params(write(tmp_path, params))
    params = repo_params()
    params["recipes"]["real"]["model.width"] = "wide"
    with pytest.raises(ParamError, match=r"model.width: expected an integer"):
        load_params(write(tmp_path, params))
    params = repo_params()
    params["pipeline"]["recipe"] = "papr"
    with pytest.raises(ParamError, match=r"pipeline.recipe names 'papr'.*did you mean 'paper'"):
        load_params(write(tmp_path, params))


def test_missing_groups_and_keys_are_named_when_the_file_must_be_complete(tmp_path):
    params = repo_params()
    del params["loss"]
    path = write(tmp_path, params)
    load_params(path)  # a partial file loads (tests write such files) ...
    with pytest.raises(ParamError, match=r"params.yaml: missing group loss"):
        load_params(path, complete=True)  # ... but not where a command needs every group
    params = repo_params()
    del params["model"]["depth"]
    with pytest.raises(ParamError, match=r"group 'model' lacks depth"):
        load_params(write(tmp_path, params), complete=True)


def test_the_cli_checks_the_params_file_before_running(tmp_path, capsys):
    from spanlib.cli import main

    params = repo_params()
    params["trian"] = params.pop("train")
    code = main(["train", "--params", str(write(tmp_path, params)), "--variant", "shn", "--out", str(tmp_path / "x.pt")])
    assert code == 2 and "did you mean 'train'" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_the_schema_choices_match_the_code():
    from spanlib.data.sources import SOURCES
    from spanlib.data.targets import DISTRIBUTIONS
    from spanlib.model.losses import FIELD_LOSSES, HEATMAP_LOSSES
    from spanlib.evaluation.metrics import NORMS
    from spanlib.config.variants import VARIANTS
    from spanlib.training.train import OPTIMIZERS

    assert config.VARIANTS is VARIANTS and config.SOURCES == SOURCES
    assert config.OPTIMIZERS == OPTIMIZERS and config.NORMS == NORMS and config.HEATMAP_DISTRIBUTIONS == DISTRIBUTIONS
    assert set(config.FIELD_LOSSES) == set(FIELD_LOSSES) and set(config.HEATMAP_LOSSES) == set(HEATMAP_LOSSES)
    from spanlib.evaluation.evaluate import evaluate_params
    from spanlib.inference.step import decode_radius

    # a checkpoint without an evaluate group evaluates with the schema's defaults, 7x7 decoding
    assert config.to_mapping(evaluate_params({})) == {k: config.default(f"evaluate.{k}") for k in config.fields_of("evaluate")}
    assert decode_radius({}) == 3 == evaluate_params({}).decode_radius


def test_check_params_accepts_every_key_of_the_repository_file():
    params = repo_params()
    keys = {f"{g}.{k}" for g, v in params.items() if isinstance(v, dict) and g != "recipes" for k in v}
    assert keys <= set(config.all_keys())
    check_params(params, "params.yaml", complete=True)


def test_a_group_mapping_becomes_its_typed_group_with_the_schema_defaults():
    disturb = config.as_group("disturb", {"p_flip": 0.5})
    assert isinstance(disturb, config.DisturbConfig) and disturb.p_flip == 0.5
    assert disturb.redraw == "epoch" and disturb.scale_range == (1.0, 1.0)  # the schema's defaults
    assert config.as_group("disturb", disturb) is disturb  # already typed: used as is
    with pytest.raises(ParamError, match="disturb.p_flip: expected a number >= 0 and <= 1"):
        config.as_group("disturb", {"p_flip": 1.5})
    with pytest.raises(ParamError, match="disturb.scale_range: expected \\[low, high\\]"):
        config.as_group("disturb", {"scale_range": [1.0, 0.5]})
    with pytest.raises(ParamError, match="group 'targets' lacks sigma, boundary_sigma"):
        config.as_group("targets", {"field_radius": 5})
    typed = Config.from_params(repo_params())
    assert config.group_of(typed, "crop") is typed.crop
    assert config.group_of(repo_params(), "crop") == typed.crop
    assert config.to_mapping(typed.disturb) == {**{k: config.default(f"disturb.{k}") for k in config.fields_of("disturb")},
                                                **repo_params()["disturb"]}


@pytest.mark.parametrize("old, new", [("profiles", "recipes"), ("targets.profile", "targets.distribution"),
                                      ("pipeline.profile", "pipeline.recipe")])
def test_a_renamed_name_is_told_its_new_name(tmp_path, old, new):
    params = repo_params()
    group, _, key = old.partition(".")
    if key:
        params[group][key] = params[group].pop(new.partition(".")[2])
    else:
        params[old] = params.pop(new)
    with pytest.raises(ParamError, match=f"'{old}' \\(renamed to '{new}'\\)"):
        load_params(write(tmp_path, params))


def test_the_train_command_tells_that_profile_became_recipe(tmp_path, capsys):
    from spanlib.cli import main

    code = main(["train", "--profile", "real", "--variant", "shn", "--out", str(tmp_path / "x.pt")])
    assert code == 2 and "renamed to --recipe" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_a_checkpoint_written_under_the_old_names_reads_under_the_new_ones():
    old = repo_params()
    old["profiles"] = old.pop("recipes")
    old["targets"]["profile"] = old["targets"].pop("distribution")
    old["pipeline"]["profile"] = old["pipeline"].pop("recipe")
    old["real_study"]["profile"] = old["real_study"].pop("recipe")
    old["distributions"]["settings"] = [{"profile": "ged", "ged_shape": 0.2}]
    old["profiles"]["paper"]["targets.profile"] = "ged"
    new = config.migrate(old)
    assert new["recipes"]["real"] == repo_params()["recipes"]["real"]
    assert new["targets"]["distribution"] == "gaussian" and "profile" not in new["targets"]
    assert new["pipeline"]["recipe"] is None and new["real_study"]["recipe"] == "real,shared300w"
    assert new["distributions"]["settings"] == [{"distribution": "ged", "ged_shape": 0.2}]
    assert new["recipes"]["paper"]["targets.distribution"] == "ged"
    check_params(new, "migrated", complete=True)
    assert "profiles" in old  # the input is left alone
