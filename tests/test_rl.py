"""task=rl: GAE and PPO's objective against hand-computed numbers, the recurrent policy's state, learning a small
environment with each algorithm, a seeded run that repeats, a kill and resume, eval.py and predict.py on a trained
agent, and bad configs refused in one line."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from tests.helpers import QUICK, cli, eval_here, predict_here, run_script, train_here

TINY = ["task=rl", "data.num_envs=4", "data.updates_per_epoch=3", "task.n_steps=16", "task.n_epochs=2",
        "trainer.max_epochs=2", "data.val_episodes=4", "data.test_episodes=6", "callbacks.early_stopping=null"]


class Corridor(gym.Env):
    """Ten steps to a time limit. Discrete: action 1 earns 1, action 0 nothing (best return 10). Continuous: each
    step earns -(a - 0.5)^2 (best return 0; the untrained deterministic policy's action 0 earns -2.5)."""

    def __init__(self, continuous: bool = False):
        self.continuous = continuous
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        # (wide bounds: a Gaussian of std 1 clipped to narrow ones earns most far outside them)
        self.action_space = gym.spaces.Box(-3.0, 3.0, (1,), dtype=np.float32) if continuous else \
            gym.spaces.Discrete(2)
        self.t = 0

    def _obs(self):
        return np.array([1.0, self.t / 10], dtype=np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        reward = -float((np.asarray(action).item() - 0.5) ** 2) if self.continuous else float(action)
        return self._obs(), reward, False, False, {}


for name, continuous in (("GradlabCorridor-v0", False), ("GradlabCorridorContinuous-v0", True)):
    if name not in gym.registry:
        gym.register(id=name, entry_point=Corridor, max_episode_steps=10, kwargs={"continuous": continuous})


# -- the algorithm, by hand ------------------------------------------------------------------------------
def test_gae_stops_at_a_terminal_step_and_bootstraps_only_on_truncation():
    from src.tasks.rl import gae

    # one environment, four steps: the episode terminates at step 1; a new one starts at 2 and is truncated at 3,
    # where its last observation is worth 0.7
    rewards = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
    values = torch.tensor([[0.5], [0.4], [0.3], [0.2]])
    next_values = torch.tensor([[0.4], [123.0], [0.2], [0.7]])  # 123: the next episode's, never to be used
    terminated = torch.tensor([[False], [True], [False], [False]])
    truncated = torch.tensor([[False], [False], [False], [True]])
    adv, returns = gae(rewards, values, next_values, terminated, truncated, gamma=0.9, lam=0.8)
    a3 = 1 + 0.9 * 0.7 - 0.2  # bootstrapped from the truncated episode's last observation
    a2 = (1 + 0.9 * 0.2 - 0.3) + 0.9 * 0.8 * a3
    a1 = 1 - 0.4  # terminal: no future, and nothing from the next episode
    a0 = (1 + 0.9 * 0.4 - 0.5) + 0.9 * 0.8 * a1
    assert torch.allclose(adv[:, 0], torch.tensor([a0, a1, a2, a3]), atol=1e-6)
    assert torch.allclose(returns, adv + values)


def test_ppo_clips_the_ratio_and_a2c_does_not():
    from src.tasks.rl import policy_loss

    old = torch.zeros(3)
    new = torch.log(torch.tensor([0.5, 1.0, 1.5])).requires_grad_()  # ratios 0.5, 1.0, 1.5
    adv = torch.tensor([1.0, -1.0, 1.0])
    loss, stats = policy_loss(new, old, adv, clip_range=0.2)
    # min(r A, clip(r) A) per step, negated: 0.5 (below the clip, but the unclipped term is smaller), -1, 1.2 clipped
    assert abs(loss.item() - (-0.5 + 1.0 - 1.2) / 3) < 1e-6
    assert abs(float(stats["clip_fraction"]) - 2 / 3) < 1e-6
    loss.backward()
    assert torch.allclose(new.grad, torch.tensor([-0.5, 1.0, 0.0]) / 3, atol=1e-6)  # the clipped step: no gradient
    new.grad = None
    loss, _ = policy_loss(new, old, adv, clip_range=None)  # A2C: -A log pi
    loss.backward()
    assert torch.allclose(new.grad, -adv / 3)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_recurrent_policy_gives_the_same_outputs_step_by_step_and_over_a_sequence(cell):
    from src.models.policy import ActorCritic

    torch.manual_seed(0)
    net = ActorCritic(3, {"kind": "discrete", "n": 2}, recurrent=cell, rnn_hidden=8, hidden=[8, 8])
    T, B = 7, 3
    obs = torch.randn(T, B, 3)
    starts = torch.zeros(T, B, dtype=torch.bool)
    starts[0] = True
    starts[4, 1] = True  # environment 1's episode ends after step 3
    whole, values, last = net(obs, net.initial_state(B), starts)
    state, steps = net.initial_state(B), []
    for t in range(T):
        params, _, state = net(obs[t], state, starts[t])
        steps.append(params)
    assert torch.allclose(torch.stack(steps), whole, atol=1e-6) and torch.allclose(state, last, atol=1e-6)
    # at an episode's start the state is reset: the same as a fresh state on the same observations
    fresh, _, _ = net(obs[4:, 1:2], net.initial_state(1), starts[4:, 1:2])
    assert torch.allclose(fresh, whole[4:, 1:2], atol=1e-6)
    assert not torch.allclose(whole[4:, 0], fresh[:, 0], atol=1e-3)  # (environment 0 carried its state on)


# -- whole runs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("env,algorithm,extra,target", [
    ("GradlabCorridor-v0", "ppo", [], 9.5),
    ("GradlabCorridor-v0", "a2c", ["task.n_steps=10", "optimizer.lr=3e-3"], 9.5),
    ("GradlabCorridorContinuous-v0", "ppo", ["task.normalize_reward=true"], -0.5),
    ("GradlabCorridorContinuous-v0", "a2c", ["task.n_steps=10", "optimizer.lr=1e-2"], -0.5),
])
def test_each_algorithm_learns_a_small_environment_quickly(tmp_path, env, algorithm, extra, target):
    """Random play earns about 5 (discrete), the untrained deterministic policy -2.5 (continuous); both algorithms
    must come close to the best (10; 0)."""
    metrics = train_here(tmp_path, *TINY, f"data.env_id={env}", f"task.algorithm={algorithm}",
                         "data.updates_per_epoch=10", "trainer.max_epochs=3", "task.n_epochs=4", *extra)
    assert metrics["test/return_mean"] > target, metrics


def test_a_seeded_run_repeats_exactly(tmp_path):
    first = train_here(tmp_path / "a", *TINY, "seed=5")
    second = train_here(tmp_path / "b", *TINY, "seed=5")
    other = train_here(tmp_path / "c", *TINY, "seed=6")
    assert first == second and first != other
    weights = [torch.load(tmp_path / r / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
               for r in ("a", "b")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_environments_in_their_own_processes_give_the_same_run(tmp_path):
    """data.vectorization=async steps each copy in a process of its own: the same seeds, the same episodes."""
    sync = train_here(tmp_path / "sync", *TINY, "trainer.max_epochs=1")
    assert train_here(tmp_path / "async", *TINY, "trainer.max_epochs=1", "data.vectorization=async") == sync


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_epoch_and_ends_as_an_uninterrupted_one(tmp_path):
    args = [*TINY, "trainer.max_epochs=3", "seed=3"]
    whole = train_here(tmp_path / "whole", *args)
    run = tmp_path / "killed"
    # 3 rollouts an epoch, 2 optimiser steps each: global step 8 is the second rollout of the second epoch
    killed = run_script("train.py", *QUICK, *args, f"hydra.run.dir={run}",
                        "+callbacks.kill._target_=tests.helpers.KillAt", "+callbacks.kill.step=8", check=False)
    assert killed.returncode != 0 and not (run / "metrics.json").exists()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 0
    resumed = run_script("train.py", *QUICK, *args, f"hydra.run.dir={run}", "ckpt_path=last")
    assert resumed.returncode == 0
    assert json.loads((run / "metrics.json").read_text()) == whole


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    run = tmp_path_factory.mktemp("agent")
    metrics = train_here(run, *TINY)
    return run, metrics


def test_a_run_leaves_its_return_curve_and_the_field_s_metrics(agent):
    run, metrics = agent
    assert set(metrics) >= {"test/return_mean", "test/return_std", "test/episode_len"}
    assert (run / "returns.png").stat().st_size > 5000
    logged = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for key in ("train/entropy", "train/approx_kl", "train/clip_fraction", "train/explained_variance",
                "train/env_steps_per_s", "train/episode_return", "val/return_mean"):
        assert key in logged, key


def test_eval_and_predict_play_the_trained_agent(agent, tmp_path):
    run, metrics = agent
    (best,) = (run / "checkpoints").glob("best-*.ckpt")  # what the run tested: the same episodes, the same return
    assert eval_here(tmp_path / "eval", best) == {k: v for k, v in metrics.items() if k.startswith("test/")}
    ckpt = run / "checkpoints" / "last.ckpt"
    played = predict_here(ckpt, "episodes=3")
    assert len(played) == 3 and all(p["length"] >= 1 and p["return"] == p["length"] for p in played)  # CartPole
    assert predict_here(ckpt, f"input={played[1]['input']}") == [played[1]]  # an episode is its seed's
    gif = tmp_path / "episode.gif"
    (drawn,) = predict_here(ckpt, "episodes=1", "render=true", f"render_path={gif}")
    from PIL import Image

    with Image.open(gif) as image:
        # (a GIF keeps one of identical frames in a row)
        assert drawn["frames"] == drawn["length"] and 1 < image.n_frames <= drawn["frames"] and image.size[0] > 100


@pytest.mark.parametrize("args,words", [
    (["data.env_id=CartPole-v9"], "data.env_id=CartPole-v9"),
    (["data.env_id=Pendulum-v1", "model.head=categorical"], "model.head=categorical cannot act"),
    (["task.algorithm=reinforce"], "task.algorithm=reinforce: choose one of ppo, a2c"),
    (["model=recurrent_actor_critic", "task.minibatches=3"], "data.num_envs=8 must divide by it"),
    (["task.gamma=1.5"], "task.gamma=1.5 should be from 0 to 1"),
    (["data.vectorization=threads"], "data.vectorization=threads: choose sync"),
])
def test_a_bad_rl_config_is_one_line_naming_the_key(tmp_path, args, words):
    code, _, err = cli("train.py", "task=rl", *args, f"hydra.run.dir={tmp_path}")
    assert code == 2 and words in err and "Traceback" not in err, err


def test_render_without_pygame_says_how_to_get_it(agent, monkeypatch):
    import importlib.util

    from src.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pygame" else real(name, *a))
    run, _ = agent
    with pytest.raises(UserError, match="render=true needs pygame.*uv sync --extra render"):
        predict_here(run / "checkpoints" / "last.ckpt", "episodes=1", "render=true")
