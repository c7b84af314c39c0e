"""Simulated environments as a task's data (task=rl): any registered gymnasium id (no download), run as N copies in
one vectorised environment (gymnasium.vector, sync or async).

The data of reinforcement learning is made by the policy itself, so this module does not hold examples. It checks
the environment and describes it (`info`: the id, the observation and action spaces), and its splits are what the
task is scored on: training yields one index per policy update (the task collects each rollout itself, with the
current policy: PPO and A2C are on-policy), validation and test yield the seeds of evaluation episodes. Seeds of the
three never meet: training environments draw theirs below 10**6 (from the run's seed and the epoch), validation
episodes use 10**6 + k, test episodes 2 * 10**6 + k, and predict.py's 3 * 10**6 + k.

`make_envs(info, n, ...)` is static, as `read_input` is for the other modalities: the task builds its environments from
a checkpoint's info, with no data module (eval.py, predict.py).

CartPoleNoVel-v1 is CartPole-v1 with its two velocities hidden (cart position and pole angle only), as rl-zoo3 names
it: a partially observed task where a policy needs memory.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from src.data.base import DataModule
from src.errors import UserError

VAL_SEEDS, TEST_SEEDS, PREDICT_SEEDS = 10**6, 2 * 10**6, 3 * 10**6


def _register() -> None:
    import gymnasium as gym

    if "CartPoleNoVel-v1" not in gym.registry:
        gym.register(id="CartPoleNoVel-v1", entry_point="src.data.env.gym:cartpole_no_velocity",
                     max_episode_steps=500, reward_threshold=475.0)


def cartpole_no_velocity(**kwargs):
    """CartPole-v1 observing (cart position, pole angle) only."""
    import gymnasium as gym
    import numpy as np

    env = gym.make("CartPole-v1", **kwargs).unwrapped  # the TimeLimit comes from this id's registration
    low, high = env.observation_space.low[[0, 2]], env.observation_space.high[[0, 2]]
    return gym.wrappers.TransformObservation(env, lambda obs: obs[[0, 2]].astype(np.float32),
                                             gym.spaces.Box(low, high, dtype=np.float32))


def _spaces(env_id: str, options: dict) -> dict:
    """The environment's description for the task and the checkpoint: JSON-ready."""
    import gymnasium as gym

    _register()
    try:
        env = gym.make(env_id, **options)
    except gym.error.Error as e:  # unknown id, wrong version, missing extra
        known = sorted(i for i in gym.registry if "/" not in i and not i.startswith("phys2d"))[:60]
        raise UserError(f"data.env_id={env_id}: {e}. Registered ids include: {', '.join(known)}.") from None
    except TypeError as e:
        raise UserError(f"data.env_options={options}: {env_id} does not take them ({e}).") from None
    obs, act = env.observation_space, env.action_space
    spec = env.spec
    env.close()
    if not isinstance(obs, gym.spaces.Box) or len(obs.shape) != 1:
        raise UserError(f"data.env_id={env_id}: its observations are {obs}; task=rl takes a flat Box of numbers.")
    if isinstance(act, gym.spaces.Discrete):
        action = {"kind": "discrete", "n": int(act.n)}
    elif isinstance(act, gym.spaces.Box) and len(act.shape) == 1:
        action = {"kind": "continuous", "dim": int(act.shape[0]), "low": act.low.tolist(), "high": act.high.tolist()}
    else:
        raise UserError(f"data.env_id={env_id}: its actions are {act}; task=rl takes Discrete or a flat Box.")
    return {"env_id": env_id, "env_options": dict(options), "obs_dim": int(obs.shape[0]), "action": action,
            "max_episode_steps": spec.max_episode_steps if spec else None,
            "reward_threshold": spec.reward_threshold if spec else None}


def make_envs(info: dict, n: int, vectorization: str = "sync", render: bool = False):
    """n copies of the checkpoint's environment in one vector environment that resets a finished copy in the same
    step (its last observation in info["final_obs"]), as PPO's bootstrapping on truncation needs."""
    import gymnasium as gym

    _register()
    kwargs = dict(info.get("env_options") or {})
    if render:
        kwargs["render_mode"] = "rgb_array"
    return gym.make_vec(info["env_id"], num_envs=n, vectorization_mode=vectorization,
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}, **kwargs)


def train_seed(seed: int | None, epoch: int) -> int:
    """The seed of the training environments at the start of an epoch: below VAL_SEEDS, from (seed, epoch)."""
    return ((seed or 0) * 7919 + epoch * 104_729) % VAL_SEEDS


class GymDataModule(DataModule):
    """env_id: a gymnasium id (CartPole-v1, Acrobot-v1, MountainCar-v0, Pendulum-v1, CartPoleNoVel-v1, ...);
    env_options: keyword arguments of gymnasium.make. num_envs copies, vectorization sync or async, collect the
    training rollouts; updates_per_epoch rollouts (and updates) make an epoch, after which val_episodes episodes
    (on their own seeds, the deterministic policy) give val/return_mean; the test is test_episodes episodes."""

    def __init__(self, env_id: str = "CartPole-v1", env_options: dict | None = None, num_envs: int = 8,
                 vectorization: str = "sync", updates_per_epoch: int = 40, val_episodes: int = 20,
                 test_episodes: int = 100, eval_envs: int = 50, data_dir: str | None = None,
                 cache_dir: str | None = None):
        super().__init__()
        if vectorization not in ("sync", "async"):
            raise UserError(f"data.vectorization={vectorization}: choose sync (one process) or async (a process "
                            f"per environment).")
        for key, value in (("num_envs", num_envs), ("updates_per_epoch", updates_per_epoch),
                           ("val_episodes", val_episodes), ("test_episodes", test_episodes), ("eval_envs", eval_envs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"data.{key}={value} should be a positive integer.")
        self.env_id, self.env_options = env_id, dict(env_options or {})
        self.num_envs, self.vectorization, self.updates_per_epoch = num_envs, vectorization, updates_per_epoch
        self.val_episodes, self.test_episodes, self.eval_envs = val_episodes, test_episodes, eval_envs
        self._info: dict | None = None

    @property
    def info(self) -> dict:
        if self._info is None:
            self._info = {**_spaces(self.env_id, self.env_options), "num_envs": self.num_envs,
                          "vectorization": self.vectorization}
        return self._info

    def use_info(self, info: dict) -> None:
        """A checkpoint's environment is the one to evaluate on, whatever data.env_id now says."""
        self._info = dict(info)

    def setup(self, stage: str | None = None) -> None:
        self.train_set = list(range(self.updates_per_epoch))
        self.val_set = self._seeds(VAL_SEEDS, self.val_episodes)
        self.test_set = self._seeds(TEST_SEEDS, self.test_episodes)

    def _seeds(self, base: int, episodes: int) -> list[torch.Tensor]:
        seeds = torch.arange(base, base + episodes)
        return list(seeds.split(self.eval_envs))

    def split_sizes(self) -> dict[str, int]:
        return {"train": self.updates_per_epoch, "val": self.val_episodes, "test": self.test_episodes}

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=None, shuffle=False)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=None, shuffle=False)

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=None, shuffle=False)

    @staticmethod
    def read_input(raw: str, info: dict) -> int:
        """An episode's seed (predict.py input=123, or episodes=N for N seeds of its own)."""
        try:
            seed = int(str(raw).strip())
        except ValueError:
            raise UserError(f"input={raw}: an rl checkpoint takes an episode's seed (an integer), or episodes=N.") \
                from None
        if seed < 0:
            raise UserError(f"input={raw}: an episode's seed is a non-negative integer.")
        return seed

    @staticmethod
    def collate_inputs(samples: list, info: dict) -> torch.Tensor:
        return torch.tensor(samples, dtype=torch.long)

    @staticmethod
    def generated_inputs(info: dict, n: int) -> list[str]:
        return [str(PREDICT_SEEDS + k) for k in range(n)]

    @staticmethod
    def input_spec(info: dict) -> dict:
        return {"kind": "observation", "env_id": info["env_id"], "obs_dim": info["obs_dim"],
                "action": info["action"]}
