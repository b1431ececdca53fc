"""Experiments for `rllib train`: the old RLlib YAML format, its old keys, and every check.

An experiment file maps experiment names to specs::

    drive-pendulum:
      run: DRIVE
      env: Pendulum-v1
      stop: {env_runners/episode_return_mean: -200, num_env_steps_sampled_lifetime: 20000}
      checkpoint_config: {checkpoint_frequency: 10, checkpoint_at_end: true}
      num_samples: 1                     # Tune's: repeats of every grid point (seeds)
      storage_path: ~/ray_results
      config: {horizon: 5, num_samples: 1, ...}   # DRIVEConfig settings, by attribute
                                                  # name (this num_samples is DRIVE's N)

Old keys are renamed with a note (`OLD_STOP_KEYS`, `OLD_EXPERIMENT_KEYS`).
Everything that can be checked without Ray is checked here, so that bad input
ends the command before a Ray process starts: YAML syntax (file and line), the
experiment keys, ``run``, the env id, config keys (with the closest valid key),
stop keys, and finally ``DRIVEConfig.validate()`` on every grid-search variant
(values, and the env's spaces: a discrete action space is refused there).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from drive_rllib import keys
from drive_rllib.cli.envs import env_problems
from drive_rllib.cli.old_keys import translate_config, typo_of
from drive_rllib.ray_notices import hide_ray_notices

#: The one algorithm this command trains.
ALGORITHM = "DRIVE"
#: Keys of an experiment spec.
EXPERIMENT_KEYS = (
    "run",
    "env",
    "stop",
    "config",
    "checkpoint_config",
    "num_samples",
    "storage_path",
    "max_failures",
)
#: Keys of `ray.tune.CheckpointConfig`.
CHECKPOINT_KEYS = (
    "checkpoint_frequency",
    "checkpoint_at_end",
    "num_to_keep",
    "checkpoint_score_attribute",
    "checkpoint_score_order",
)
#: Old experiment keys -> (section, today's key); section None is the experiment itself.
OLD_EXPERIMENT_KEYS: dict[str, tuple[str | None, str]] = {
    "local_dir": (None, "storage_path"),
    "checkpoint_freq": ("checkpoint_config", "checkpoint_frequency"),
    "checkpoint_at_end": ("checkpoint_config", "checkpoint_at_end"),
    "keep_checkpoints_num": ("checkpoint_config", "num_to_keep"),
    "checkpoint_score_attr": ("checkpoint_config", "checkpoint_score_attribute"),
}
#: Old (RLlib < 2.10) result keys in ``stop`` -> today's names.
OLD_STOP_KEYS = {
    "episode_reward_mean": keys.RETURN,
    "episode_reward_max": "env_runners/episode_return_max",
    "episode_reward_min": "env_runners/episode_return_min",
    "episode_len_mean": "env_runners/episode_len_mean",
    "episodes_total": "env_runners/num_episodes_lifetime",
    "timesteps_total": keys.ENV_STEPS,
    "evaluation/episode_reward_mean": "evaluation/env_runners/episode_return_mean",
}
#: The result keys a stop criterion normally uses.
COMMON_STOP_KEYS = (
    keys.ITERATION,
    keys.TIME_TOTAL,
    keys.ENV_STEPS,
    keys.RETURN,
    "env_runners/episode_return_max",
    "env_runners/episode_return_min",
    "env_runners/episode_len_mean",
    "env_runners/num_episodes_lifetime",
    "evaluation/env_runners/episode_return_mean",
)
#: Result groups whose keys are accepted in ``stop`` without being listed above.
STOP_KEY_GROUPS = ("env_runners/", "evaluation/", "learners/", "timers/", "replay/", "training/")
#: At most this many grid-search variants are validated before Ray starts.
MAX_VARIANTS_CHECKED = 32


#: Exit status of bad input (as for a usage error), and of an interrupted run (Ctrl-C).
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """Bad input: the command prints the message as one line and exits with status 2."""


@dataclass
class Experiment:
    """One experiment, in today's names, ready for `ray.tune.Tuner`.

    Attributes:
        name: experiment name (folder under ``storage_path``).
        run: the registered trainable ("DRIVE").
        config: the param space: DRIVEConfig settings by attribute name, with
            ``env``; may hold ``{"grid_search": [...]}`` values.
        stop: stop criteria on flattened result keys.
        checkpoint_config: keyword arguments of `ray.tune.CheckpointConfig`.
        num_samples: samples of the param space (repeats of every grid point).
        storage_path: absolute folder or URI (s3://...) of the results, or None
            for Tune's default (~/ray_results).
        max_failures: trial restarts allowed after a failure.
    """

    name: str
    run: str
    config: dict[str, Any]
    stop: dict[str, float] = field(default_factory=dict)
    checkpoint_config: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 1
    storage_path: str | None = None
    max_failures: int = 0
    #: Lines ``file:line: message`` of what the file got wrong (reported with the
    #: other problems by `check_experiment`, in one error).
    problems: list[str] = field(default_factory=list)

    @property
    def env(self) -> Any:
        return self.config.get("env")


@dataclass
class Overrides:
    """Command-line options that replace what an experiment file says."""

    stop: dict[str, Any] | None = None
    storage_path: str | None = None
    num_samples: int | None = None
    checkpoint_freq: int | None = None
    #: Old RLlib keys that DRIVE ignores are errors, not notes.
    strict: bool = False


# -- reading -------------------------------------------------------------------------------


class YamlLines:
    """Line numbers of the keys of a YAML document, for messages that point into the file."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        try:
            self._root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            self._root = None

    def where(self, *keys: str) -> str:
        """``file:line`` of the deepest of ``keys`` (a path of mapping keys) found."""
        node, line = self._root, None
        for key in keys:
            if not isinstance(node, yaml.MappingNode):
                break
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(key):
                    node, line = value_node, key_node.start_mark.line + 1
                    break
            else:
                break
        return self.path if line is None else f"{self.path}:{line}"


def read_experiment_file(path: str) -> tuple[dict[str, Any], YamlLines]:
    """The experiments of a YAML file, as a dict, and the lines of its keys.

    Raises:
        CLIError: no such file, malformed YAML (with file and line), or not a
            mapping of experiment names to mappings.
    """
    if not os.path.exists(path):
        raise CLIError(f"no such file: {path}")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a folder; give an experiment file (.yaml)")
    with open(path, encoding="utf-8") as file:
        text = file.read()
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        if mark is None:
            raise CLIError(f"{path}: malformed YAML: {problem}") from None
        raise CLIError(
            f"{path}:{mark.line + 1}:{mark.column + 1}: malformed YAML: {problem}"
        ) from None
    lines = YamlLines(path, text)
    if not isinstance(document, dict) or not document:
        raise CLIError(
            f"{path}: expected experiment names at the top level, each with run, env, "
            "stop and config (see tuned_examples/drive_debug.yaml)"
        )
    for name, spec in document.items():
        if not isinstance(spec, dict):
            raise CLIError(
                f"{lines.where(name)}: experiment {name!r} must be a mapping with run, env, "
                "stop and config"
            )
    return document, lines


def parse_json_option(option: str, text: str | None) -> dict[str, Any] | None:
    """A JSON object given on the command line (``--config``, ``--stop``)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise CLIError(
            f"{option}: invalid JSON ({error.msg} at column {error.colno}): {text}"
        ) from None
    if not isinstance(value, dict):
        raise CLIError(f"{option}: expected a JSON object like '{{\"key\": value}}', got {text}")
    return value


# -- old keys and overrides ------------------------------------------------------------------


def closest(word: str, candidates: Iterator[str] | list[str] | tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` when ``word`` is a plausible typo of a candidate (small
    edit distance), else an empty string: never a guess by meaning."""
    match = typo_of(word, list(candidates))
    return f" (did you mean {match!r}?)" if match else ""


def map_stop_keys(stop: dict[str, Any], where: str, note: Callable[[str], None]) -> dict[str, Any]:
    """``stop`` with old keys renamed (one note each) and every key and value checked."""
    mapped: dict[str, Any] = {}
    for key, value in stop.items():
        key = str(key)
        if key in OLD_STOP_KEYS:
            new_key = OLD_STOP_KEYS[key]
            note(f"{where}: stop key {key!r} is now {new_key!r}")
            key = new_key
        if key in mapped:
            raise CLIError(f"{where}: stop key {key!r} is given twice (old and new name)")
        if key not in COMMON_STOP_KEYS and not key.startswith(STOP_KEY_GROUPS):
            # A key without its group ("episode_return_mean") gets its full name suggested.
            same_leaf = [
                k for k in COMMON_STOP_KEYS if k.rsplit("/", 1)[-1] == key.rsplit("/", 1)[-1]
            ]
            hint = (
                f" (did you mean {same_leaf[0]!r}?)"
                if same_leaf
                else closest(key, COMMON_STOP_KEYS + tuple(OLD_STOP_KEYS))
            )
            raise CLIError(
                f"{where}: unknown stop key {key!r}{hint}; "
                f"use one of {', '.join(COMMON_STOP_KEYS[:4])} or another result key"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise CLIError(f"{where}: stop value of {key!r} must be a number, got {value!r}")
        mapped[key] = value
    return mapped


def experiment_from_spec(
    name: str,
    spec: dict[str, Any],
    where: Callable[..., str],
    note: Callable[[str], None],
    overrides: Overrides,
) -> Experiment:
    """One `Experiment` from an old-format spec, old keys renamed and overrides applied.

    Args:
        name: the experiment name.
        spec: its mapping (run, env, stop, config, ...), possibly with old keys.
        where: ``where(*keys)`` -> location of a key for messages.
        note: called with one line per renamed old key.
        overrides: command-line options that replace the spec's values.
    """
    spec = copy.deepcopy(spec)
    checkpoint_config = _rename_old_keys(name, spec, where, note)
    _check_experiment_keys(name, spec, checkpoint_config, where)
    run = _checked_run(name, spec, where)
    config, problems = _translated_config(
        name, _config_with_env(name, spec, where), where, note, overrides.strict
    )
    stop = _stop_criteria(name, spec, where, note, overrides)
    if overrides.checkpoint_freq is not None:
        checkpoint_config["checkpoint_frequency"] = overrides.checkpoint_freq
    # The summary names the best checkpoint, so there is always one at the end.
    checkpoint_config.setdefault("checkpoint_at_end", True)
    num_samples = _num_samples(name, spec, config, where, note, overrides)
    return Experiment(
        name=str(name),
        run=run,
        config=config,
        stop=stop,
        checkpoint_config=checkpoint_config,
        num_samples=num_samples,
        storage_path=_storage_path(spec, overrides),
        max_failures=_max_failures(name, spec, where),
        problems=problems,
    )


def _translated_config(
    name: str,
    config: dict[str, Any],
    where: Callable[..., str],
    note: Callable[[str], None],
    strict: bool,
) -> tuple[dict[str, Any], list[str]]:
    """The config with old RLlib keys in DRIVE's terms (`drive_rllib.cli.old_keys`), one note
    per renamed or ignored key; and the problems found (ignored keys too, when ``strict``)."""
    from drive_rllib.algorithm.config import DRIVE_SETTINGS

    accepted, _ = accepted_config_keys()
    translation = translate_config(config, DRIVE_SETTINGS, accepted)
    problems = [f"{where(name, 'config', *path)}: {text}" for path, text in translation.problems]
    for path, text in translation.notes:
        note(f"{where(name, 'config', *path)}: {text}")
    for path, why in translation.ignored:
        key = ".".join(path)
        if strict:
            problems.append(
                f"{where(name, 'config', *path)}: {key!r} has no meaning in DRIVE ({why}); "
                "remove it (--strict)"
            )
        else:
            note(f"{where(name, 'config', *path)}: {key!r} is ignored: {why}")
    return translation.config, problems


def _rename_old_keys(
    name: str, spec: dict[str, Any], where: Callable[..., str], note: Callable[[str], None]
) -> dict[str, Any]:
    """Moves old experiment keys (``OLD_EXPERIMENT_KEYS``) to today's, one note each, in
    ``spec``; returns the checkpoint_config (popped from ``spec``)."""
    checkpoint_config = spec.pop("checkpoint_config", None) or {}
    if not isinstance(checkpoint_config, dict):
        raise CLIError(f"{where(name, 'checkpoint_config')}: checkpoint_config must be a mapping")
    for old_key, (section, new_key) in OLD_EXPERIMENT_KEYS.items():
        if old_key not in spec:
            continue
        value = spec.pop(old_key)
        target = spec if section is None else checkpoint_config
        shown = new_key if section is None else f"{section}.{new_key}"
        if new_key in target:
            raise CLIError(
                f"{where(name, old_key)}: both {old_key!r} and {shown!r} are given; keep {shown!r}"
            )
        note(f"{where(name, old_key)}: {old_key!r} is now {shown!r}")
        target[new_key] = value
    return checkpoint_config


def _check_experiment_keys(
    name: str, spec: dict[str, Any], checkpoint_config: dict[str, Any], where: Callable[..., str]
) -> None:
    """Every key of the experiment and of its checkpoint_config must be known."""
    unknown = sorted(set(spec) - set(EXPERIMENT_KEYS))
    if unknown:
        key = unknown[0]
        raise CLIError(
            f"{where(name, key)}: unknown key {key!r} in experiment {name!r}"
            f"{closest(key, EXPERIMENT_KEYS + tuple(OLD_EXPERIMENT_KEYS))}; "
            f"an experiment has {', '.join(EXPERIMENT_KEYS)}"
        )
    for key in checkpoint_config:
        if key not in CHECKPOINT_KEYS:
            raise CLIError(
                f"{where(name, 'checkpoint_config', key)}: unknown checkpoint_config key "
                f"{key!r}{closest(key, CHECKPOINT_KEYS)}"
            )


def _checked_run(name: str, spec: dict[str, Any], where: Callable[..., str]) -> str:
    """``run`` must be DRIVE."""
    run = spec.get("run")
    if run == ALGORITHM:
        return run
    if run is None:
        raise CLIError(f"{where(name)}: experiment {name!r} has no 'run' (use run: {ALGORITHM})")
    hint = f" (did you mean {ALGORITHM!r}?)" if str(run).upper() == ALGORITHM else ""
    raise CLIError(
        f"{where(name, 'run')}: unknown run {run!r}{hint}: this command trains "
        f"{ALGORITHM} only (run: {ALGORITHM})"
    )


def _config_with_env(name: str, spec: dict[str, Any], where: Callable[..., str]) -> dict[str, Any]:
    """The experiment's config with its ``env`` (given once, at either level)."""
    config = spec.get("config") or {}
    if not isinstance(config, dict):
        raise CLIError(f"{where(name, 'config')}: config must be a mapping of DRIVEConfig settings")
    if "env" in spec:
        if "env" in config and config["env"] != spec["env"]:
            raise CLIError(
                f"{where(name, 'env')}: env is given twice ({spec['env']!r} and config.env "
                f"{config['env']!r}); keep one"
            )
        config["env"] = spec["env"]
    if config.get("env") is None:
        raise CLIError(f"{where(name)}: experiment {name!r} has no env (e.g. env: Pendulum-v1)")
    return config


def _stop_criteria(
    name: str,
    spec: dict[str, Any],
    where: Callable[..., str],
    note: Callable[[str], None],
    overrides: Overrides,
) -> dict[str, Any]:
    """``--stop`` or the spec's stop, old keys renamed, keys and values checked."""
    stop = overrides.stop if overrides.stop is not None else spec.get("stop") or {}
    stop_where = "--stop" if overrides.stop is not None else where(name, "stop")
    if not isinstance(stop, dict):
        raise CLIError(f"{stop_where}: stop must be a mapping of result keys to values")
    return map_stop_keys(stop, stop_where, note)


def _num_samples(
    name: str,
    spec: dict[str, Any],
    config: dict[str, Any],
    where: Callable[..., str],
    note: Callable[[str], None],
    overrides: Overrides,
) -> int:
    """Tune's samples (repeats of every grid point), with a note when they would repeat one
    fixed seed."""
    num_samples = (
        overrides.num_samples if overrides.num_samples is not None else spec.get("num_samples", 1)
    )
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        # Two settings share the name: the experiment's is Tune's, the config's is DRIVE's N.
        hint = (
            "; to sweep DRIVE's N put it under config (config: {num_samples: {grid_search: "
            "[1, 2, 4]}})"
            if isinstance(num_samples, dict)
            else ""
        )
        raise CLIError(
            f"{where(name, 'num_samples')}: the experiment's num_samples (Tune's repeats of "
            f"every grid point, e.g. seeds) must be an integer >= 1, got {num_samples!r}{hint}"
        )
    seed = config.get("seed")
    if num_samples > 1 and isinstance(seed, int) and not isinstance(seed, bool):
        note(
            f"{where(name, 'config', 'seed')}: {num_samples} samples with the fixed seed {seed} "
            "repeat one run; for seeds write seed: {grid_search: [0, 1, 2]} instead"
        )
    return num_samples


def _max_failures(name: str, spec: dict[str, Any], where: Callable[..., str]) -> int:
    max_failures = spec.get("max_failures", 0)
    if isinstance(max_failures, bool) or not isinstance(max_failures, int):
        raise CLIError(
            f"{where(name, 'max_failures')}: max_failures must be an integer, got {max_failures!r}"
        )
    return max_failures


def _storage_path(spec: dict[str, Any], overrides: Overrides) -> str | None:
    """``--storage-path`` or the spec's; local folders made absolute (Tune needs that),
    URIs such as s3://... as they are."""
    storage_path = overrides.storage_path or spec.get("storage_path")
    if storage_path is not None and "://" not in str(storage_path):
        storage_path = os.path.abspath(os.path.expanduser(str(storage_path)))
    return storage_path


def experiments_from_file(
    path: str, overrides: Overrides, note: Callable[[str], None]
) -> tuple[list[Experiment], YamlLines]:
    """Every experiment of an old-format YAML file (old keys renamed, overrides applied)."""
    document, lines = read_experiment_file(path)
    experiments = [
        experiment_from_spec(name, spec, lines.where, note, overrides)
        for name, spec in document.items()
    ]
    return experiments, lines


def file_config(path: str) -> dict[str, Any]:
    """The config of a file's first experiment (``env`` included), as ``rllib train file``
    reads it: for scripts that run a tuned example's settings under their own loop."""
    experiments, _ = experiments_from_file(path, Overrides(), lambda _note: None)
    return dict(experiments[0].config)


def experiment_from_options(
    algo: str,
    env: str | None,
    config: dict[str, Any] | None,
    overrides: Overrides,
    note: Callable[[str], None],
) -> Experiment:
    """The experiment of ``rllib train --algo ALGO --env ENV [--config JSON] [--stop JSON]``."""
    if env is None and not (config or {}).get("env"):
        raise CLIError(
            "give --env ENV (e.g. --env Pendulum-v1) or an experiment file: rllib train file FILE.yaml"
        )
    spec: dict[str, Any] = {"run": algo, "config": dict(config or {})}
    if env is not None:
        spec["env"] = env

    name = f"{algo}_{env or spec['config']['env']}"
    return experiment_from_spec(name, spec, option_where, note, overrides)


def option_where(*keys: str) -> str:
    """The command-line option a key of an experiment given by options came from."""
    for key in ("config", "stop", "env"):
        if key in keys:
            return f"--{key}"
    return "command line"


# -- checks that need gymnasium or DRIVEConfig (no Ray process) ------------------------------


def accepted_config_keys() -> tuple[set[str], list[str]]:
    """(every key ``DRIVEConfig.update_from_dict`` understands, the public ones to suggest)."""
    from ray._common.deprecation import DEPRECATED_VALUE
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    from drive_rllib.algorithm import DRIVEConfig

    config_class = DRIVEConfig
    as_dict = config_class().to_dict()
    accepted = set(as_dict)
    for key in as_dict:
        public = key.lstrip("_")
        if public != key and isinstance(getattr(config_class, public, None), property):
            accepted.add(public)
    # Old spellings that AlgorithmConfig translates itself (e.g. num_workers).
    for alias in ("num_workers", "lambda", "num_cpus_for_driver", "create_env_on_driver"):
        if AlgorithmConfig._translate_special_keys(alias, warn_deprecated=False) in accepted:
            accepted.add(alias)
    suggestions = sorted(
        key for key in accepted if not key.startswith("_") and as_dict.get(key) != DEPRECATED_VALUE
    )
    return accepted, suggestions


def config_key_problems(experiment: Experiment, where: Callable[[str], str]) -> list[str]:
    """One line per config key that is not a DRIVEConfig attribute; a plausible typo gets
    its key suggested."""
    accepted, suggestions = accepted_config_keys()
    return [
        f"{where(key)}: unknown config key {key!r} in experiment "
        f"{experiment.name!r}{closest(key, suggestions)}"
        for key in experiment.config
        if key not in accepted
    ]


def problem_block(name: str, problems: list[str]) -> str:
    """One problem as one line; several as a heading and one indented line each."""
    if len(problems) == 1:
        return problems[0]
    return f"experiment {name!r} has {len(problems)} problems (fix them all, then rerun):\n" + (
        "\n".join(f"  {problem}" for problem in problems)
    )


def resolved_variants(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Up to `MAX_VARIANTS_CHECKED` grid-search variants of a config, with their labels."""
    from ray.tune.search.variant_generator import generate_variants

    variants = []
    for resolved_vars, variant in generate_variants(copy.deepcopy(config)):
        label = ", ".join(
            f"{'/'.join(map(str, path))}={value}" for path, value in resolved_vars.items()
        )
        variants.append((label, variant))
        if len(variants) >= MAX_VARIANTS_CHECKED:
            break
    return variants


def variant_error(experiment: Experiment, label: str, where: str, message: str) -> CLIError:
    """The one-line error of a grid-search variant (``label`` from `resolved_variants`;
    empty without a grid search) at ``where`` in the file."""
    variant_label = f" (variant {label})" if label else ""
    return CLIError(f"{where}: experiment {experiment.name!r}{variant_label}: {message}")


def check_config_values(experiment: Experiment, where: str, env_where: str | None = None) -> None:
    """``DRIVEConfig.validate()`` on the grid-search variants: values and the env's spaces
    (an error that names the env, e.g. a discrete action space, is placed at ``env_where``)."""
    from drive_rllib.algorithm import DRIVEConfig

    for label, variant in resolved_variants(experiment.config):
        try:
            DRIVEConfig().update_from_dict(variant).validate()
        except ValueError as error:
            message = str(error).splitlines()[0]
            place = where
            if env_where is not None and f"env {variant.get('env')!r}" in message:
                place = env_where
            raise variant_error(experiment, label, place, message) from None


def check_experiment(experiment: Experiment, where: Callable[..., str]) -> None:
    """All checks of one experiment, cheapest first; raises `CLIError` on the first problem.

    Args:
        experiment: the experiment.
        where: ``where(*keys)`` -> location of a key of the spec for messages, e.g.
            ``where(name, "config", "horizon")`` -> ``"file.yaml:12"``.
    """
    name = experiment.name
    # The env first, then every key: all of them in one error, so one round of edits.
    problems = [f"{where(name, 'env')}: {problem}" for problem in env_problems(experiment.env)]
    problems += experiment.problems
    # RLlib logs its new-API-stack notice while a config is built: not for the user here.
    hide_ray_notices()
    problems += config_key_problems(experiment, lambda key: where(name, "config", key))
    if problems:
        raise CLIError(problem_block(name, problems))
    check_config_values(experiment, where(name, "config"), where(name, "env"))


def local_resources() -> dict[str, float]:
    """What the private local Ray instance of a command will have: every CPU, every GPU."""
    import torch

    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def check_resources(
    experiment: Experiment, where: str, available: dict[str, float], cluster: str
) -> None:
    """Every grid-search variant's trial must fit ``available`` (else Tune would wait for
    ever with the trial PENDING): one line saying what to lower."""
    from drive_rllib.algorithm.resources import resource_shortfall

    for label, variant in resolved_variants(experiment.config):
        shortfall = resource_shortfall(variant, available, include_main_process=True)
        if shortfall:
            message = shortfall.replace("the cluster has", cluster)
            raise variant_error(experiment, label, where, message)


def check_compiler(experiment: Experiment, where: str) -> None:
    """A variant that compiles its update step with inductor (``torch_compile_learner``)
    needs a C++ compiler where its Learner runs; on a private local instance that is
    this machine, so a missing one is one line now, not a trial that fails after Ray
    has started."""
    from drive_rllib.algorithm import DRIVEConfig
    from drive_rllib.algorithm.rl_module import require_cxx_compiler

    for label, variant in resolved_variants(experiment.config):
        # The config's own defaults (RLlib's backend is "aot_eager" on macOS).
        config = DRIVEConfig().update_from_dict(variant)
        if (
            config.torch_compile_learner
            and config.torch_compile_learner_dynamo_backend == "inductor"
        ):
            try:
                require_cxx_compiler()
            except ValueError as error:
                raise variant_error(experiment, label, where, str(error)) from error
