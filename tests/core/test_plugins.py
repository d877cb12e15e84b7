import textwrap
import types

import pytest

from core import plugins
from core.errors import PluginError, UnknownPluginError
from core.hookspecs import hookimpl
from core.specs import CurriculumSpec, DatasetSpec, RewardSpec
from tests.conftest import run_py


def _module(name, **hooks):
    mod = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(mod, hook_name, hookimpl(fn))
    return mod


def test_builtins_registered_by_kind():
    reg = plugins.build_registry(plugins.make_manager(load_entry_points=False))
    assert "synthetic" in reg.names("rewards")
    assert "mixed" in reg.names("curricula")
    assert "synthetic" in reg.names("datasets")
    spec = reg.get("rewards", "synthetic")
    assert isinstance(spec, RewardSpec) and spec.kind == "rule"
    data = reg.get("datasets", "synthetic")
    assert set(data.domains) >= {"arith", "sort", "rev"} and "eval" in data.splits
    assert all(e.source == "built-in" for e in reg.entries("rewards"))


def test_unknown_name_lists_valid_names():
    reg = plugins.build_registry(plugins.make_manager(load_entry_points=False))
    with pytest.raises(UnknownPluginError) as err:
        reg.get("rewards", "nope")
    assert "'nope'" in str(err.value) and "synthetic" in str(err.value)
    with pytest.raises(PluginError, match="valid kinds: rewards, curricula"):
        reg.get("reward", "synthetic")


def test_duplicate_name_names_every_provider():
    pm = plugins.make_manager(load_entry_points=False)
    clash = _module("team_a.rewards", agentic_rl_rewards=lambda: [RewardSpec(
        name="synthetic", factory=dict, description="a clash", kind="rule")])
    pm.register(clash, name="team_a.rewards")
    with pytest.raises(PluginError) as err:
        plugins.build_registry(pm)
    msg = str(err.value)
    assert "plugins.rewards.synthetic (built-in)" in msg and "team_a.rewards" in msg


def test_wrong_spec_type_is_rejected():
    pm = plugins.make_manager(load_entry_points=False)
    bad = _module("bad", agentic_rl_curricula=lambda: [RewardSpec(
        name="x", factory=dict, description="wrong kind")])
    pm.register(bad, name="bad")
    with pytest.raises(PluginError, match="expected CurriculumSpec"):
        plugins.build_registry(pm)


def test_unknown_hook_fails_check_pending():
    import pluggy
    pm = plugins.make_manager(load_entry_points=False)
    pm.register(_module("typo", agentic_rl_reward=lambda: []), name="typo")
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


def test_spec_records_are_frozen_and_checked():
    spec = CurriculumSpec(name="c", factory=list, description="one line")
    with pytest.raises(Exception):
        spec.name = "d"
    with pytest.raises(ValueError, match="one non-empty line"):
        CurriculumSpec(name="c", factory=list, description="two\nlines")
    with pytest.raises(ValueError, match="domains"):
        DatasetSpec(name="d", factory=list, description="x", domains=())
    with pytest.raises(ValueError, match="kind must be"):
        RewardSpec(name="r", factory=list, description="x", kind="neural")


def test_list_command_prints_kinds_sources_and_descriptions():
    proc = run_py("-m", "core.plugins", "list")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for header in ("rewards (", "curricula (", "datasets (", "environments ("):
        assert header in out
    assert "synthetic" in out and "built-in" in out and "[rule]" in out
    assert "mixed" in out and "reshuffle" in out


def test_list_command_usage_error():
    proc = run_py("-m", "core.plugins", "lst")
    assert proc.returncode == 2 and "usage: python -m core.plugins list" in proc.stderr


THIRD_PARTY = '''
from core.hookspecs import hookimpl
from core.specs import RewardSpec, CurriculumSpec

def _length_penalty(**kw):
    return lambda response: -len(response)

@hookimpl
def agentic_rl_rewards():
    yield RewardSpec(name="{reward}", factory=_length_penalty, kind="rule",
                     description="team plugin: shorter is better")

@hookimpl
def agentic_rl_curricula():
    yield CurriculumSpec(name="team_easy_first", factory=list,
                         description="team plugin: easy prompts first")
'''


def _build_plugin(tmp_path, reward_name):
    src = tmp_path / "src"
    (src / "team_plugin").mkdir(parents=True)
    (src / "team_plugin" / "__init__.py").write_text(THIRD_PARTY.format(reward=reward_name))
    (src / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "team-plugin"
        version = "1.2.3"
        [project.entry-points."agentic_rl_scaling.plugins"]
        team = "team_plugin"
        [tool.setuptools]
        packages = ["team_plugin"]
    '''))
    target = tmp_path / "site"
    proc = run_py("-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                  "--no-index", "--target", str(target), str(src))
    assert proc.returncode == 0, proc.stderr
    return target


def test_third_party_plugin_from_entry_point(tmp_path):
    site = _build_plugin(tmp_path, "team_length")
    proc = run_py("-m", "core.plugins", "list", env={"PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if "team_length" in ln)
    assert "team-plugin 1.2.3" in line and "shorter is better" in line
    assert "team_easy_first" in proc.stdout
    # The built-ins are still there, registered first.
    assert proc.stdout.index("synthetic") < proc.stdout.index("team_length")
    # And the config can select it by name.
    proc = run_py("-m", "core.tune", "grid=smoke", "reward.name=team_length", "--cfg",
                  env={"PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    assert "name: team_length" in proc.stdout


def test_third_party_duplicate_of_builtin_names_both(tmp_path):
    site = _build_plugin(tmp_path, "synthetic")
    proc = run_py("-m", "core.plugins", "list", env={"PYTHONPATH": str(site)})
    assert proc.returncode == 2
    assert "duplicate plugin names" in proc.stderr
    assert "plugins.rewards.synthetic (built-in)" in proc.stderr
    assert "team-plugin 1.2.3" in proc.stderr
    assert "Traceback" not in proc.stderr
