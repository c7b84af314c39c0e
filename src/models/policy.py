"""Actor-critic networks for policy-gradient learning (task=rl): observations -> an action distribution and a value.

ActorCritic: separate MLPs for the policy and the value (as Stable-Baselines3 and CleanRL do for PPO), orthogonal
initialisation (gain sqrt(2) hidden, 0.01 policy head, 1 value head). With `recurrent: gru` (or lstm) the observation
passes an MLP, then one recurrent layer shared by both heads, whose state is carried from step to step, set to zero
where an episode starts, and run over whole sequences in training (src/tasks/rl.py cuts minibatches by environment,
never by shuffled steps). The same loop runs one step or a whole sequence, so both give the same outputs.

Actions: categorical logits for a Discrete space; a diagonal Gaussian (a state-independent log standard deviation
per dimension) for a Box, whose samples the task clips to the bounds when stepping the environment.

Observations are normalised by running statistics (`normalize_obs`), kept as buffers so that a checkpoint carries
them; the task updates them from each rollout, before the policy sees it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class RunningNorm(nn.Module):
    """Running mean and variance of a vector (Chan et al.'s parallel update), as buffers; normalises and clips."""

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).double()
        mean, var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, total = mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + var * n + delta**2 * self.count * n / total) / total)
        self.count.fill_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = (x - self.mean.to(x.dtype)) / torch.sqrt(self.var.to(x.dtype) + self.eps)
        return out.clamp(-self.clip, self.clip)


def _mlp(sizes: list[int], activation: str) -> nn.Sequential:
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [_orthogonal(nn.Linear(a, b), math.sqrt(2)), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    """obs_dim and action (the data's info) -> forward(obs, state, starts) = (distribution parameters, value, state).

    hidden: the widths of each MLP; recurrent: null, gru or lstm (rnn_hidden wide); log_std_init: the Gaussian's
    starting log standard deviation (continuous actions); head: auto (categorical for Discrete actions, Gaussian for
    a Box), or either named, refused where the environment's actions are of the other kind."""

    def __init__(self, obs_dim: int, action: dict, hidden: list[int] = (64, 64), activation: str = "tanh",
                 recurrent: str | None = None, rnn_hidden: int = 64, log_std_init: float = 0.0,
                 normalize_obs: bool = False, head: str = "auto"):
        super().__init__()
        heads = {"categorical": "discrete", "gaussian": "continuous"}
        if head != "auto" and head not in heads:
            raise ValueError(f"model.head={head}: choose auto (from the action space), categorical or gaussian")
        if head != "auto" and heads[head] != action["kind"]:
            fit = "categorical" if action["kind"] == "discrete" else "gaussian"
            raise ValueError(f"model.head={head} cannot act in this environment, whose actions are {action['kind']}: "
                             f"use model.head=auto (or {fit})")
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={activation}: choose one of {', '.join(ACTIVATIONS)}")
        if recurrent not in (None, "gru", "lstm"):
            raise ValueError(f"model.recurrent={recurrent}: choose null (an MLP policy), gru or lstm")
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise ValueError(f"model.hidden={hidden} should be a list of positive widths, e.g. [64,64]")
        self.kind, self.recurrent = action["kind"], recurrent
        self.norm = RunningNorm(obs_dim) if normalize_obs else None
        width = obs_dim
        if recurrent:  # obs -> MLP -> one recurrent layer, shared by both heads
            self.encoder = _mlp([obs_dim, hidden[0]], activation)
            cell = nn.GRUCell if recurrent == "gru" else nn.LSTMCell
            self.rnn = cell(hidden[0], rnn_hidden)
            self.rnn_hidden = rnn_hidden
            width = rnn_hidden
            hidden = hidden[1:]
        self.actor = _mlp([width, *hidden], activation)
        self.critic = _mlp([width, *hidden], activation)
        out = hidden[-1] if hidden else width
        n = action["n"] if self.kind == "discrete" else action["dim"]
        self.policy_head = _orthogonal(nn.Linear(out, n), 0.01)
        self.value_head = _orthogonal(nn.Linear(out, 1), 1.0)
        if self.kind == "continuous":
            self.log_std = nn.Parameter(torch.full((n,), float(log_std_init)))

    # -- recurrent state -------------------------------------------------------------------------------
    def initial_state(self, batch: int, device=None) -> torch.Tensor | None:
        """The state before a first step: zeros (B, rnn_hidden), and for an LSTM (2, B, rnn_hidden); None for an MLP."""
        if not self.recurrent:
            return None
        shape = (batch, self.rnn_hidden) if self.recurrent == "gru" else (2, batch, self.rnn_hidden)
        return torch.zeros(shape, device=device)

    @staticmethod
    def select_state(state: torch.Tensor | None, rows) -> torch.Tensor | None:
        """The state of some environments: a GRU's is (B, H), an LSTM's (2, B, H); an MLP has none."""
        if state is None:
            return None
        return state[rows] if state.ndim == 2 else state[:, rows]

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations through the running statistics (as they are, without normalize_obs)."""
        return self.norm(obs) if self.norm is not None else obs

    def _recur(self, x: torch.Tensor, state: torch.Tensor, starts: torch.Tensor):
        """x (T, B, F), state at the sequence's start, starts (T, B) true where an episode begins -> (T, B, H)."""
        outs = []
        for t in range(x.shape[0]):
            keep = (~starts[t]).to(x.dtype)[:, None]
            if self.recurrent == "gru":
                state = self.rnn(x[t], state * keep)
                outs.append(state)
            else:
                h, c = self.rnn(x[t], (state[0] * keep, state[1] * keep))
                state = torch.stack([h, c])
                outs.append(h)
        return torch.stack(outs), state

    # -- the forward pass ------------------------------------------------------------------------------
    def forward(self, obs: torch.Tensor, state: torch.Tensor | None = None, starts: torch.Tensor | None = None,
                normalized: bool = False):
        """obs (B, obs_dim) for one step, or (T, B, obs_dim) for sequences (a recurrent policy: starts (T, B) and
        the state before the first step) -> (logits or mean, value, state after the last step). normalized: obs
        went through `norm` already (a rollout stores them so, with the statistics of the moment they were seen)."""
        x = obs if normalized else self.normalize(obs)
        if self.recurrent:
            one = x.ndim == 2
            x = self.encoder(x[None] if one else x)
            if state is None:  # a first step
                state = self.initial_state(x.shape[1], x.device)
            if starts is None:
                starts = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
            elif one:
                starts = starts[None]
            x, state = self._recur(x, state, starts)
            x = x[0] if one else x
        return self.policy_head(self.actor(x)), self.value_head(self.critic(x)).squeeze(-1), state

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None):
        """An action drawn from the policy (with the generator given), and its log-probability."""
        if self.kind == "discrete":
            action = torch.multinomial(torch.softmax(params, -1), 1, generator=generator).squeeze(-1)
        else:
            noise = torch.randn(params.shape, generator=generator, device=params.device, dtype=params.dtype)
            action = params + self.log_std.exp() * noise
        return action, self.evaluate_actions(params, action)[0]

    def evaluate_actions(self, params: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities of the actions, and the policy's entropy, written out (torch.distributions' objects
        cost more than the arithmetic in a small policy's update)."""
        if self.kind == "discrete":
            logp = params - params.logsumexp(-1, keepdim=True)
            return logp.gather(-1, actions[..., None]).squeeze(-1), -(logp.exp() * logp).sum(-1)
        log_std = self.log_std.expand_as(params)
        logp = -0.5 * ((actions - params) / log_std.exp()) ** 2 - log_std - _HALF_LOG_2PI
        return logp.sum(-1), (0.5 + _HALF_LOG_2PI + log_std).sum(-1)

    def greedy(self, params: torch.Tensor) -> torch.Tensor:
        """The deterministic policy's action: the likeliest category, or the Gaussian's mean."""
        return params.argmax(-1) if self.kind == "discrete" else params
