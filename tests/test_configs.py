"""Every config in conf/ composes, and every model, data, optimizer and scheduler config builds."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.checks import CONF_DIR
from src.models import build_network

REQUIRED = {"image_folder": ["data.path=/tmp/images"], "parallel_text": ["data.path=/tmp/pairs.tsv"],
            "audio_folder": ["data.path=/tmp/audio"], "text_csv": ["data.path=/tmp/texts.tsv"]}


def options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


GROUPS = ["task", "model", "data", "optimizer", "scheduler", "trainer", "logger", "callbacks", "paths",
          "experiment", "debug", "hparams_search"]


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_resolves(compose_train, group, option):
    cfg = compose_train(f"{group}={option}", *REQUIRED.get(option, []))
    cfg = OmegaConf.to_container(cfg, resolve=False)
    resolved = OmegaConf.create({k: v for k, v in cfg.items() if k != "hydra"})
    OmegaConf.resolve(resolved)


SPEECH_MODELS = ["speech_resnet", "crnn"]
TEXT_MODELS = ["bilstm", "textcnn"]
POLICIES = ["actor_critic", "recurrent_actor_critic"]
IMAGE_MODELS = [o for o in options("model")
                if not o.startswith("seq2seq") and o not in SPEECH_MODELS + TEXT_MODELS + POLICIES]


@pytest.mark.parametrize("option", IMAGE_MODELS)
def test_every_image_model_builds(compose_train, option):
    cfg = compose_train(f"model={option}")
    net = build_network(cfg.model, in_channels=3, num_classes=10)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("option", [o for o in options("model") if o.startswith("seq2seq")])
def test_every_translation_model_builds(compose_train, option):
    cfg = compose_train("task=translation", f"model={option}")
    net = build_network(cfg.model, src_vocab_size=30, tgt_vocab_size=40)
    src, src_len = torch.randint(3, 30, (2, 5)), torch.tensor([5, 3])
    assert net(src, src_len, torch.randint(3, 40, (2, 4))).shape == (2, 4, 40)


@pytest.mark.parametrize("option", SPEECH_MODELS)
def test_every_speech_model_builds(compose_train, option):
    cfg = compose_train("task=speech", f"model={option}")
    net = build_network(cfg.model, in_features=40, num_classes=12)
    assert net(torch.randn(2, 1, 40, 101)).shape == (2, 12)


@pytest.mark.parametrize("option", TEXT_MODELS)
def test_every_text_model_builds(compose_train, option):
    cfg = compose_train("task=sentiment", f"model={option}")
    net = build_network(cfg.model, vocab_size=50, num_classes=2)
    assert net(torch.randint(4, 50, (3, 7)), torch.tensor([7, 2, 1])).shape == (3, 2)


@pytest.mark.parametrize("option", POLICIES)
@pytest.mark.parametrize("action", [{"kind": "discrete", "n": 3}, {"kind": "continuous", "dim": 2, "low": [-1, -1],
                                                                    "high": [1, 1]}])
def test_every_policy_builds(compose_train, option, action):
    cfg = compose_train("task=rl", f"model={option}")
    net = build_network(cfg.model, obs_dim=4, action=action)
    params, value, _ = net(torch.randn(5, 4))
    assert params.shape == (5, action.get("n") or action["dim"]) and value.shape == (5,)


@pytest.mark.parametrize("option", [o for o in options("data") if o != "gym"])
def test_every_data_module_builds(compose_train, option):
    cfg = compose_train(f"data={option}", *REQUIRED.get(option, []))
    dm = instantiate(cfg.data)
    assert dm.batch_size > 0


def test_the_environment_data_module_builds_and_describes_its_environment(compose_train):
    cfg = compose_train("task=rl", "data=gym", "data.env_id=Pendulum-v1")
    dm = instantiate(cfg.data)
    assert dm.info["action"] == {"kind": "continuous", "dim": 1, "low": [-2.0], "high": [2.0]}
    assert dm.info["obs_dim"] == 3 and dm.info["max_episode_steps"] == 200


@pytest.mark.parametrize("opt", options("optimizer"))
@pytest.mark.parametrize("sched", options("scheduler"))
def test_every_optimizer_and_scheduler_builds(compose_train, opt, sched):
    cfg = compose_train(f"optimizer={opt}", f"scheduler={sched}")
    optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    if cfg.scheduler.get("_target_"):
        assert "scheduler" in instantiate(cfg.scheduler)(optimizer, total_steps=10)


@pytest.mark.parametrize("option", ["default", "cpu", "ddp_sim"])
def test_trainer_configs_build_on_cpu(compose_train, option):
    cfg = compose_train(f"trainer={option}")
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.max_epochs > 0


def test_eval_and_predict_configs_compose(compose_train):
    assert compose_train("ckpt_path=x.ckpt", config_name="eval").split == "test"
    assert compose_train("ckpt_path=x.ckpt", "input=a.png", config_name="predict").top_k >= 1


def test_every_yaml_is_reachable():
    """No stray file: each YAML under conf/ is a group option, a primary config or Hydra's."""
    for path in CONF_DIR.rglob("*.yaml"):
        rel = path.relative_to(CONF_DIR)
        assert rel.parts[0] in GROUPS + ["hydra", "hparams_search"] or len(rel.parts) == 1, rel
