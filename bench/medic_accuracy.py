"""How well and how fast Medic's rules diagnose the corpus of real failure messages.

Every entry of tests/data/medic_corpus.jsonl is classified by `classify`; an entry is
right when the cause and the fix match what the corpus expects (the fix's spec changes,
variables, IAM action, command). Prints the accuracy overall and per cause, every entry
got wrong, and the time per failure. Baseline measured in the same run: one keyword pass
over the same texts (the first cause with a keyword in the text), for its speed and for
how many causes plain keywords get right. Targets: 100% of the corpus right, and at most
5 ms a failure.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence

from hivemind_agents.medic import CAUSES, Failure, classify, failure_text, read_corpus

LIMIT_MS = 5.0
RUNS = 15
# The baseline: a cause's keywords, tried in this order, first hit wins.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "missing_permission": ("not authorized", "AccessDenied"),
    "service_quota": ("LimitExceeded", "quota"),
    "capacity": ("capacity", "not supported in your requested"),
    "invalid_parameter": ("InvalidParameter", "ValidationError"),
    "wrong_port": ("Listening on", "listening on"),
    "missing_env_var": ("environment variable", "KeyError"),
    "database_unreachable": ("5432", "3306", "database"),
    "build_failure": ("npm ERR!", "ERROR:", "build failed"),
    "timeout": ("timed out", "within"),
    "throttling": ("Rate exceeded", "Throttling"),
    "resources_exhausted": ("out of memory", "No space left"),
    "health_check_mismatch": ("ResponseCodeMismatch",),
}


def keyword_cause(text: str) -> str:
    return next((c for c, words in KEYWORDS.items() if any(w in text for w in words)), "unknown")


def median_ms(work: Callable[[], object], count: int) -> float:
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000 / count)
    return statistics.median(samples)


def main() -> int:
    entries = read_corpus()
    failures: Sequence[Failure] = [entry.to_failure() for entry in entries]
    texts = [failure_text(failure) for failure in failures]

    total, right, cause_right, keyword_right = Counter(), Counter(), Counter(), Counter()
    wrong: list[str] = []
    for entry, failure, text in zip(entries, failures, texts, strict=True):
        cause = entry.expected.cause
        diagnosis = classify(failure)
        mismatches = entry.expected.mismatches(diagnosis)
        total[cause] += 1
        right[cause] += not mismatches
        cause_right[cause] += diagnosis.cause == cause
        keyword_right[cause] += keyword_cause(text) == cause
        if mismatches:
            wrong.append(f"  {entry.id}: {'; '.join(mismatches)}")

    rules_ms = median_ms(lambda: [classify(f) for f in failures], len(failures))
    keyword_ms = median_ms(lambda: [keyword_cause(t) for t in texts], len(texts))
    n = sum(total.values())
    accuracy = sum(right.values()) / n
    ok_accuracy, ok_time = accuracy == 1.0, rules_ms <= LIMIT_MS

    print(f"corpus  {n} failures, {len(total)} causes")
    print(f"{'cause':22} {'n':>4} {'rules: cause+fix':>17} {'cause':>7} {'keywords':>9}")
    for cause in CAUSES:
        count = total[cause]
        if count:
            print(
                f"{cause:22} {count:4d} {right[cause] / count:17.0%} "
                f"{cause_right[cause] / count:7.0%} {keyword_right[cause] / count:9.0%}"
            )
    print(
        f"{'overall':22} {n:4d} {accuracy:17.1%} {sum(cause_right.values()) / n:7.1%} "
        f"{sum(keyword_right.values()) / n:9.1%}  "
        f"{'ok' if ok_accuracy else 'MISSED (target 100%)'}"
    )
    if wrong:
        print("misclassified:")
        print("\n".join(wrong))
    print(f"baseline  one keyword pass        {keyword_ms * 1000:8.1f} µs a failure")
    print(
        f"classify (rules, evidence, fix)   {rules_ms * 1000:8.1f} µs a failure  "
        f"{rules_ms / keyword_ms:6.1f}x  "
        f"{'ok' if ok_time else f'MISSED (target {LIMIT_MS:.0f} ms)'}"
    )
    return 0 if ok_accuracy and ok_time else 1


if __name__ == "__main__":
    sys.exit(main())
