"""spanlib.config.params.resolve: the one way params are made (file, then recipes, then overrides),
with the result checked against the schema and every error naming where the bad value came from."""

import copy
from pathlib import Path

import pytest
import yaml

from spanlib.config.params import load_params, resolve
from spanlib.utils.errors import ParamError

REPO = Path(__file__).resolve().parents[1]


def small_file(tmp_path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({
        "seed": 0,
        "train": {"iterations": 600, "batch_size": 8, "lr": 4.0e-3, "lr_milestones": [0.5], "lr_divisors": [10.0]},
        "recipes": {"a": {"train.iterations": 10, "train.batch_size": 3},
                    "b": {"train.iterations": 20},
                    "bad_schedule": {"train.lr_milestones": [0.2, 0.6]}},
    }, sort_keys=False))
    return path


def test_file_then_recipes_in_order_then_overrides(tmp_path):
    path = small_file(tmp_path)
    assert resolve(path)["train"]["iterations"] == 600
    assert resolve(path, "a")["train"] == {**resolve(path)["train"], "iterations": 10, "batch_size": 3}
    assert resolve(path, "a,b")["train"]["iterations"] == 20       # the later recipe wins
    assert resolve(path, ["b", "a"])["train"]["iterations"] == 10   # a list: the same, in its order
    assert resolve(path, "a,b")["train"]["batch_size"] == 3
    assert resolve(path, "a,b", ["train.iterations=5"])["train"]["iterations"] == 5  # overrides win
    assert resolve(path, "a,b", {"train.iterations": 7})["train"]["iterations"] == 7
    assert resolve(path, "a", ["train.iterations=5", "train.iterations=6"])["train"]["iterations"] == 6
    # None and "" are no recipes; a dict source resolves like its file and is not changed
    assert resolve(path, None) == resolve(path, "") == load_params(path)
    source = load_params(path)
    kept = copy.deepcopy(source)
    out = resolve(source, "a", {"seed": 3})
    assert source == kept and out["seed"] == 3 and out["train"]["iterations"] == 10
    assert out["recipes"] is not source["recipes"]
    # an optional key the file leaves out may be set; no default is filled in for the others
    out = resolve(path, overrides={"train.compile": True})
    assert out["train"] == {**load_params(path)["train"], "compile": True}


def test_a_bad_override_is_a_param_error_naming_its_origin(tmp_path):
    path = small_file(tmp_path)
    with pytest.raises(ParamError, match=r"^--set train.batch_size: train.batch_size: expected an integer >= 1, got 0"):
        resolve(path, overrides=["train.batch_size=0"])
    with pytest.raises(ParamError, match=r"^--set train.iteratons: unknown parameter .*did you mean 'train.iterations'"):
        resolve(path, "a", ["train.iteratons=7"])
    with pytest.raises(ParamError, match=r"^run ged train.lr: train.lr: expected a number > 0, got -1"):
        resolve(path, overrides={"train.lr": -1}, origin="run ged")
    with pytest.raises(ParamError, match=r"^--recipe c: unknown recipe"):
        resolve(path, "a,c")
    with pytest.raises(ParamError, match=r"^--set 'train.iterations': expected key=value"):
        resolve(path, overrides=["train.iterations"])


def test_the_result_is_checked_as_a_whole_naming_the_step(tmp_path):
    """Each key may fit on its own and the params still not (rules between keys): the error names
    the recipe or the overrides that made them so, and the file they were applied to."""
    path = small_file(tmp_path)
    with pytest.raises(ParamError, match=r"^recipes.bad_schedule: \(applied to .*params.yaml\): "
                                         r"train.lr_milestones / train.lr_divisors: expected lists of equal length"):
        resolve(path, "bad_schedule")
    with pytest.raises(ParamError, match=r"^--set \(applied to .*params.yaml\): train.lr_milestones / "
                                         r"train.lr_divisors: expected lists of equal length, got 1 and 2"):
        resolve(path, overrides=["train.lr_divisors=[10.0, 10.0]"])
    # the two set together are fine: the whole is checked after all the overrides, not after each
    both = resolve(path, overrides=["train.lr_divisors=[10.0, 10.0]", "train.lr_milestones=[0.2, 0.6]"])
    assert both["train"]["lr_divisors"] == [10.0, 10.0]
    with pytest.raises(ParamError, match=r"^notebook parameter \(applied to params\): data.extra_train\[0\]: "
                                         r"expected a mapping with keys source, root"):
        resolve({"data": {"extra_train": []}}, overrides={"data.extra_train": [{"source": "csv"}]},
                origin="notebook parameter")
    # complete: a whole group replaced by an override must still hold its required keys
    repo = REPO / "params.yaml"
    with pytest.raises(ParamError, match=r"^--set \(applied to .*params.yaml\): group 'train' lacks"):
        resolve(repo, overrides=["train={iterations: 3}"], complete=True)
    assert resolve(repo, overrides=["train={iterations: 3}"])["train"] == {"iterations": 3}


def test_notebook_style_mapping_overrides_are_checked_and_used_as_given(tmp_path):
    path = small_file(tmp_path)
    with pytest.raises(ParamError, match=r"^notebook parameter train.iterations: train.iterations: expected an "
                                         r"integer >= 1, got '50'"):
        resolve(path, overrides={"train.iterations": "50"}, origin="notebook parameter")
    with pytest.raises(ParamError, match=r"^notebook parameter pipeline.sedes: unknown parameter 'pipeline.sedes'"
                                         r".*did you mean 'pipeline.seeds'"):
        resolve(path, overrides={"pipeline.sedes": [0]}, origin="notebook parameter")
    with pytest.raises(ParamError, match=r"kernel_profiling.run: expected one of auto, always, never"):
        resolve(path, overrides={"kernel_profiling.run": "sometimes"})
    # a mapping's values are not read as YAML: the string "null" stays a string
    out = resolve(path, overrides={"train.live_dir": "null", "seed": 5})
    assert out["train"]["live_dir"] == "null" and out["seed"] == 5
    assert resolve(path, overrides=["train.live_dir=null"])["train"]["live_dir"] is None


def _old_apply(params: dict, items: dict) -> dict:
    """How the recipes were applied before resolve: each value written as YAML and read back, as a
    ``--set`` string."""
    params = copy.deepcopy(params)
    for key, value in items.items():
        raw = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        group, _, name = key.partition(".")
        params.setdefault(group, {})[name] = yaml.safe_load(raw)
    return params


def test_the_repository_params_with_real_shared300w_resolve_as_before():
    file = yaml.safe_load((REPO / "params.yaml").read_text())
    old = _old_apply(_old_apply(file, file["recipes"]["real"]), file["recipes"]["shared300w"])
    new = resolve(REPO / "params.yaml", "real,shared300w", complete=True)
    assert new == old
    # the same keys in the same order (what a checkpoint's params are written with)
    assert yaml.safe_dump(new, sort_keys=False) == yaml.safe_dump(old, sort_keys=False)
    assert new["crop"]["input_size"] == 128 and new["data"]["source"] == "300w"
    assert new != file
    # and with --set on top, as `spanlib train --recipe real,shared300w --set ...` resolves them
    over = resolve(REPO / "params.yaml", "real,shared300w", ["train.iterations=3", "model.width=16"])
    assert over == {**old, "train": {**old["train"], "iterations": 3}, "model": {**old["model"], "width": 16}}
