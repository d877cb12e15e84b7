"""A trial's reward, built from the config: a rule plugin in-process, or a learned RM, trained
once (cached, ``core.rm.ensure_rm``) and queried on its Serve endpoint, whose ``acc`` comes
from the rule verifier ``reward.rm.gold``."""
from __future__ import annotations

from core.config import Config


def build_reward(cfg: Config, log=print):
    """(reward, FlopModel of the learned RM or None, the RM's held-out metrics)."""
    from core.errors import ConfigError
    from core.plugins import registry
    spec = registry().get("rewards", cfg.reward.name)
    if spec.kind != "learned":
        return spec.factory(format_weight=cfg.reward.format_weight, **cfg.reward.options), None, {}
    rm = cfg.reward.rm
    if rm.url is None:
        raise ConfigError("reward.rm.url", None, "a trial outside a grid needs a running RM endpoint "
                          "(`python -m serve.rm up`); `python -m core.tune` starts one itself")
    from transformers import AutoConfig

    from core.flops import FlopModel
    from core.rm import ensure_rm
    key, path, rm_metrics = ensure_rm(cfg, log)
    gold = registry().get("rewards", rm.gold).factory(format_weight=0.0)
    fn = spec.factory(url=rm.url, size=rm.size, model_id=key, token=rm.token, gold=gold,
                      format_weight=cfg.reward.format_weight, timeout_s=rm.timeout_s, retries=rm.retries)
    return fn, FlopModel.from_config(AutoConfig.from_pretrained(path)), rm_metrics
