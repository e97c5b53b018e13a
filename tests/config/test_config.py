from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bruno.config import Config, FlowConfig, ProcessConfig, config_to_yaml, load_config, override, parse_config
from bruno.errors import ConfigError
from tests.conftest import REPO

CONFIGS = sorted((REPO / "config_rnn").glob("*.yaml"))
REQUIRED = {"adni", "thorax_ct", "fetal", "ixi", "hippocampus", "phantom", "tiny"}


def test_every_required_config_exists() -> None:
    assert REQUIRED <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_loads_and_round_trips(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, Config)
    assert parse_config(yaml.safe_load(config_to_yaml(config))) == config


def test_paper_settings() -> None:
    assert load_config(REPO / "config_rnn/adni.yaml").data.slab_fraction == 0.75
    assert load_config(REPO / "config_rnn/thorax_ct.yaml").data.slab_fraction == 0.5
    fetal = load_config(REPO / "config_rnn/fetal.yaml").data
    assert (fetal.slab_fraction, fetal.num_poses) == (0.65, 80)
    assert load_config(REPO / "config_rnn/thorax_ct.yaml").data.intensity == "window"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("data: {slab_fraction: 0}", r"c\.yaml: data\.slab_fraction=0\.0, expected a number in \(0, 1\]"),
        ("data: {slab_fraction: 1.5}", r"data\.slab_fraction=1\.5, expected a number in \(0, 1\]"),
        ("data: {image_size: 30}", r"data\.image_size=30, expected a positive multiple of 8"),
        ("data: {num_poses: 1}", r"data\.num_poses=1, expected an integer >= 2"),
        ("data: {num_poses: 2.5}", r"data\.num_poses=2\.5, expected an integer"),
        ("data: {num_poses: true}", r"data\.num_poses=True, expected an integer"),
        ("data: {image_size: '64'}", r"data\.image_size='64', expected an integer"),
        ("data: {source: dicom}", r"data\.source='dicom', expected one of 'nifti', 'phantom'"),
        ("data: {intensity_range: [1, 2, 3]}", r"data\.intensity_range=\[1, 2, 3\], expected a list of 2 numbers"),
        ("data: {intensity_range: [99, 1]}", r"data\.intensity_range=\[99\.0, 1\.0\], expected \[low, high\]"),
        ("data: {split: {train: 0.5, val: 0.1, test: 0.1}}", r"data\.split\.train\+val\+test=0\.7, expected fractions that sum to 1"),
        ("data: {split: {train: 0.0, val: 0.5, test: 0.5}}", r"data\.split\.train=0\.0, expected a fraction > 0"),
        ("data: {phantom: {size: 4}}", r"data\.phantom\.size=4, expected an integer >= 16"),
        ("data: {output: out.txt}", r"data\.output='out\.txt', expected a path ending in \.h5"),
        ("data: {subject_pattern: '('}", r"data\.subject_pattern='\(', expected a regular expression"),
        ("data: {source: phantom, input: x}", r"data\.input='x', expected null when data\.source is 'phantom'"),
        ("data: [1, 2]", r"data=\[1, 2\], expected a mapping with keys"),
        ("model: {process: {kind: pose_student_t, kernel: cubic}}", r"model\.process\.kernel='cubic', expected"),
        ("model: {process: {kind: cubic}}", r"model\.process\.kind='cubic', expected one of 'student_t', 'gaussian', 'pose_"),
        ("model: {process: {pose_kernel: cubic}}", r"model\.process\.kernel='cubic', expected"),  # the old key, mapped
        ("model: {process: {length_init: 0.5}}", r"model\.process\.length_init=0\.5, expected a number > length_min = 0\.5"),
        ("model: {process: {kernel_nugget: -0.1}}", r"model\.process\.kernel_nugget=-0\.1, expected a number >= 0"),
        ("model: {process: {latent_factors: 4, pose_kernel: matern32}}",  # old keys, refused as they were then
         r"model\.process\.latent_factors=4, expected a pose_kernel with kind: gaussian and only one of latent_factors"),
        ("model: {process: {population: true}}", r"model\.process\.population=True, expected false or 0 without a pose_kernel"),
        ("model: {process: {kind: latent_factor, latent_factors: 0}}",
         r"model\.process\.latent_factors=0, expected an integer >= 1"),
        ("model: {flow: {dense_units: 3}}", r"model\.flow\.dense_units=3, expected an even integer >= 2"),
        ("model: {flow: {num_filters: 8}, num_scales: 2}",
         r"model\.num_scales: a key of the old flat model section beside a model\.flow section; write it as model\.flow\.num_scales"),
        ("train: {num_context_min: 9}", r"train\.num_context_min=9, expected an integer in \[0, num_context = 8\]"),
        ("train: {process_learning_rate_scale: 0}", r"train\.process_learning_rate_scale=0\.0, expected a number > 0"),
    ],
)
def test_bad_values_name_file_key_value_and_expectation(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_unknown_key_lists_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key data\.slab_fractoin \(data\); valid keys: source, input, .*slab_fraction"):
        load_config(write(tmp_path, "data: {slab_fractoin: 0.5}"))
    with pytest.raises(ConfigError, match=r"unknown key data\.split\.tran \(data\.split\); valid keys: train, val, test, seed"):
        load_config(write(tmp_path, "data: {split: {tran: 1.0}}"))


def test_unknown_section_lists_valid_sections(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key dta \(top level\); valid keys: data"):
        load_config(write(tmp_path, "dta: {}"))


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"c\.yaml: not valid YAML"):
        load_config(write(tmp_path, "data: {a: [1, 2"))
    with pytest.raises(ConfigError, match=r"c\.yaml: expected a mapping of sections at the top level, got list"):
        load_config(write(tmp_path, "- 1\n- 2"))


def test_unsafe_yaml_tags_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "data: !!python/object/apply:os.system ['echo hi']"))


def test_empty_file_is_refused_but_an_empty_mapping_gives_defaults(tmp_path: Path) -> None:
    for text in ("", "# only a comment\n"):
        with pytest.raises(ConfigError, match=r"c\.yaml: is empty, expected a mapping with data, model and train sections"):
            load_config(write(tmp_path, text))
    assert load_config(write(tmp_path, "{}")) == Config()


def test_readme_lists_every_config_key_and_cites_nothing_outside_the_repository() -> None:
    import dataclasses

    from bruno import config as module

    readme = (REPO / "README.md").read_text()
    sections = (module.DataConfig, module.PhantomConfig, module.SplitConfig, module.ModelConfig, module.FlowConfig,
                module.ProcessConfig, module.GQNConfig, module.CVAEConfig, module.TrainConfig)
    missing = [f"{cls.__name__}.{f.name}" for cls in sections for f in dataclasses.fields(cls) if f"`{f.name}`" not in readme]
    assert missing == []
    assert "SPEC" not in readme  # the spec is not shipped: point at modules and docs/ instead


def test_a_flat_model_section_of_an_older_config_loads_into_flow_and_process() -> None:
    """Run folders and experiment files written before ``model.flow`` / ``model.process`` hold a flat section."""
    old = {"data": {"num_poses": 12, "image_size": 16}, "train": {"seq_len": 5, "num_context": 3},
           "model": {"num_scales": 2, "num_filters": 8, "upstream_logit_log_det": True, "process": "gaussian",
                     "pose_kernel": "matern32", "length_min": 2.0, "latent_factors": 4, "keep_contexts": True}}
    config = parse_config(old)
    assert config.model.flow == FlowConfig(num_scales=2, num_filters=8, upstream_logit_log_det=True)
    assert config.model.process == ProcessConfig(kind="latent_factor", kernel="matern32", length_min=2.0, latent_factors=4)
    assert config.model.keep_contexts and config.model.kind == "bruno"
    assert parse_config(yaml.safe_load(config_to_yaml(config))) == config  # written back in the new layout
    assert "flow:" in config_to_yaml(config) and "num_filters: 8" not in config_to_yaml(config).split("flow:")[0]
    assert parse_config({"model": {"process": "student_t"}}).model.process == ProcessConfig()
    stored = load_config(REPO / "tests/fixtures/tiny_run_v1/config.yaml")  # old keys (pose_kernel: null)  # a real run folder of that time
    assert stored.model == load_config(REPO / "config_rnn/tiny.yaml").model


@pytest.mark.parametrize("old, kind", [
    ({"kind": "gaussian", "pose_kernel": None, "latent_factors": 0, "population": False}, "gaussian"),
    ({"pose_kernel": "rbf"}, "pose_student_t"),
    ({"kind": "gaussian", "pose_kernel": "rbf", "latent_factors": 0}, "pose_gaussian"),
    ({"kind": "gaussian", "pose_kernel": "rbf", "latent_factors": 5, "population": False}, "latent_factor"),
    ({"kind": "gaussian", "pose_kernel": "rbf", "latent_factors": 0, "population": True, "shrinkage_init": 2.0}, "population"),
])
def test_process_sections_before_the_one_kind_map_to_it(old: dict, kind: str) -> None:
    """Runs of format 1 store ``pose_kernel`` / ``latent_factors`` / ``population`` beside ``kind``: each maps to one kind,
    keeping every other value (the rank where it was a latent factor process, the kernel where there was one)."""
    process = parse_config({"model": {"process": old}}).model.process
    expected = ProcessConfig(kind=kind, kernel=old["pose_kernel"] or "matern32", shrinkage_init=old.get("shrinkage_init", 0.5),
                             latent_factors=old.get("latent_factors") or ProcessConfig.latent_factors)
    assert process == expected
    with pytest.raises(ConfigError, match=r"model\.process\.population=True, expected a pose_kernel with kind: gaussian"):
        parse_config({"model": {"process": {**old, "pose_kernel": "rbf", "kind": "student_t", "population": True}}})


def test_override_checks_values() -> None:
    config = override(Config(), "data", input="x/*.nii.gz", num_poses=10)
    assert (config.data.input, config.data.num_poses) == ("x/*.nii.gz", 10)
    with pytest.raises(ConfigError, match=r"command line: data\.num_poses=1, expected an integer >= 2"):
        override(Config(), "data", num_poses=1)
    with pytest.raises(ConfigError, match=r"unknown key data\.bogus"):
        override(Config(), "data", bogus=1)
    assert override(Config(), "model.process", kind="pose_gaussian", kernel="rbf").model.process.kernel == "rbf"
    with pytest.raises(ConfigError, match=r"command line: model\.flow\.dense_units=3, expected an even integer >= 2"):
        override(Config(), "model.flow", dense_units=3)
    with pytest.raises(ConfigError, match=r"unknown config section 'model\.kind'"):
        override(Config(), "model.kind", x=1)


def test_base_shares_the_sections_a_file_leaves_out(tmp_path: Path) -> None:
    (tmp_path / "parent.yaml").write_text("data: {num_poses: 12, image_size: 16}\nmodel: {flow: {num_scales: 2}}\ntrain: {seq_len: 5, num_context: 3}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text("base: ../parent.yaml\nmodel: {flow: {num_filters: 8}}\n")
    child = load_config(tmp_path / "sub" / "child.yaml")
    assert (child.data.num_poses, child.train.seq_len) == (12, 5)
    assert (child.model.flow.num_filters, child.model.flow.num_scales) == (8, 3)  # the child's model section replaces the base's whole
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match=r"loop\.yaml: base='loop\.yaml' leads back to itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: config file not found"):
        load_config(tmp_path / "orphan.yaml")
    (tmp_path / "odd.yaml").write_text("base: [1]\n")
    with pytest.raises(ConfigError, match=r"odd\.yaml: base=\[1\], expected the path of another config file"):
        load_config(tmp_path / "odd.yaml")


@pytest.mark.parametrize("path", [p for p in CONFIGS if "base:" in p.read_text()], ids=lambda p: p.name)
def test_variants_share_their_base_data_section(path: Path) -> None:
    base = yaml.safe_load(path.read_text())["base"]
    assert load_config(path).data == load_config(path.parent / base).data
    assert not re.search(r"^data:", path.read_text(), re.MULTILINE)
