"""The report's statistics, each defined once here (the report states these definitions).

**Over seeds.** A run of the plan is trained once per seed of ``train.seeds``; each seed's
evaluation gives one number per dataset (the mean over its images). A cell shows the mean over
seeds, the sample standard deviation (n - 1 in the denominator; "-" for n = 1) and n.

**Verdict** of a model at a scale (or of a control at a scale) against published numbers, over
the datasets evaluated, each dataset's delta being the mean over seeds minus the published PSNR:

* *reproduced*: every dataset's |delta| is within ``report.tolerance_db``;
* *inconclusive*: not reproduced, but on every dataset outside the tolerance the published value
  lies within the seeds' spread, the range min..max of our per-seed values (so n >= 2). The range
  rather than mean +- 2 sd: the published number is itself one training run, and if it lies
  between our worst and best seed, one of our seeds matched it; with two or three seeds an sd is
  too poor an estimate to scale by 2;
* *below* / *above*: otherwise, by the sign of the mean delta over the datasets.

**Paired differences** of an ablation: each arm against the first, per image and seed (pairs
matched by image name and seed; an image whose PSNR is infinite on either side is left out),
first arm minus the other in dB. Their mean and a 95% interval from ``scipy.stats.bootstrap``
over the pooled pairs (images and seeds resampled together), 9,999 resamples, a fixed seed
(``RANDOM_SEED``: the same data give the same report); BCa, or the percentile method where BCa
is degenerate (every pair the same difference, or too few pairs for its jackknife); no interval
from a single pair.

**The sentence** beside a claim of the paper: *supported* when the interval excludes 0 on the
side the paper claims, *not supported* when it excludes 0 on the other side, *not resolved by
this data* when it contains 0; and whether the paper's claimed size lies inside the interval.
"""

from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 9999
RANDOM_SEED = 1907_02843  # the paper's arXiv number: any fixed seed makes reports reproducible
FEW_PAIRS = 10  # below this, say that a bootstrap interval is rough


def signed(value: float) -> str:
    """'+0.30' / '-0.11' in dB; a value that rounds to zero as '+0.00', never '-0.00'."""
    return f"{0.0 if abs(value) < 0.005 else value:+.2f}"


@dataclass(frozen=True)
class Seeds:
    """One cell's per-seed results: PSNR and SSIM of each seed evaluated, of ``planned``."""

    psnr: tuple[float, ...]
    ssim: tuple[float, ...]
    planned: int

    @property
    def n(self) -> int:
        return len(self.psnr)

    @property
    def mean(self) -> tuple[float, float]:
        return statistics.fmean(self.psnr), statistics.fmean(self.ssim)

    @property
    def sd(self) -> float | None:
        """Sample standard deviation of the PSNR over seeds (n - 1); None for n = 1."""
        return statistics.stdev(self.psnr) if self.n > 1 else None

    @property
    def spread(self) -> tuple[float, float] | None:
        """The seeds' spread: min..max of the per-seed PSNR; None for n = 1."""
        return (min(self.psnr), max(self.psnr)) if self.n > 1 else None

    def contains(self, value: float) -> bool:
        spread = self.spread
        return spread is not None and spread[0] <= value <= spread[1]

    @property
    def n_text(self) -> str:
        return f"n = {self.n}" + (f" of {self.planned}" if self.planned > self.n else "")

    @property
    def sd_text(self) -> str:
        return "-" if self.sd is None else f"{self.sd:.2f}"


def seeds_of(results: list[tuple[float, float] | None]) -> Seeds | None:
    """The Seeds of a cell from each planned seed's (PSNR, SSIM) or None (not run yet); None
    when no seed has run."""
    found = [r for r in results if r is not None and r[0] is not None]
    if not found:
        return None
    return Seeds(tuple(r[0] for r in found), tuple(r[1] for r in found), len(results))


REPRODUCED, INCONCLUSIVE, BELOW, ABOVE = "reproduced", "inconclusive", "below", "above"
NOT_RUN = "not run"  # in the plan, no result yet
NOT_PLANNED = "not planned"  # params.yaml does not ask for it


@dataclass
class Verdict:
    """A model (or control) at a scale against published numbers, over the datasets evaluated:
    ``deltas`` (per dataset, the mean over seeds minus the published PSNR) and, per dataset, the
    seeds' spread minus the published PSNR (None: one seed)."""

    model: str
    scale: int
    deltas: list[float]
    tolerance: float
    planned: bool = True  # False: the plan evaluates it on none of the published datasets
    spreads: list[tuple[float, float] | None] | None = None
    seeds: list[int] | None = None  # n per dataset
    against: str = "the paper"  # below/above whom
    value: str = "the paper's value"  # what may lie within our seeds' range
    empty: str | None = None  # the text when nothing was measured (default: not run/planned)

    @property
    def kind(self) -> str | None:
        if not self.deltas:
            return None
        if all(abs(d) <= self.tolerance for d in self.deltas):
            return REPRODUCED
        spreads = self.spreads or [None] * len(self.deltas)
        outside = [s for d, s in zip(self.deltas, spreads, strict=True) if abs(d) > self.tolerance]
        if all(s is not None and s[0] <= 0 <= s[1] for s in outside):
            return INCONCLUSIVE
        return BELOW if statistics.fmean(self.deltas) < 0 else ABOVE

    @property
    def n_text(self) -> str:
        counts = sorted(set(self.seeds or [1]))
        seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
        return f"n = {seeds} seed{'s' * (counts[-1] > 1)}"

    @property
    def text(self) -> str:
        kind = self.kind
        if kind is None:
            return self.empty or (NOT_RUN if self.planned else NOT_PLANNED)
        mean = statistics.fmean(self.deltas)
        sets = f"{len(self.deltas)} set{'s' * (len(self.deltas) > 1)}"
        if kind == REPRODUCED:
            return (f"reproduced: within {self.tolerance:.2f} dB on all {sets} "
                    f"(mean {signed(mean)}; {self.n_text})")  # fmt: skip
        if kind == INCONCLUSIVE:
            return (f"inconclusive: mean {signed(mean)} dB over {sets}, outside "
                    f"{self.tolerance:.2f} dB, but {self.value} lies within our seeds' "
                    f"range wherever it is outside ({self.n_text})")  # fmt: skip
        return (f"{kind} {self.against}: mean {signed(mean)} dB over {sets} "
                f"({self.range_text}{self.n_text})")  # fmt: skip

    @property
    def range_text(self) -> str:
        """The range behind the mean, '... to ...; ': over the datasets where there are several;
        over one dataset, its seeds' spread (none with one seed: '')."""
        if len(self.deltas) > 1:
            return f"{signed(min(self.deltas))} to {signed(max(self.deltas))}; "
        spread = (self.spreads or [None])[0]
        if spread is None:
            return ""
        return f"seeds' range {signed(spread[0])} to {signed(spread[1])}; "


@dataclass(frozen=True)
class Interval:
    """The mean of paired differences and its bootstrap interval (None: a single pair)."""

    n: int  # pairs
    seeds: int  # seeds they come from
    mean: float
    low: float | None
    high: float | None
    method: str  # "BCa", "percentile (BCa degenerate)", or "none (one pair)"

    @property
    def rough(self) -> bool:
        return self.n < FEW_PAIRS

    def excludes_zero(self) -> int:
        """+1: the interval lies above 0, -1: below, 0: it contains 0 (or there is none)."""
        if self.low is None or self.high is None:
            return 0
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def contains(self, value: float) -> bool:
        return self.low is not None and self.high is not None and self.low <= value <= self.high

    @property
    def text(self) -> str:
        if self.low is None:
            return "-"
        return f"{signed(self.low)} to {signed(self.high)}"


def paired_interval(differences: list[float], seeds: int = 1) -> Interval | None:
    """Mean and 95% bootstrap interval of paired differences (see the module docstring)."""
    from scipy.stats import bootstrap

    if not differences:
        return None
    values = np.asarray(differences, dtype=float)
    mean = float(values.mean())
    if values.size < 2:
        return Interval(int(values.size), seeds, mean, None, None, "none (one pair)")
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a degenerate BCa warns, then returns NaN
            result = bootstrap(
                (values,), np.mean, n_resamples=RESAMPLES, confidence_level=CONFIDENCE,
                method=method, rng=np.random.default_rng(RANDOM_SEED),
            )  # fmt: skip
        low, high = (float(x) for x in result.confidence_interval)
        if np.isfinite(low) and np.isfinite(high):
            name = method if method == "BCa" else "percentile (BCa degenerate)"
            return Interval(int(values.size), seeds, mean, low, high, name)
    return Interval(int(values.size), seeds, mean, mean, mean, "none (degenerate)")


@dataclass(frozen=True)
class Claim:
    """What the paper claims about ``first`` minus ``other`` (dB): a direction (+1: first is
    better, -1: worse, 0: none) and a size, or only a direction (size None)."""

    sign: int
    size: float | None
    source: str  # where the paper says it, for the report

    @property
    def text(self) -> str:
        if self.size is not None:
            return f"{self.size:+.2f} dB ({self.source})"
        side = {1: "first arm better", -1: "first arm worse", 0: "no direction"}[self.sign]
        return f"direction only, {side}; no size ({self.source})"


SUPPORTED, NOT_SUPPORTED, NOT_RESOLVED = "supported", "not supported", "not resolved by this data"


def judgement(interval: Interval | None, claim: Claim | None) -> str | None:
    """supported / not supported / not resolved by this data (None: no claim, or not run)."""
    if claim is None or claim.sign == 0 or interval is None:
        return None
    side = interval.excludes_zero()
    if side == 0:
        return NOT_RESOLVED
    return SUPPORTED if side == claim.sign else NOT_SUPPORTED


def sentence(first: str, other: str, interval: Interval | None, claim: Claim | None) -> str:
    """The one sentence of an ablation's contrast: the judgement and the claimed size."""
    contrast = f"{first} - {other}"
    if interval is None:
        return f"{contrast}: not run (no pairs of images yet)."
    measured = f"mean {signed(interval.mean)} dB over {interval.n} pair{'s' * (interval.n > 1)}"
    if interval.low is None:
        measured += ", no interval from one pair"
    else:
        measured += f", 95% interval {interval.text}"
    if interval.low is not None and interval.rough:
        measured += f" (rough: fewer than {FEW_PAIRS} pairs)"
    verdict = judgement(interval, claim)
    if claim is None or verdict is None:
        reason = "the paper makes no claim about it" if claim is None else "no direction claimed"
        return f"{contrast}: {measured}; {reason}."
    why = {
        SUPPORTED: "the interval excludes 0 on the paper's side",
        NOT_SUPPORTED: "the interval excludes 0 on the other side than the paper's",
        NOT_RESOLVED: "the interval contains 0" if interval.low is not None else "one pair",
    }[verdict]
    if claim.size is None:
        size = "the paper gives no size"
    elif interval.contains(claim.size):
        size = f"the paper's {claim.size:+.2f} dB lies inside the interval"
    else:
        size = f"the paper's {claim.size:+.2f} dB lies outside the interval"
    return f"{contrast}: {verdict} ({why}; {measured}); {size}."
