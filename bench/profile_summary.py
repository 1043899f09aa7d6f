"""Top entries of a py-spy profile: `py-spy record -f raw -o FILE -p PID` writes collapsed
stacks (`frame;frame;... count`); this prints the functions with the largest inclusive
and self shares of the samples.

    python -m bench.profile_summary FILE [--top 25] [--thread MainThread]

`--thread` keeps the stacks whose first frame names that thread (`py-spy record
--threads`, as `records bench --only sink --profile FILE` records).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r" \(([^)]*?)(?::\d+)?\)$")


def _frame(frame: str) -> str:
    """`func (path/file.py:123)` -> `func (path/file.py)`; the line numbers split entries."""
    return _LINE.sub(lambda m: f" ({m.group(1)})", frame.strip())


def summarise(text: str, thread: str | None = None) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, inclusive counts, self counts) per function; with `thread`, only the
    stacks whose first frame contains it."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f]
        if thread is not None and not (frames and thread in frames[0]):
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    return total, inclusive, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", help="only the samples of this thread (py-spy --threads)")
    args = parser.parse_args()
    total, inclusive, own = summarise(args.file.read_text(), args.thread)
    print(f"{total} samples")
    for title, counts in (("inclusive", inclusive), ("self", own)):
        print(f"-- {title}")
        for frame, count in counts.most_common(args.top):
            print(f"{100 * count / max(total, 1):5.1f}%  {frame[:150]}")


if __name__ == "__main__":
    main()
