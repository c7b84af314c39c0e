"""gradlab's PPO against Stable-Baselines3's, side by side in one process, on the same budget of environment steps.

    uv sync --group bench                                  # stable-baselines3 and sb3-contrib: this benchmark only
    python benchmarks/rl_vs_sb3.py                         # CartPole-v1, seeds 1 2 3, 102,400 steps each
    python benchmarks/rl_vs_sb3.py --novel                 # CartPoleNoVel-v1: gradlab's GRU and MLP policies, and
                                                           # sb3-contrib's RecurrentPPO (LSTM)

Both use rl-zoo3's tuned PPO hyperparameters for the environment (8 environments, 32 steps each per rollout, one
minibatch of 256, 20 epochs, gamma 0.98, GAE lambda 0.8, learning rate and clip range 1e-3 and 0.2 decaying linearly
to 0, no entropy bonus; for CartPoleNoVel-v1 also observations normalised, and for RecurrentPPO rewards too, with
rl-zoo3's LSTM of 64), one torch thread, and the same evaluation: every 10,240 steps (gradlab: each epoch), 20
deterministic episodes on gradlab's validation seeds. The seeds alternate between the two (gradlab seed 1, SB3 seed 1,
gradlab seed 2, ...), so that the machine's noise falls on both.

Reported for each run: the environment steps and the wall time of training (evaluation excluded, process start-up
excluded) until an evaluation first reaches a mean of 475, and the mean of 100 deterministic episodes on gradlab's
test seeds after the whole budget (the final policy, not the best evaluated one). Then the medians and the ratio of
the wall times (gradlab / SB3). Steps repeat bit for bit for a seed on one machine; wall times vary.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THRESHOLD = 475.0
EVAL_EVERY = 10_240
ZOO = dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0)  # rl-zoo3 CartPole


def _episodes(policy_act, env_id: str, seeds: list[int]) -> list[float]:
    """Deterministic episodes, one per seed, with a function obs -> action (one env at a time: simple and fair)."""
    import gymnasium as gym

    from src.data.env.gym import _register

    _register()
    env = gym.make(env_id)
    out = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        state, start, total, done = None, True, 0.0, False
        while not done:
            action, state = policy_act(obs, state, start)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done, start = terminated or truncated, False
        out.append(total)
    env.close()
    return out


def run_gradlab(env_id: str, seed: int, steps: int, model: str) -> dict:
    """train.py task=rl in this process, timed by a callback around each epoch's evaluation."""
    import lightning as L
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from src import pipeline
    from src.data.env.gym import TEST_SEEDS

    record = {"evals": []}

    class Clock(L.Callback):
        def on_train_start(self, trainer, pl_module):
            record["start"], record["eval_s"] = time.perf_counter(), 0.0

        def on_validation_start(self, trainer, pl_module):
            record["eval_began"] = time.perf_counter()

        def on_validation_end(self, trainer, pl_module):
            now = time.perf_counter()
            record["eval_s"] += now - record["eval_began"]
            mean = float(trainer.callback_metrics["val/return_mean"])
            record["evals"].append((pl_module.env_steps, record["eval_began"] - record["start"] -
                                    (record["eval_s"] - (now - record["eval_began"])), mean))

    out = Path(tempfile.mkdtemp(prefix="rl-gradlab-"))
    epochs = steps // EVAL_EVERY
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            "task=rl", f"model={model}", f"data.env_id={env_id}", f"seed={seed}", f"trainer.max_epochs={epochs}",
            "trainer.accelerator=cpu", "callbacks.early_stopping=null", "callbacks.model_checkpoint=null",
            "callbacks.progress_bar=null", "callbacks.model_summary=null", "trainer.enable_model_summary=false",
            "trainer.enable_progress_bar=false", "test=false"], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.callbacks.clock = {"_target_": f"{__name__}.Clock"}
    globals()["Clock"] = Clock
    pipeline.train(cfg)
    from src.checkpoint import load_task

    task = load_task(str(out / "checkpoints" / "last.ckpt")).eval()
    import torch

    def act(obs, state, start):
        with torch.no_grad():
            params, _, state = task.net(torch.as_tensor(obs, dtype=torch.float32)[None], state,
                                        torch.tensor([start]))
        action = task.net.greedy(params)[0].numpy()
        return (int(action) if task.net.kind == "discrete" else action), state

    record["final"] = _episodes(act, env_id, list(range(TEST_SEEDS, TEST_SEEDS + 100)))
    return record


def run_sb3(env_id: str, seed: int, steps: int, recurrent: bool) -> dict:
    """Stable-Baselines3 PPO (sb3-contrib RecurrentPPO) with rl-zoo3's hyperparameters, evaluated as gradlab is."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.utils import get_linear_fn

    from src.data.env.gym import TEST_SEEDS, VAL_SEEDS, _register

    _register()
    record = {"evals": []}

    def act_of(model):
        def act(obs, state, start):
            import numpy as np

            if recurrent:  # observations as the policy saw them in training (VecNormalize's statistics, frozen)
                obs = model.get_env().normalize_obs(obs)
                action, state = model.predict(obs, state=state, episode_start=np.array([start]), deterministic=True)
            else:
                action, _ = model.predict(obs, deterministic=True)
            return (int(action) if action.ndim == 0 else action), state
        return act

    class Clock(BaseCallback):
        def _on_training_start(self):
            record["start"], record["eval_s"], record["next"] = time.perf_counter(), 0.0, EVAL_EVERY

        def _on_step(self):
            return True

        def _on_rollout_start(self):  # after an update, as gradlab evaluates after its epoch's last update
            self._evaluate()

        def _on_training_end(self):
            self._evaluate()

        def _evaluate(self):
            if self.num_timesteps >= record["next"]:
                record["next"] += EVAL_EVERY
                began = time.perf_counter()
                mean = statistics.mean(_episodes(act_of(self.model), env_id, list(range(VAL_SEEDS, VAL_SEEDS + 20))))
                record["evals"].append((self.num_timesteps, began - record["start"] - record["eval_s"], mean))
                record["eval_s"] += time.perf_counter() - began

    env = make_vec_env(env_id, n_envs=8, seed=seed)
    if recurrent:  # rl-zoo3's CartPoleNoVel-v1 settings normalise observations and rewards (VecNormalize)
        from stable_baselines3.common.vec_env import VecNormalize

        env = VecNormalize(env, gamma=ZOO["gamma"])
    schedule = dict(learning_rate=get_linear_fn(1e-3, 0.0, 1.0), clip_range=get_linear_fn(0.2, 0.0, 1.0))
    if recurrent:
        from sb3_contrib import RecurrentPPO

        model = RecurrentPPO("MlpLstmPolicy", env, seed=seed, device="cpu", verbose=0, **ZOO, **schedule,
                             policy_kwargs=dict(ortho_init=False, activation_fn=__import__("torch").nn.ReLU,
                                                lstm_hidden_size=64, enable_critic_lstm=True,
                                                net_arch=dict(pi=[64], vf=[64])))
    else:
        from stable_baselines3 import PPO

        model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **ZOO, **schedule)
    model.learn(total_timesteps=steps, callback=Clock())
    record["final"] = _episodes(act_of(model), env_id, list(range(TEST_SEEDS, TEST_SEEDS + 100)))
    return record


def summary(name: str, seed: int, record: dict) -> dict:
    reached = next(((s, t) for s, t, m in record["evals"] if m >= THRESHOLD), (None, None))
    final = statistics.mean(record["final"])
    row = {"who": name, "seed": seed, "steps_to_475": reached[0], "seconds_to_475": reached[1], "final_100": final,
           "evals": [round(m, 1) for _, _, m in record["evals"]]}
    when = "never" if reached[0] is None else f"{reached[0]:>7,} steps {reached[1]:7.1f} s"
    print(f"{name:26s} seed {seed}: 475 reached at {when}; final 100 episodes {final:6.1f}; evaluations "
          f"{row['evals']}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=102_400)
    parser.add_argument("--novel", action="store_true", help="CartPoleNoVel-v1: recurrent policies, and an MLP")
    parser.add_argument("--sb3-seeds", type=int, default=None,
                        help="run SB3 for the first N seeds only (sb3-contrib's RecurrentPPO takes several minutes a "
                             "run here)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import logging

    import torch

    torch.set_num_threads(1)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("src").setLevel(logging.WARNING)
    env_id = "CartPoleNoVel-v1" if args.novel else "CartPole-v1"
    ways = ([("gradlab PPO, GRU", lambda s: run_gradlab(env_id, s, args.steps, "recurrent_actor_critic")),
             ("sb3-contrib RecurrentPPO", lambda s: run_sb3(env_id, s, args.steps, recurrent=True)),
             ("gradlab PPO, MLP", lambda s: run_gradlab(env_id, s, args.steps, "actor_critic"))] if args.novel else
            [("gradlab PPO", lambda s: run_gradlab(env_id, s, args.steps, "actor_critic")),
             ("SB3 PPO", lambda s: run_sb3(env_id, s, args.steps, recurrent=False))])
    print(f"{env_id}, {args.steps:,} steps per run, seeds {args.seeds}, torch threads 1")
    rows = []
    for i, seed in enumerate(args.seeds):
        for name, run in ways:
            if "gradlab" in name or args.sb3_seeds is None or i < args.sb3_seeds:
                rows.append(summary(name, seed, run(seed)))
    print()
    medians = {}
    for name, _ in ways:
        mine = [r for r in rows if r["who"] == name]
        if not mine:
            continue
        times = [r["seconds_to_475"] for r in mine if r["seconds_to_475"] is not None]
        steps = [r["steps_to_475"] for r in mine if r["steps_to_475"] is not None]
        finals = [r["final_100"] for r in mine]
        medians[name] = statistics.median(times) if len(times) == len(mine) else None
        median_steps = statistics.median(steps) if steps else 0
        median_time = statistics.median(times) if times else float("nan")
        print(f"{name:26s} reached 475 in {len(times)}/{len(mine)} runs; median {median_steps:,.0f} steps, "
              f"{median_time:.1f} s; final 100-episode means {[round(f, 1) for f in finals]}")
    names = [n for n, _ in ways]
    if medians.get(names[0]) and medians.get(names[1]):
        print(f"wall time to 475, {names[0]} / {names[1]}: {medians[names[0]] / medians[names[1]]:.2f}x")


if __name__ == "__main__":
    main()
