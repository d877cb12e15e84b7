"""The trial's seams: no import cycle among the project's modules, the plugin protocols checked
before anything runs (one message naming the plugin, the method and what was expected), and a
third-party curriculum installed by entry point hearing every sample's outcome after every step."""
import ast
import json
import sys
import textwrap
from pathlib import Path

import pytest

from core.config import load
from core.errors import PluginError
from tests.conftest import ROOT


def _modules() -> dict[str, Path]:
    mods = {}
    for top in ("core", "plugins", "serve"):
        for p in (ROOT / top).rglob("*.py"):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = p
    return mods


def _import_graph() -> dict[str, set[str]]:
    """Every import statement of every module, at module level or inside a function (a lazy
    import is still a dependency), as edges between the project's modules."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in filter(None, map(resolve, targets)):
                if t != m:
                    edges[m].add(t)
    return edges


def test_no_import_cycle_among_core_plugins_and_serve():
    edges = _import_graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:       # depth-first search; a grey node met again closes a cycle
        state[m] = 1
        path.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert "core.backends.local" in edges and "core.rm" in edges   # the graph was built


def test_config_defaults_have_one_source():
    """The dataclasses type and document the keys; tune/config.yaml alone sets their values."""
    import dataclasses

    from core import config
    for cls in (config.Data, config.RM, config.Reward, config.Curriculum, config.SFT, config.RL,
                config.Eval, config.Estimate, config.Tracking, config.Config):
        with_default = [f.name for f in dataclasses.fields(cls)
                        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
        assert not with_default, f"{cls.__name__} repeats defaults of tune/config.yaml: {with_default}"


# --- plugins exercised before anything runs ---------------------------------------------------
def _registry_with(tmp_path, module_source: str):
    """A registry with a third-party plugin module registered (as an entry point would)."""
    from core.plugins import build_registry, make_manager
    mod = tmp_path / "team_plugin.py"
    mod.write_text(textwrap.dedent(module_source))
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib
        pm = make_manager(load_entry_points=False)
        pm.register(importlib.import_module("team_plugin"), name="team_plugin")
        return build_registry(pm)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("team_plugin", None)


BAD_PLUGINS = '''
from core.hookspecs import hookimpl
from core.specs import CurriculumSpec, RewardSpec

class NoBatch:
    def __init__(self, format_weight=0.0):
        pass
    def __call__(self, ds, resp, gt, extra=None):
        return 1.0

class WrongType:
    def __init__(self, format_weight=0.0):
        pass
    def score_batch(self, items):
        return [1.0 for _ in items]

class Forgetful:
    def __init__(self, records, seed=0):
        self.records = records
    def batch(self, step, size):
        return self.records[:size]

@hookimpl
def agentic_rl_rewards():
    yield RewardSpec(name="no_batch", factory=NoBatch, description="no score_batch")
    yield RewardSpec(name="wrong_type", factory=WrongType, description="floats, not Scores")

@hookimpl
def agentic_rl_curricula():
    yield CurriculumSpec(name="forgetful", factory=Forgetful, description="no update, no state")
'''


@pytest.mark.parametrize("over,words", [
    (["reward.name=no_batch"], ["reward plugin 'no_batch'", "score_batch", "is missing"]),
    (["reward.name=wrong_type"], ["reward plugin 'wrong_type'", "score_batch", "list of float", "Score"]),
    (["curriculum.name=forgetful"], ["curriculum plugin 'forgetful'", "update", "is missing"]),
])
def test_a_plugin_that_breaks_its_protocol_fails_before_the_grid(tmp_path, over, words):
    from core.plugin_check import check_plugins
    reg = _registry_with(tmp_path, BAD_PLUGINS)
    cfg = load("smoke", ["model=xs", "~grid.axes.model", "data.d_rl=16", *over], registry=reg)
    with pytest.raises(PluginError) as err:
        check_plugins(cfg, registry=reg)
    for w in words:
        assert w in str(err.value), str(err.value)


RECORDER = '''
import json
from core.hookspecs import hookimpl
from core.specs import CurriculumSpec

class Recorder:
    """Serves the pool in order and writes what it hears to a file."""
    def __init__(self, records, seed=0, log=""):
        self.records, self.log, self.heard = records, log, []
    def batch(self, step, size):
        start = (step * size) % len(self.records)
        return [self.records[(start + i) % len(self.records)] for i in range(size)]
    def update(self, step, records, outcomes):
        self.heard.append({"step": step, "n": len(outcomes),
                           "indices": sorted({o.record_index for o in outcomes}),
                           "rewards": [o.reward for o in outcomes],
                           "correct": [o.correct for o in outcomes]})
        open(self.log, "a").write(json.dumps(self.heard[-1]) + "\\n")
    def state_dict(self):
        return {"heard": len(self.heard)}
    def load_state_dict(self, state):
        pass

@hookimpl
def agentic_rl_curricula():
    yield CurriculumSpec(name="recorder", factory=Recorder, description="records outcomes")
'''


def test_third_party_curriculum_installed_by_entry_point_hears_outcomes(tmp_path, monkeypatch):
    """A package installed the way a team ships one (a dist-info with an entry point in the
    `agentic_rl_scaling.plugins` group) is found by the registry; its curriculum receives one
    Outcome per sample, with reward and correctness, after every RL step."""
    site = tmp_path / "site"
    (site / "team_curricula").mkdir(parents=True)
    (site / "team_curricula" / "__init__.py").write_text(textwrap.dedent(RECORDER))
    dist = site / "team_curricula-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: team-curricula\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[agentic_rl_scaling.plugins]\nteam = team_curricula\n")
    monkeypatch.syspath_prepend(str(site))
    from core import plugins
    plugins.registry.cache_clear()
    try:
        assert plugins.registry().get("curricula", "recorder")
        source = next(e.source for e in plugins.registry().entries("curricula") if e.spec.name == "recorder")
        assert source == "team-curricula 0.1"
        log = tmp_path / "heard.jsonl"
        cfg = load("smoke", ["model=xs", "~grid.axes.model", "data.d_sft=64", "sft.steps=2", "rl.steps=3",
                            "eval.every=3", "data.n_eval=4", "eval.n_samples=2", "eval.k_max=2",
                            "rl.prompts_per_step=4", "rl.group_size=2", "data.d_rl=16",
                            "curriculum.name=recorder", f"+curriculum.options.log={log}",
                            f"cache_dir={tmp_path / 'cache'}"])
        from core.trial import run_trial
        steps = [m["step"] for m, _ in run_trial(cfg, tmp_path / "t", log=lambda *a: None)]
        assert steps == [0, 1, 2, 3]
        heard = [json.loads(line) for line in log.read_text().splitlines()]
        assert [h["step"] for h in heard] == [0, 1, 2]                      # after every RL step
        for h in heard:
            assert h["n"] == 4 * 2 and h["indices"] == [0, 1, 2, 3]         # one outcome per sample
            assert all(isinstance(c, bool) for c in h["correct"])
            assert all(r in (0.0, 1.0) for r in h["rewards"])               # the synthetic reward
    finally:
        plugins.registry.cache_clear()
