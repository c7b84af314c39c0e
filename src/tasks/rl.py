"""Reinforcement learning by policy gradient (task=rl): PPO (Schulman et al., 2017) and A2C (Mnih et al., 2016) on
gymnasium environments, with an MLP or a recurrent actor-critic (src/models/policy.py).

Lightning's manual optimisation: one training step is one iteration of the algorithm, collect a rollout of n_steps
in each of the data's num_envs environments with the current policy, then update on it (PPO: n_epochs passes of
minibatches; A2C: one step). An on-policy rollout must come from the policy of that moment, which a DataLoader
prefetching ahead (or in worker processes) would not give; and PPO's several optimiser steps per rollout are one
`training_step` in CleanRL's and SB3's loops too. The data module's training "batches" are the iteration numbers;
its validation and test batches are seeds of evaluation episodes (src/data/env/gym.py).

Scored: the mean return of deterministic-policy episodes on seeds never used in training (val/return_mean after each
epoch selects checkpoints; the test is 100 episodes: test/return_mean, test/return_std, test/episode_len). Logged each
iteration: the return and length of the episodes that ended in it, entropy, approximate KL, clip fraction, explained
variance, the losses, learning rate and clip range, and environment steps per second.

Exact resume: the environments and the task's own random generator (actions, minibatch order) are reset at each
epoch's start from (seed, epoch), so a run resumed from an epoch's checkpoint repeats the uninterrupted one (tested).
Not restored: the episodes in progress at a mid-epoch stop (SIGTERM), whose epoch restarts its environments; the
observation and reward statistics are buffers of the checkpoint, and are restored.
"""
from __future__ import annotations

import io
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from src.data.env.gym import make_envs, train_seed
from src.errors import UserError
from src.models.policy import RunningNorm
from src.tasks.base import HasCurves, Renders, Task, gather_objects

ALGORITHMS = ("ppo", "a2c")


def gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
        truncated: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over (T, N) steps -> (advantages, returns = advantages + values).

    next_values[t]: the value of the state after step t (at an episode's truncation, of its last observation, not
    of the next episode's first). A terminal step has no future (next value 0); a truncated one bootstraps from its
    next value; neither passes advantage back across the episode boundary."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    ends = (terminated | truncated).to(rewards.dtype)
    alive = 1.0 - terminated.to(rewards.dtype)
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * next_values[t] * alive[t] - values[t]
        running = delta + gamma * lam * (1.0 - ends[t]) * running
        advantages[t] = running
    return advantages, advantages + values


def policy_loss(new_logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                clip_range: float | None) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate (clip_range a number) or the plain policy gradient (None: A2C), to minimise; with the
    ratio's statistics (approximate KL (r - 1) - log r, clip fraction)."""
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    with torch.no_grad():
        stats = {"approx_kl": ((ratio - 1) - log_ratio).mean(),
                 "clip_fraction": ((ratio - 1).abs() > clip_range).float().mean() if clip_range else
                 torch.zeros(())}
    if clip_range is None:
        return -(advantages * new_logp).mean(), stats
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    return torch.max(unclipped, clipped).mean(), stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    var = returns.var()
    return float("nan") if var == 0 else float(1 - (returns - values).var() / var)


class PolicyGradient(Task, HasCurves, Renders):
    """algorithm: ppo or a2c. gamma, gae_lambda: the discount and GAE's lambda. n_steps: steps per environment in a
    rollout. n_epochs, minibatches: PPO's passes over a rollout and the minibatches of each (a recurrent policy's
    minibatches are whole environments' sequences). clip_range: PPO's clip; lr_anneal, clip_anneal: both decay
    linearly to 0 over the run's iterations. ent_coef, vf_coef: the entropy bonus and value loss weights.
    max_grad_norm: gradient clipping. normalize_advantage: per minibatch. normalize_reward: divide rewards by a
    running standard deviation of the discounted return (as SB3's VecNormalize). target_kl: stop an update's
    epochs early when the approximate KL passes 1.5x this (null: never). seed: the run's (the training
    environments' seeds come from it and the epoch)."""

    def __init__(self, *args, algorithm: str = "ppo", gamma: float = 0.99, gae_lambda: float = 0.95,
                 n_steps: int = 128, n_epochs: int = 10, minibatches: int = 4, clip_range: float = 0.2,
                 lr_anneal: bool = True, clip_anneal: bool = True, ent_coef: float = 0.0, vf_coef: float = 0.5,
                 max_grad_norm: float = 0.5, normalize_advantage: bool = True, normalize_reward: bool = False,
                 target_kl: float | None = None, seed: int | None = 0, **kwargs):
        if algorithm not in ALGORITHMS:
            raise UserError(f"task.algorithm={algorithm}: choose one of {', '.join(ALGORITHMS)}.")
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False
        self.algorithm, self.gamma, self.gae_lambda = algorithm, gamma, gae_lambda
        self.n_steps, self.n_epochs, self.minibatches = int(n_steps), int(n_epochs), int(minibatches)
        num_envs = int(self.data_info["num_envs"])
        if self.net.recurrent and num_envs % self.minibatches:
            raise UserError(f"task.minibatches={minibatches}: a recurrent policy's minibatches are whole "
                            f"environments, so data.num_envs={num_envs} must divide by it.")
        self.clip_range, self.lr_anneal, self.clip_anneal = clip_range, lr_anneal, clip_anneal
        self.ent_coef, self.vf_coef, self.max_grad_norm = ent_coef, vf_coef, max_grad_norm
        self.normalize_advantage, self.target_kl, self.seed = normalize_advantage, target_kl, seed
        self.return_norm = RunningNorm(1) if normalize_reward else None
        self.envs = None
        self.curves: dict[str, list] = {"train": [], "val": []}  # (env step, return) of each episode; val means
        self.env_steps = 0
        self._eval: list[tuple[float, int]] = []

    def model_kwargs(self):
        return {"obs_dim": self.data_info["obs_dim"], "action": self.data_info["action"]}

    # -- environments ----------------------------------------------------------------------------------
    def on_train_epoch_start(self):
        """Fresh episodes from (seed, epoch): what makes a resumed run repeat an uninterrupted one."""
        if self.envs is None:
            self.envs = make_envs(self.data_info, int(self.data_info["num_envs"]),
                                  self.data_info.get("vectorization", "sync"))
        seed = train_seed(self.seed, self.current_epoch)
        obs, _ = self.envs.reset(seed=seed)
        # the rollouts' and minibatches' own random numbers, from (seed, epoch): nothing else that draws from
        # torch's generator (a DataLoader starting, a callback) changes them, so a resumed epoch repeats
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        n = obs.shape[0]
        self.obs = torch.as_tensor(obs, dtype=torch.float32)
        self.starts = torch.ones(n, dtype=torch.bool)
        self.state = self.net.initial_state(n)
        self.episode_return = np.zeros(n)
        self.episode_length = np.zeros(n, dtype=np.int64)
        self.discounted = np.zeros(n)  # the running discounted return, for reward normalisation

    def on_train_end(self):
        if self.envs is not None:
            self.envs.close()
            self.envs = None

    def _act(self, params: torch.Tensor, actions: torch.Tensor) -> np.ndarray:
        """The policy's actions as the environment takes them (a Box's clipped to its bounds)."""
        a = actions.cpu().numpy()
        if self.net.kind == "continuous":
            spec = self.data_info["action"]
            a = np.clip(a, spec["low"], spec["high"])
        return a

    @torch.no_grad()
    def collect(self) -> dict:
        """n_steps in each environment with the current policy (sampled actions) -> the rollout, on this device."""
        net, T, n = self.net, self.n_steps, self.obs.shape[0]
        device = self.device
        buf = {k: [] for k in ("obs", "actions", "logp", "values", "rewards", "terminated", "truncated", "starts",
                               "next_values")}
        first_state = None if self.state is None else self.state.clone()
        finished = []
        for _ in range(T):
            if net.norm is not None:
                net.norm.update(self.obs)
            x = net.normalize(self.obs)
            params, value, state = net(x.to(device), self._to(self.state), self.starts.to(device), normalized=True)
            action, logp = net.sample(params, self.generator)
            obs, reward, terminated, truncated, info = self.envs.step(self._act(params, action))
            ends = terminated | truncated
            self.episode_return += reward
            self.episode_length += 1
            self.env_steps += n
            next_value = torch.zeros(n, device=device)
            if truncated.any():  # bootstrap from the truncated episode's last observation, with its own state
                rows = np.flatnonzero(truncated)
                final = torch.as_tensor(np.stack(info["final_obs"][rows]), dtype=torch.float32)
                _, v, _ = net(net.normalize(final).to(device), net.select_state(state, rows), None, normalized=True)
                next_value[torch.as_tensor(rows, device=device)] = v
            if self.return_norm is not None:
                self.discounted = self.discounted * self.gamma + reward
                self.return_norm.update(torch.as_tensor(self.discounted)[:, None])
                self.discounted[ends] = 0.0
                reward = np.clip(reward / math.sqrt(float(self.return_norm.var) + 1e-8), -10, 10)
            for i in np.flatnonzero(ends):
                finished.append((float(self.episode_return[i]), int(self.episode_length[i])))
                self.curves["train"].append((self.env_steps, float(self.episode_return[i])))
            self.episode_return[ends], self.episode_length[ends] = 0.0, 0
            for key, v in (("obs", x), ("actions", action), ("logp", logp), ("values", value),
                           ("rewards", torch.as_tensor(reward, dtype=torch.float32)),
                           ("terminated", torch.as_tensor(terminated)), ("truncated", torch.as_tensor(truncated)),
                           ("starts", self.starts), ("next_values", next_value)):
                buf[key].append(v.to(device))
            self.obs = torch.as_tensor(obs, dtype=torch.float32)
            self.starts = torch.as_tensor(ends)
            self.state = None if state is None else state.cpu()
        # the value after the last step: the next step's first value (for steps that did not end an episode)
        _, last_value, _ = net(net.normalize(self.obs).to(device), self._to(self.state), self.starts.to(device),
                               normalized=True)
        rollout = {k: torch.stack(v) for k, v in buf.items()}
        following = torch.cat([rollout["values"][1:], last_value[None]])
        rollout["next_values"] = torch.where(rollout["truncated"], rollout["next_values"], following)
        rollout["advantages"], rollout["returns"] = gae(rollout["rewards"], rollout["values"], rollout["next_values"],
                                                        rollout["terminated"], rollout["truncated"], self.gamma,
                                                        self.gae_lambda)
        rollout["first_state"] = self._to(first_state)
        rollout["finished"] = finished
        return rollout

    def _to(self, state):
        return None if state is None else state.to(self.device)

    # -- one iteration: a rollout, then the update -------------------------------------------------------
    def _progress(self, batch_idx: int) -> float:
        """The fraction of the run's rollouts done before this one (from the epoch and the batch: a resumed run
        counts as the uninterrupted one did)."""
        per_epoch = int(self.trainer.num_training_batches)
        total = max(1, int(self.trainer.max_epochs) * per_epoch)
        return min(1.0, (self.current_epoch * per_epoch + batch_idx) / total)

    def training_step(self, batch, batch_idx):
        started = time.perf_counter()
        rollout = self.collect()
        optimizer = self.optimizers()
        left = 1.0 - self._progress(batch_idx)
        base_lr = float(self.hparams.optimizer["lr"])
        lr = base_lr * left if self.lr_anneal else base_lr
        for group in optimizer.param_groups:
            group["lr"] = lr
        clip = None
        if self.algorithm == "ppo":
            clip = self.clip_range * left if self.clip_anneal else self.clip_range
            clip = max(clip, 1e-8)
        stats = self.update(rollout, optimizer, clip)
        seconds = time.perf_counter() - started
        steps = self.n_steps * rollout["rewards"].shape[1]
        logged = {**stats, "lr": lr, "env_steps": float(self.env_steps), "env_steps_per_s": steps / seconds,
                  "explained_variance": explained_variance(rollout["values"].flatten(), rollout["returns"].flatten())}
        if clip is not None:
            logged["clip_range"] = clip
        if rollout["finished"]:
            returns, lengths = zip(*rollout["finished"])
            logged["episode_return"] = float(np.mean(returns))
            logged["episode_len"] = float(np.mean(lengths))
            self.log("train/episode_return", logged.pop("episode_return"), prog_bar=True, on_step=True,
                     on_epoch=False, batch_size=1)
        self.log_dict({f"train/{k}": float(v) for k, v in logged.items()}, on_step=True, on_epoch=False,
                      batch_size=1)
        return torch.as_tensor(stats["loss"])  # the update's mean loss (GradientHealth stops a NaN run)

    def _minibatches(self, rollout) -> list:
        """PPO: the rollout in `minibatches` random parts (one: all of it); A2C: all of it. A recurrent policy's parts
        are whole environments' sequences, a feed-forward one's are steps."""
        T, N = rollout["rewards"].shape
        kind, size = ("envs", N) if self.net.recurrent else ("steps", T * N)
        if self.algorithm == "a2c" or self.minibatches == 1:
            return [(kind, None)]
        order = torch.randperm(size, device=self.device, generator=self.generator)
        return [(kind, idx) for idx in order.chunk(self.minibatches)]

    def _evaluate(self, rollout, kind: str, idx: torch.Tensor | None):
        """New log-probabilities, entropies and values of a minibatch's stored actions (idx: its environments or
        steps; None: all), and its stored log-probabilities, advantages and returns, flat."""
        net = self.net
        if kind == "envs":
            every = idx is None
            state = rollout["first_state"] if every else net.select_state(rollout["first_state"], idx)
            pick = (lambda key: rollout[key]) if every else (lambda key: rollout[key][:, idx])  # noqa: E731
            params, values, _ = net(pick("obs"), state, pick("starts"), normalized=True)
        else:
            flat = {k: rollout[k].flatten(0, 1) for k in ("obs", "actions", "logp", "advantages", "returns")}
            pick = (lambda key: flat[key]) if idx is None else (lambda key: flat[key][idx])  # noqa: E731
            params, values, _ = net(pick("obs"), normalized=True)
        logp, entropy = net.evaluate_actions(params, pick("actions"))
        return (logp.flatten(), entropy.flatten(), values.flatten(), pick("logp").flatten(),
                pick("advantages").flatten(), pick("returns").flatten())

    def update(self, rollout: dict, optimizer, clip: float | None) -> dict:
        sums: dict[str, torch.Tensor] = {}
        count = 0
        epochs = self.n_epochs if self.algorithm == "ppo" else 1
        for _ in range(epochs):
            stop = False
            for kind, idx in self._minibatches(rollout):
                new_logp, entropy, values, old_logp, adv, returns = self._evaluate(rollout, kind, idx)
                if self.normalize_advantage and adv.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg, stats = policy_loss(new_logp, old_logp, adv, clip)
                value_loss = F.mse_loss(values, returns)
                entropy = entropy.mean()
                loss = pg + self.vf_coef * value_loss - self.ent_coef * entropy
                optimizer.zero_grad(set_to_none=True)
                self.manual_backward(loss)
                if self.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.max_grad_norm)
                optimizer.step()
                for key, value in (("policy_loss", pg), ("value_loss", value_loss), ("entropy", entropy),
                                   ("loss", loss), *stats.items()):
                    sums[key] = sums.get(key, 0.0) + value.detach()
                count += 1
                if self.target_kl is not None and float(stats["approx_kl"]) > 1.5 * self.target_kl:
                    stop = True
                    break
            if stop:
                break
        return {k: float(v) / count for k, v in sums.items()}

    # -- evaluation: deterministic episodes on their own seeds ------------------------------------------
    @torch.no_grad()
    def play(self, seeds: list[int], render: bool = False) -> tuple[list[float], list[int], list]:
        """One episode per seed with the deterministic policy -> returns, lengths (and, with render, the first
        episode's frames)."""
        net = self.net
        envs = make_envs(self.data_info, len(seeds), "sync", render=render)
        try:
            obs, _ = envs.reset(seed=[int(s) for s in seeds])
            n = len(seeds)
            state, starts = net.initial_state(n, self.device), torch.ones(n, dtype=torch.bool, device=self.device)
            done = np.zeros(n, dtype=bool)
            returns, lengths, frames = np.zeros(n), np.zeros(n, dtype=np.int64), []
            while not done.all():
                if render and not done[0]:
                    frames.append(envs.render()[0])  # each copy's frame; the first copy's episode is drawn
                params, _, state = net(torch.as_tensor(obs, dtype=torch.float32, device=self.device), state, starts)
                obs, reward, terminated, truncated, _ = envs.step(self._act(params, net.greedy(params)))
                returns += reward * ~done
                lengths += ~done
                ends = terminated | truncated
                done |= ends
                starts = torch.as_tensor(ends, device=self.device)
            return returns.tolist(), lengths.tolist(), frames
        finally:
            envs.close()

    def _eval_step(self, seeds):
        self.eval()
        returns, lengths, _ = self.play(seeds.tolist())
        self._eval += list(zip(returns, lengths))

    def _eval_end(self, split: str) -> None:
        results = gather_objects(self._eval)
        self._eval = []
        if not results:
            return
        returns = np.array([r for r, _ in results])
        metrics = {f"{split}/return_mean": float(returns.mean()), f"{split}/return_std": float(returns.std()),
                   f"{split}/episode_len": float(np.mean([n for _, n in results]))}
        self.log_dict(metrics, prog_bar=split == "val", batch_size=len(results))
        if split == "val" and not self.trainer.sanity_checking:
            self.curves["val"].append((self.env_steps, metrics["val/return_mean"]))

    def on_validation_epoch_start(self):
        self._eval = []

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_validation_epoch_end(self):
        self._eval_end("val")

    def on_test_epoch_start(self):
        self._eval = []

    def test_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_test_epoch_end(self):
        self._eval_end("test")

    def return_curves(self) -> dict[str, list]:
        return self.curves

    # -- checkpoints carry the curve and the step count ---------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["rl"] = {"curves": self.curves, "env_steps": self.env_steps}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("rl") or {}
        self.curves = {k: [tuple(x) for x in v] for k, v in (saved.get("curves") or self.curves).items()}
        self.env_steps = int(saved.get("env_steps", 0))

    # -- inference -------------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_batch(self, batch: torch.Tensor, top_k: int = 1, details: bool = False) -> list[dict]:
        """Episode seeds -> each episode's return and length under the deterministic policy."""
        self.eval()
        returns, lengths, _ = self.play(batch.tolist())
        return [{"return": round(r, 4), "length": int(n)} for r, n in zip(returns, lengths)]

    def render_episode(self, seed: int, path: str, fps: int = 30) -> dict:
        """One episode drawn by the environment (rgb_array) into a GIF at path."""
        import importlib.util

        if importlib.util.find_spec("pygame") is None:
            raise UserError("render=true needs pygame, gymnasium's drawing of these environments: run "
                            "`uv sync --extra render` (or `pip install pygame`).")
        from PIL import Image

        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # drawn off-screen: no display, no "XDG_RUNTIME_DIR" notes
        self.eval()
        returns, lengths, frames = self.play([seed], render=True)
        images = [Image.fromarray(f) for f in frames]
        buffer = io.BytesIO()
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps),
                       loop=0)
        with open(path, "wb") as f:
            f.write(buffer.getvalue())
        return {"return": round(returns[0], 4), "length": int(lengths[0]), "gif": str(path), "frames": len(images)}
