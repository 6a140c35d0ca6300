"""The count distribution of a batch of photos, estimated from the model's own probabilities.

A calibrated model's P(count = k | photo) carries the count distribution (the prior) of the bins it was
calibrated on. On a batch of bins distributed otherwise (a balanced training sample, a warehouse's natural
counts) its posteriors are off, and so are the error rates of a decision policy fitted on them. The EM of
Saerens, Latinne and Decaestecker (2002), "Adjusting the outputs of a classifier to new a priori
probabilities: a simple procedure", estimates the batch's prior from the posteriors alone:

    E   p_new(k | x)  proportional to  p(k | x) * prior_new(k) / prior_train(k)
    M   prior_new(k)  = the mean over the batch's photos of p_new(k | x)

from prior_new = prior_train to a fixed point, a maximum of the batch's likelihood over priors: only the
prior changes, the model's P(photo | count) stays as calibrated.

Zeros: a class the training prior gives 0 (the model was calibrated without such bins) has no ratio to
re-weight it and gets 0 after adjusting; a photo whose probability lies only on classes weighted 0 keeps
its probabilities (no prior can be applied to it).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from bintally.counts import CountClasses
from bintally.errors import BintallyError
from bintally.reconcile.fit import Targets, fit_policy
from bintally.reconcile.policy import DecisionPolicy

# Below this many photos the estimate is refused. A class share estimated from N photos has a sampling
# standard error of at least sqrt(share (1 - share) / N) (more, as EM must undo the model's confusion):
# about 6 points for a 20% class at 50 photos, as large as the shifts between populations it corrects.
# A smaller batch's most likely prior is also degenerate (shares of classes it happens to miss go to 0),
# which would stop a policy from ever accepting those counts.
MIN_PHOTOS = 50
# How many photos' worth the fitted distribution counts for in a batch's estimate (`estimate_prior`'s strength).
# On the 811 test bins of ../shared/abid, by count range (0, 1-5, 6-9, 10+; true 2.2/65/24/8.8%): the quickstart's
# weak model gave 0/61/39/0% with plain EM, 1.9/57/34/6.5% at 100; the default model 2.0/69/19/9.7% and
# 1.8/68/21/8.8%. 100 stops the drift without holding back a batch of a few hundred photos from its own shares.
PRIOR_PHOTOS = 100


class TooFewPhotos(BintallyError):
    """The batch is too small to estimate its count distribution: the caller keeps the fitted one."""


class PriorEstimate(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    prior: list[float]  # the batch's estimated share of each count class
    probabilities: np.ndarray  # [N, K]: the posteriors adjusted to that prior
    iterations: int
    converged: bool  # False: max_iter ran out before the prior moved less than tol


def _distribution(prior: np.ndarray | list[float], k: int, name: str) -> np.ndarray:
    p = np.asarray(prior, dtype=float)
    if p.shape != (k,) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"{name} needs {k} non-negative shares, not all 0; got {p.tolist()}")
    return p / p.sum()


def _posteriors(probabilities: np.ndarray) -> np.ndarray:
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 2 or (p < 0).any():
        raise ValueError(f"probabilities must be a non-negative [N, K] array; got shape {p.shape}")
    return p


def adjust(probabilities: np.ndarray, train_prior: np.ndarray | list[float], new_prior: np.ndarray | list[float]) -> np.ndarray:
    """[N, K] posteriors calibrated under `train_prior`, as they are under `new_prior` (Bayes' rule, rows sum to 1)."""
    p = _posteriors(probabilities)
    train, new = _distribution(train_prior, p.shape[1], "train_prior"), _distribution(new_prior, p.shape[1], "new_prior")
    ratio = np.divide(new, train, out=np.zeros_like(new), where=train > 0)
    weighted = p * ratio
    total = weighted.sum(axis=1, keepdims=True)
    return np.where(total > 0, weighted / np.where(total > 0, total, 1.0), p)


def estimate_prior(
    probabilities: np.ndarray,
    train_prior: np.ndarray | list[float],
    max_iter: int = 1000,
    tol: float = 1e-6,
    strength: float = 0.0,
) -> PriorEstimate:
    """The batch's count distribution by EM on its photos' posteriors [N, K] (calibrated under `train_prior`).
    With `strength` > 0 the maximum a posteriori estimate under a Dirichlet prior centred on `train_prior`, worth
    that many photos (Šipka, Šulc and Matas 2022): where the model tells classes apart poorly the likelihood is
    flat and plain EM drifts to the boundary, giving a class a share of 0 that the batch has.

    Raises TooFewPhotos below MIN_PHOTOS photos."""
    p = _posteriors(probabilities)
    if len(p) < MIN_PHOTOS:
        raise TooFewPhotos(f"too few photos ({len(p)}, fewer than {MIN_PHOTOS}) to estimate the batch's count distribution")
    train = _distribution(train_prior, p.shape[1], "train_prior")
    prior, converged, iterations = train, False, 0
    while iterations < max_iter and not converged:
        iterations += 1
        new = (adjust(p, train, prior).sum(axis=0) + strength * train) / (len(p) + strength)
        converged = bool(np.abs(new - prior).max() < tol)
        prior = new
    return PriorEstimate(prior=prior.tolist(), probabilities=adjust(p, train, prior), iterations=iterations, converged=converged)


class BatchPolicy(BaseModel):
    """A fitted policy carried over to a batch with another count distribution (`adapt_to_batch`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    fitted_prior: dict[str, float]  # count class -> its share among the bins the policy was fitted on (counted)
    batch_prior: dict[str, float]  # count class -> its estimated share in the batch
    probabilities: np.ndarray  # [N, K]: the batch's posteriors under its own prior
    policy: DecisionPolicy  # fitted again on the fitting bins, re-weighted to the batch's prior


def counted_shares(counts: np.ndarray, classes: CountClasses, weights: np.ndarray | None = None) -> np.ndarray:
    """The count classes' shares among the fitting bins (each counting its weight, on average 1), half a bin added
    to each so that none is 0 (EM could then never give it any)."""
    w = np.ones(len(counts)) if weights is None else weights * len(counts) / weights.sum()
    return (np.bincount(classes.index(counts), w, minlength=len(classes.values)) + 0.5) / (len(counts) + 0.5 * len(classes.values))


def bias_offsets(fit_probabilities: np.ndarray, shares: np.ndarray, weights: np.ndarray | None = None, iterations: int = 500) -> np.ndarray:
    """Per-class log-offsets under which the fitting bins' posteriors average to their counted shares: the
    class-bias terms of bias-corrected temperature scaling, whose maximum-likelihood values meet exactly that
    (Alexandari, Kundaje and Shrikumar 2020, who found EM with them hard to beat). Temperature scaling calibrates
    confidence, not each class's share: the default model's posteriors gave empty bins 4.4% against 1.5% counted,
    and EM on such posteriors runs off to a few classes."""
    offsets = np.zeros(len(shares))
    for _ in range(iterations):
        offsets += np.log(shares) - np.log(np.average(shifted(fit_probabilities, offsets), axis=0, weights=weights))
    return offsets


def shifted(probabilities: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """softmax(log p + offsets), row by row: Bayes' rule from a flat prior to one proportional to exp(offsets)."""
    return adjust(probabilities, np.ones(len(offsets)), np.exp(offsets - offsets.max()))


def range_matrix(classes: CountClasses) -> np.ndarray:
    """[K, R]: which count range (`CountClasses.ranges`: 0, 1-5, 6 to K-1, K+; together they hold every class) each
    class is in."""
    spans = list(classes.ranges().values())
    matrix = np.eye(len(spans))[[next(i for i, (low, high) in enumerate(spans) if low <= v <= high) for v in classes.values]]
    assert matrix.sum(axis=0).all(), f"a count range holds no class of {classes.labels}"
    return matrix


def adapt_to_batch(
    probabilities: np.ndarray,
    fit_probabilities: np.ndarray,
    fit_counts: np.ndarray,
    classes: CountClasses,
    policy: DecisionPolicy,
    fit_weights: np.ndarray | None = None,
    batch_records: int | None = None,
) -> BatchPolicy:
    """The batch's count distribution (EM by count range on its posteriors [N, K], their class biases corrected on
    the fitting bins first: `bias_offsets`), its posteriors under it, and the policy fitted again as it was
    fitted (same targets, with a batch target for this batch's own size; same error model and statistics) on its
    fitting bins re-weighted to that distribution, their posteriors adjusted alike: the promise is then about
    records of this batch's bins.
    `fit_weights` [N]: the weights the policy was fitted with (`fit.simulate`'s bin_weights), if any;
    `batch_records`: how many records the batch decides (its photos' number if not given; records may share a photo).
    Raises TooFewPhotos for a small batch; `policy` must carry its fit report."""
    if policy.fitted is None:
        raise ValueError("the policy has no fit report (explicit thresholds): nothing to fit again for the batch")
    if fit_weights is not None and (fit_weights.shape != fit_counts.shape or (fit_weights < 0).any() or fit_weights.sum() <= 0):
        raise ValueError(f"fit_weights must be {len(fit_counts)} non-negative weights, not all 0")
    fitted, ranges = counted_shares(fit_counts, classes, fit_weights), range_matrix(classes)
    offsets = bias_offsets(fit_probabilities, fitted, fit_weights)  # for the estimate only: the posteriors decided on stay as served
    # EM over the count ranges, each range's inner shares kept as fitted: over every class, with a model this
    # unsure between neighbouring counts, EM runs off to a few classes (on 400 of the default model's own
    # validation bins it gave 1s a share of 0 and 3s 36%); over the ranges it follows a shift to within a few points.
    estimate = estimate_prior(shifted(probabilities, offsets) @ ranges, fitted @ ranges, strength=PRIOR_PHOTOS)
    ratio = (np.asarray(estimate.prior) / (fitted @ ranges)) @ ranges.T
    batch = fitted * ratio
    weights = ratio[classes.index(fit_counts)] * (1 if fit_weights is None else fit_weights)
    targets = Targets.model_validate(policy.fitted["targets"])
    if targets.batch is not None:  # the batch promise is for this batch, of its own size
        size = len(probabilities) if batch_records is None else batch_records
        targets = targets.model_copy(update={"batch": targets.batch.model_copy(update={"records": size})})
    refit = fit_policy(
        adjust(fit_probabilities, fitted, batch),
        fit_counts.tolist(),
        classes,
        targets,
        policy.errors,
        split=f"{policy.fitted['split']}, re-weighted to the batch's count distribution",
        manifest_digest=policy.fitted.get("manifest_digest"),
        accept_statistics=list(policy.fitted["accepted"]),
        flag_statistics=list(policy.fitted["recall_2plus"]),
        bin_weights=weights,
    )
    return BatchPolicy(
        fitted_prior=dict(zip(classes.labels, fitted.tolist())),
        batch_prior=dict(zip(classes.labels, batch.tolist())),
        probabilities=adjust(probabilities, fitted, batch),
        policy=refit,
    )
