"""Old RLlib config keys (SAC, DDPG, TD3, APEX-DDPG files of RLlib 0.x-2.x) in DRIVE's terms.

RLlib's own tuned examples of the off-policy continuous-control family
(``rllib/tuned_examples/{sac,ddpg,td3,apex_ddpg}/*.yaml``) run with ``run: DRIVE``
after `translate_config`:

- keys with a DRIVE meaning are renamed with a note (`RENAMED`, `NESTED_RENAMED`:
  ``learning_starts`` -> ``num_warmup_steps``, ``optimization.critic_learning_rate``
  -> ``value_lr``, ...), some with their value converted (``target_entropy: auto``,
  ``tau`` with ``target_network_update_freq``, ``rollout_fragment_length``);
- keys of the old algorithms that DRIVE has no use for (`IGNORED`: ``twin_q``,
  ``n_step``, ``soft_horizon``, ``framework``, ...) are dropped with a one-line note
  each (errors with ``--strict``);
- ``horizon`` was the episode length in old RLlib files and is DRIVE's model horizon H
  in DRIVE's own: in a config with old keys (and none of DRIVE's) it becomes
  ``env_config.max_episode_steps``; in a config with DRIVE keys (and no old ones) it is
  H; otherwise it is ambiguous and refused. ``model_horizon`` is always H.

Pure functions of dicts: no Ray, no gymnasium.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: DRIVE's name of the model horizon H (the attribute stays ``horizon``).
MODEL_HORIZON = "model_horizon"

#: Old top-level keys -> the DRIVE/RLlib 2.60 keys that take their value.
RENAMED: dict[str, tuple[str, ...]] = {
    "learning_starts": ("num_warmup_steps",),
    "num_steps_sampled_before_learning_starts": ("num_warmup_steps",),
    "timesteps_per_iteration": ("env_steps_per_iteration",),
    "min_sample_timesteps_per_iteration": ("env_steps_per_iteration",),
    "metrics_smoothing_episodes": ("metrics_num_episodes_for_smoothing",),
    "train_batch_size": ("train_batch_size_per_learner",),
    "buffer_size": ("replay_capacity",),
    "initial_alpha": ("initial_entropy_weight",),
    "actor_lr": ("prior_lr", "posterior_lr"),
    "critic_lr": ("value_lr",),
    "actor_hiddens": ("policy_hiddens",),
    "critic_hiddens": ("value_hiddens",),
    "num_workers": ("num_env_runners",),
    "num_envs_per_worker": ("num_envs_per_env_runner",),
    "num_cpus_per_worker": ("num_cpus_per_env_runner",),
    "num_gpus_per_worker": ("num_gpus_per_env_runner",),
    "evaluation_num_workers": ("evaluation_num_env_runners",),
    "evaluation_num_episodes": ("evaluation_duration",),
}
#: Old nested keys: section -> {sub-key -> DRIVE keys}. The section's other sub-keys are
#: ignored with the section's note in `IGNORED`.
NESTED_RENAMED: dict[str, dict[str, tuple[str, ...]]] = {
    "optimization": {
        "actor_learning_rate": ("prior_lr", "posterior_lr"),
        "critic_learning_rate": ("value_lr",),
        "entropy_learning_rate": ("entropy_floor_lr",),
    },
    "replay_buffer_config": {
        "capacity": ("replay_capacity",),
        "learning_starts": ("num_warmup_steps",),
        "min_size_for_sampling": ("num_warmup_steps",),
    },
    "exploration_config": {"random_timesteps": ("num_warmup_steps",)},
    "Q_model": {"fcnet_hiddens": ("value_hiddens",)},
    "q_model_config": {"fcnet_hiddens": ("value_hiddens",)},
    "policy_model": {"fcnet_hiddens": ("policy_hiddens",)},
    "policy_model_config": {"fcnet_hiddens": ("policy_hiddens",)},
}
_UNIFORM_REPLAY = "DRIVE's replay samples uniformly (no prioritisation)"
_RELU = "DRIVE's MLPs use ReLU; widths are model_hiddens, policy_hiddens, value_hiddens"
#: Keys of the old algorithms with no DRIVE meaning -> why DRIVE ignores them.
IGNORED: dict[str, str] = {
    "framework": "DRIVE runs on torch",
    "twin_q": "DRIVE has no twin Q nets: its critic is the return distribution p_psi",
    "n_step": "DRIVE's targets are imagined model_horizon-step rollouts, not n-step returns",
    "target_network_update_freq": "DRIVE Polyak-averages psi_bar after every update (tau)",
    "soft_horizon": "gymnasium's TimeLimit ends episodes; DRIVE bootstraps truncated ones",
    "no_done_at_end": "gymnasium tells terminated from truncated; DRIVE bootstraps truncated ones",
    "normalize_actions": "DRIVE always acts in [-1, 1] and rescales to the env's bounds",
    "clip_actions": "DRIVE's actions are in the env's bounds by construction",
    "Q_model": _RELU,
    "q_model_config": _RELU,
    "policy_model": _RELU,
    "policy_model_config": _RELU,
    "actor_hidden_activation": _RELU,
    "critic_hidden_activation": _RELU,
    "optimization": "DRIVE's Adam rates are model_lr, posterior_lr, prior_lr, value_lr, "
    "entropy_floor_lr",
    "replay_buffer_config": "DRIVE's replay is its own uniform buffer (replay_capacity)",
    "exploration_config": "DRIVE explores by sampling pi_theta (uniform during num_warmup_steps)",
    "prioritized_replay": _UNIFORM_REPLAY,
    "prioritized_replay_alpha": _UNIFORM_REPLAY,
    "prioritized_replay_beta": _UNIFORM_REPLAY,
    "prioritized_replay_eps": _UNIFORM_REPLAY,
    "final_prioritized_replay_beta": _UNIFORM_REPLAY,
    "prioritized_replay_beta_annealing_timesteps": _UNIFORM_REPLAY,
    "worker_side_prioritization": _UNIFORM_REPLAY,
    "use_huber": "DRIVE's value loss is Gaussian (value_loss)",
    "huber_threshold": "DRIVE's value loss is Gaussian (value_loss)",
    "l2_reg": "DRIVE uses no weight decay",
    "policy_delay": "TD3's delayed actor update; DRIVE updates every component every step",
    "smooth_target_policy": "TD3's target smoothing; DRIVE's targets are imagined rollouts",
    "target_noise": "TD3's target smoothing; DRIVE's targets are imagined rollouts",
    "target_noise_clip": "TD3's target smoothing; DRIVE's targets are imagined rollouts",
    "use_state_preprocessor": "DRIVE normalises observations itself",
    "store_buffer_in_checkpoints": "DRIVE's checkpoints always hold the replay (replay.npz)",
    "compress_observations": "DRIVE's replay stores flat float arrays",
    "training_intensity": "turned into updates_per_iteration (see its note)",
    "rollout_fragment_length": "DRIVE samples env_steps_per_iteration steps per iteration",
    "_deterministic_loss": "SAC internals",
    "_use_beta_distribution": "SAC internals",
    "num_gpus": "set num_gpus_per_learner for a GPU Learner",
}
#: Renamed sections whose values are mappings (not renamed as a whole).
_SECTIONS = set(NESTED_RENAMED)
#: Every old top-level key: a config with one of them (and none of DRIVE's) is old-format.
OLD_KEYS = frozenset(RENAMED) | frozenset(IGNORED) | frozenset(NESTED_RENAMED)
#: DRIVE settings whose names old SAC files use too: they mark neither format.
SHARED_WITH_OLD = frozenset({"horizon", "tau", "target_entropy"})


@dataclass
class Translation:
    """An old-format config in DRIVE's terms, with what happened to each old key.

    Attributes:
        config: the translated config (DRIVEConfig attributes, ``env``, ...).
        notes: (key path, text) per renamed or converted key.
        ignored: (key path, why) per dropped key.
        problems: (key path, message) per key that cannot be translated.
    """

    config: dict[str, Any]
    notes: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    ignored: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    problems: list[tuple[tuple[str, ...], str]] = field(default_factory=list)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def translate_config(
    config: dict[str, Any], drive_keys: Iterable[str], accepted: Iterable[str]
) -> Translation:
    """``config`` with old RLlib keys in DRIVE's terms (see the module docstring).

    A config is old-format when it has an old key that RLlib 2.60 no longer accepts
    (``learning_starts``, ``soft_horizon``, ``Q_model``, ...); only then are the old keys
    that RLlib still accepts (``framework``, ``rollout_fragment_length``, ``num_workers``,
    ``exploration_config``, ...) translated too.

    Args:
        config: an experiment's config as written (not modified).
        drive_keys: DRIVE's own setting names (their presence marks a DRIVE-format config).
        accepted: every key DRIVEConfig accepts.
    """
    drive_only = set(drive_keys) - SHARED_WITH_OLD | {MODEL_HORIZON}
    accepted = set(accepted)
    old = any(key in OLD_KEYS and key not in accepted for key in config)
    new = any(key in drive_only for key in config)
    out = Translation(dict(config))
    given = set(config)  # keys the file sets itself win over translated old keys
    origin: dict[str, str] = {}  # DRIVE key -> the old key that set it
    old_values = {key: config[key] for key in config if key in OLD_KEYS}

    def assign(source: tuple[str, ...], targets: tuple[str, ...], value: Any) -> None:
        shown = ".".join(source)
        for target in targets:
            if target in origin:
                same = "the same value" if out.config[target] == value else "its value"
                out.notes.append(
                    (
                        source,
                        f"{shown!r} is ignored: {target!r} takes {same} from {origin[target]!r}",
                    )
                )
                return
            if target in given:
                out.notes.append((source, f"{shown!r} is ignored: {target!r} is given too"))
                return
        for target in targets:
            out.config[target] = value
            origin[target] = shown
        names = " and ".join(repr(target) for target in targets)
        out.notes.append((source, f"{shown!r} is now {names}"))

    _translate_horizon(out, old, new, given)
    for key, value in list(config.items()):
        if key in accepted and not old:
            continue
        if key in NESTED_RENAMED:
            del out.config[key]
            if not isinstance(value, dict):
                out.ignored.append(((key,), IGNORED[key]))
                continue
            for sub_key, sub_value in value.items():
                targets = NESTED_RENAMED[key].get(sub_key)
                relu = sub_key == "fcnet_activation" and sub_value == "relu"
                if targets is not None:
                    assign((key, sub_key), targets, sub_value)
                elif not relu:  # ReLU is what DRIVE uses: nothing to say
                    out.ignored.append(((key, sub_key), IGNORED[key]))
        elif key in RENAMED:
            del out.config[key]
            assign((key,), RENAMED[key], value)
        elif key in IGNORED:
            del out.config[key]
            if key not in ("training_intensity", "rollout_fragment_length"):
                out.ignored.append(((key,), IGNORED[key]))
    if old:
        _convert_values(out, old_values, given)
    return out


def _translate_horizon(out: Translation, old: bool, new: bool, given: set[str]) -> None:
    """``horizon``: the episode length in old files, H in DRIVE's; ``model_horizon``: H."""
    config = out.config
    if MODEL_HORIZON in config:
        if "horizon" in config and not old:
            out.problems.append(
                (
                    (MODEL_HORIZON,),
                    "both 'model_horizon' and 'horizon' are given; keep 'model_horizon' (H)",
                )
            )
            return
        value = config.pop(MODEL_HORIZON)
        if "horizon" in config:
            # Old-format file with DRIVE's H spelled out: horizon is the episode length.
            _episode_length(out, config.pop("horizon"))
        config["horizon"] = value
        given.add("horizon")
        return
    if "horizon" not in config:
        return
    if old and not new:
        _episode_length(out, config.pop("horizon"))
        given.discard("horizon")
    elif old or not new:
        out.problems.append(
            (
                ("horizon",),
                (
                    "'horizon' is ambiguous here (old RLlib: the episode length; DRIVE: the "
                    f"model horizon H): write model_horizon: {config['horizon']} for H, or "
                    f"env_config: {{max_episode_steps: {config['horizon']}}} for the episode "
                    "length"
                ),
            )
        )


def _episode_length(out: Translation, value: Any) -> None:
    env_config = dict(out.config.get("env_config") or {})
    if "max_episode_steps" in env_config:
        out.notes.append(
            (
                ("horizon",),
                (
                    "'horizon' (old RLlib's episode length) is ignored: "
                    "env_config.max_episode_steps is given"
                ),
            )
        )
        return
    env_config["max_episode_steps"] = value
    out.config["env_config"] = env_config
    out.notes.append(
        (
            ("horizon",),
            (
                f"'horizon' (old RLlib's episode length) is now env_config.max_episode_steps: "
                f"{value}; DRIVE's model horizon H is model_horizon (default 5)"
            ),
        )
    )


def _convert_values(out: Translation, old: dict[str, Any], given: set[str]) -> None:
    """Values whose meaning changed: target entropy, Polyak rate, update-to-data ratio."""
    config = out.config
    if config.get("target_entropy") == "auto":
        config["target_entropy"] = None
        out.notes.append(
            (("target_entropy",), "'target_entropy: auto' is DRIVE's default (None: -A)")
        )
    frequency = old.get("target_network_update_freq")
    tau = config.get("tau")
    if _number(frequency) and frequency > 1 and _number(tau):
        config["tau"] = tau / frequency
        out.notes.append(
            (
                ("tau",),
                (
                    f"tau {tau:g} every {frequency:g} steps (target_network_update_freq) is "
                    f"tau {tau / frequency:.3g} after every update in DRIVE"
                ),
            )
        )
    if "updates_per_iteration" in given:
        return
    fragment = old.get("rollout_fragment_length")
    intensity = old.get("training_intensity")
    batch = config.get("train_batch_size_per_learner")
    if _number(intensity) and _number(batch) and batch > 0:
        per_env_step, why = intensity / batch, f"training_intensity {intensity:g} / batch {batch:g}"
    elif isinstance(fragment, int) and not isinstance(fragment, bool) and fragment >= 1:
        runners = config.get("num_env_runners") or 1
        envs = config.get("num_envs_per_env_runner") or 1
        if not (_number(runners) and _number(envs)):
            return
        per_env_step = 1.0 / (fragment * max(runners, 1) * max(envs, 1))
        why = (
            f"one update per rollout_fragment_length={fragment} env steps per env runner, "
            "as in the file's algorithm"
        )
    else:
        return
    steps = config.get("env_steps_per_iteration", 100)
    if not _number(steps):
        return
    updates = max(1, round(steps * per_env_step))
    config["updates_per_iteration"] = updates
    out.notes.append(
        (
            (
                "rollout_fragment_length"
                if "training_intensity" not in old
                else "training_intensity",
            ),
            f"updates_per_iteration is {updates} for {steps:g} env steps per iteration ({why})",
        )
    )


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def typo_of(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` is a plausible typo of (edit distance 1, or 2 for words of 7+
    letters), closest first; None when there is none. Never a guess by meaning."""
    word = str(word)
    limit = 2 if len(word) >= 7 else 1
    scored = sorted(
        (edit_distance(word.lower(), candidate.lower()), candidate)
        for candidate in candidates
        if abs(len(candidate) - len(word)) <= limit
    )
    return scored[0][1] if scored and scored[0][0] <= limit else None
