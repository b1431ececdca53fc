"""Where the timed update steps of ``learner_update.py --recipe file`` spend their time,
from a py-spy raw profile (collapsed stacks): samples inside the compiled step's two
graphs, and the rest by the deepest drive_rllib / RLlib frame. Prewarm (compiling) excluded.

    OMP_NUM_THREADS=1 py-spy record -r 200 -f raw -o file_compiled.txt -- \
        python benchmarks/learner_update.py --recipe file --rounds 12 --updates 20 \
        --prewarm 200 --no-sac
    python split.py file_compiled.txt > split.txt
"""

import collections
import re
import sys


def main(path: str) -> None:
    total, graphs, rest = 0, collections.Counter(), collections.Counter()
    with open(path) as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            frames, count = stack.split(";"), int(count)
            timed = any("drive_update" in f for f in frames) and not any(
                "prewarm" in f for f in frames
            )
            if not timed:
                continue
            total += count
            graph = [f for f in frames if "_wrap_func" in f]
            if graph:
                kind = (
                    "forward"
                    if any("CompiledFunction.forward" in f for f in frames)
                    else "backward"
                )
                graphs[f"compiled graph, {kind}"] += count
                continue
            names = [re.sub(r"\(/.*?/(site-packages|main)/", "(", f) for f in frames]
            ours = [f for f in names if "drive_rllib" in f or "ray/rllib" in f]
            rest[" <- ".join(reversed(ours[-2:]))[:150]] += count
    print(f"timed samples {total}")
    for name, count in graphs.most_common():
        print(f"{100 * count / total:5.1f}%  {name}")
    print(f"{100 * sum(rest.values()) / total:5.1f}%  outside the compiled graphs, of which:")
    for name, count in rest.most_common(25):
        print(f"{100 * count / total:5.1f}%    {name}")


if __name__ == "__main__":
    main(sys.argv[1])
