"""The rows of the claims section: one per comparison, with its budget, its interval over seeds
and test images, its variance components, the published effect and the power (the statistics
are `analysis.claims_stats` and `analysis.claims_noise`; the design `analysis.claims_design`;
the published effects `analysis.claims_paper`; the claims and their methods docs/VERDICTS.md).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from analysis import claims_design as cd
from analysis import claims_noise as cn
from analysis import claims_paper as cp
from analysis import claims_stats as cs
from models.collapse_rule import COLLAPSED, HEALTHY, NOT_YET_SPREAD

RANK_AGREEMENT = 0.5  # Spearman's ρ between bound and IS LL rankings
MIN_EFFECT_CLAIMS = {"a", "b", "g", "g*"}  # directional claims with a minimum-effect test
STATEMENTS = {
    "a": "IS LL orders VAE < Mix1 < Mix2 < Mix3",
    "b": "larger K is better (K = 100 → 500)",
    "c": "π matters little (|Δ IS LL| < the margin)",
    "d": f"the bound ranks pseudo-mixture models as IS LL does (Spearman ρ > "
         f"{RANK_AGREEMENT:g})",
    "e": "the paper's bound (greedy) trains the best model by IS LL",
    "f": f"the pseudo-input prior does not collapse (rate < {cs.LOW_RATE:.0%})",
    "g": "GMMpVAE (M > 1, the paper's bound) beats VampPrior (M = 1, mc) and the VAE",
}
OURS_STATEMENTS = {
    "d*": "ours: the bound ranks models trained with another objective as IS LL does",
    "e*": "ours: lse trains better models than mc",
    "g*": "ours: GMMpVAE trained with lse beats VampPrior (M = 1, mc) and the VAE",
}
FLOAT = pl.Float64
SCHEMA = {"claim": pl.String, "statement": pl.String, "scope": pl.String,
          "comparison": pl.String, "budget": pl.String, "epochs_run": pl.String,
          "seeds": pl.Int64, "difference": FLOAT, "ci_low": FLOAT, "ci_high": FLOAT,
          "p": pl.String, "method": pl.String, "verdict": pl.String,
          "paper_effect": FLOAT, "paper_source": pl.String, "reference": FLOAT,
          "reference_source": pl.String, "min_effect": pl.String, "se": FLOAT,
          "se_seeds": FLOAT, "se_images": FLOAT, "df": FLOAT, "seed_sd": FLOAT,
          "image_sd": FLOAT, "image_effect_sd": FLOAT, "power": FLOAT,
          "power_at": pl.String, "seeds_needed": pl.String, "smallest_margin": FLOAT,
          "pairs": pl.String, "missing": pl.String, "rows": pl.String}


def row(claim: str, scope: str, comparison: str, **kw: object) -> dict:
    r = dict.fromkeys(SCHEMA)
    r.update(claim=claim, statement={**STATEMENTS, **OURS_STATEMENTS}.get(claim, ""),
             scope=scope, comparison=comparison, seeds=0, method="", p="", pairs="",
             missing="", rows="", budget="", epochs_run="", paper_source="", min_effect="",
             power_at="", seeds_needed="", reference_source="")
    r.update(kw)
    return r


def images_matrix(test_ll: pl.LazyFrame, frame: pl.DataFrame) -> np.ndarray:
    """(rows of ``frame``, images): every trial's per-image IS LL (NaN where none)."""
    per_image = (test_ll.select("study", "trial_key", "image", "log_likelihood")
                 .join(frame.lazy().select("study", "trial_key", "row"),
                       on=["study", "trial_key"], how="inner").collect())
    if per_image.is_empty():
        return np.full((frame.height, 0), np.nan)
    images = sorted(per_image["image"].unique().to_list())
    out = np.full((frame.height, len(images)), np.nan)
    cols = np.searchsorted(images, per_image["image"].to_numpy())
    out[per_image["row"].to_numpy(), cols] = per_image["log_likelihood"].to_numpy()
    return out


def _budget(frame: pl.DataFrame, rows: np.ndarray) -> tuple[str, str]:
    part = frame.filter(pl.col("row").is_in(rows.tolist()) & pl.col("found"))
    budget = part["budget"][0] if part.height else frame.filter(
        pl.col("row").is_in(rows.tolist()))["budget"][0]
    run = part["epochs_run"].drop_nulls()
    if run.is_empty():
        return budget, ""
    low, high = int(run.min()), int(run.max())
    return budget, str(low) if low == high else f"{low}–{high}"


def comparison_images(c: cd.Comparison, images: np.ndarray, found: np.ndarray) -> np.ndarray:
    """`claims_noise.image_differences` of ``c`` on the images every one of its found trials
    has (an empty image axis when one of them has none)."""
    a, b = c.pairs["row_a"].to_numpy(), c.pairs["row_b"].to_numpy()
    used = np.unique(np.concatenate([a, b]))
    used = used[np.atleast_2d(found[..., used]).any(0)]
    cols = np.isfinite(images[..., used, :]).all(axis=tuple(range(images.ndim - 1)))
    seed_of = np.searchsorted(c.seeds, c.pairs["seed"].to_numpy())
    return cn.image_differences(a, b, seed_of, len(c.seeds), images[..., cols], found)


def family_arrays(family: list[cd.Comparison], values: np.ndarray, found: np.ndarray,
                  images: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """d (..., k, seeds) and the stacked `claims_noise.components` (..., k) of a family."""
    width = max(len(c.seeds) for c in family)
    lead = values.shape[:-1]
    d = np.full((*lead, len(family), width), np.nan)
    comps: dict[str, list[np.ndarray]] = {}
    for i, c in enumerate(family):
        d[..., i, : len(c.seeds)] = c.seed_differences(values, found)
        for key, v in cn.components(comparison_images(c, images, found)).items():
            comps.setdefault(key, []).append(v)
    return d, {k: np.stack(v, -1) for k, v in comps.items()}


def reference_effects(family: list[cd.Comparison], frame: pl.DataFrame,
                      smallest_effect: float | None) -> list[tuple[float | None, str, float, str]]:
    """Per comparison: (published effect, its source, the reference effect the minimum-effect
    test and the power use, its source) — `analysis.claims_paper`."""
    out = []
    for c in family:
        rows = frame.filter(pl.col("row").is_in(c.pairs["row_a"].to_list()))
        dataset, arch = rows["dataset"][0], rows["arch"][0]
        estimator = c.scope.split(" · ")[-1] if c.claim not in ("g", "g*") else None
        ks = sorted(rows["K"].drop_nulls().unique().to_list())
        ms = sorted(rows["M"].drop_nulls().unique().to_list())
        effect, source = cp.paper_effect(c.claim, c.name, dataset, arch, estimator, ks, ms)
        if smallest_effect is not None:
            ref, ref_source = smallest_effect, "the study's smallest effect of interest"
        elif effect is not None and effect > 0:
            ref, ref_source = effect, "the published effect"
        else:
            ref, ref_source = cp.DEFAULT_SMALLEST_EFFECT, (
                "default smallest effect of interest (the paper's smallest reported gain)")
        out.append((effect, source, ref, ref_source))
    return out


def _min_effect_text(code: int, ref: float, ref_source: str) -> str:
    gain = "the paper's gain" if ref_source == "the published effect" else f"a gain of {ref:g} nat"
    return {cs.MIN_EXCLUDED: f"{gain} is excluded", cs.MIN_CONSISTENT: f"consistent with {gain}",
            cs.MIN_INCONCLUSIVE: "inconclusive", cs.MIN_NONE: ""}[code]


def family_rows(family: list[cd.Comparison], frame: pl.DataFrame, values: np.ndarray,
                found: np.ndarray, images: np.ndarray, margin: float | None,
                smallest_effect: float | None) -> list[dict]:
    d, comp = family_arrays(family, values, found, images)
    image = (comp["var_image"], comp["df"])
    refs = reference_effects(family, frame, smallest_effect)
    directional = margin is None
    if directional:
        with_min = family[0].claim in MIN_EFFECT_CLAIMS
        res = cs.one_sided_family(d, np.array([c.expected for c in family]), image,
                                  np.array([r[2] for r in refs]) if with_min else None)
        p_text = [f"p_sup {a:.3g}, p_con (Holm) {b:.3g}" for a, b in
                  zip(res["p_sup"], res["p_con_holm"], strict=True)]
        level = 0.95
    else:
        res = cs.equivalence_family(d, margin, image)
        p_text = [f"p_TOST {a:.3g}, p_outside (Holm) {b:.3g}" for a, b in
                  zip(res["p_eq"], res["p_out_holm"], strict=True)]
        level = 0.90
    low, high = cs.t_interval(res["mean"], res["se"], res["df"], level)
    # the power's seed-level sd: pooled over the family's comparisons (df = Σ (n − 1))
    n_arr, _, se_only = cs.seed_summary(d)
    dof = np.where(n_arr >= 2, n_arr - 1, 0)
    pooled_df = int(dof.sum())
    pooled_sd = math.sqrt(float(np.nansum(dof * se_only**2 * n_arr) / pooled_df)) \
        if pooled_df else math.nan
    rows = []
    for i, c in enumerate(family):
        n = int(res["n"][i])
        di = d[i][np.isfinite(d[i])]
        descriptive = 0 < n < cs.MIN_SEEDS
        has_images = np.isfinite(comp["image_sd"][i])
        noise = ("seeds and test images (Satterthwaite df)" if has_images
                 else "seeds only (no per-image values)")
        method = (f"descriptive (n seeds < {cs.MIN_SEEDS}): mean and range over seeds"
                  if descriptive else
                  f"t over {n} seeds, {level:.0%} interval, se over {noise}; Holm over "
                  f"{len(family)} comparison(s)" + (f"; TOST, margin ±{margin:g} nat"
                                                     if margin else ""))
        verdict = cs.VERDICTS[int(res["code"][i])]
        if c.claim == "e*" and res["code"][i] in (cs.CODE_SUPPORTED, cs.CODE_CONTRADICTED):
            verdict = "lse better" if res["code"][i] == cs.CODE_SUPPORTED else "mc better"
        effect, source, ref, ref_source = refs[i]
        var_image = float(np.nan_to_num(comp["var_image"][i]))
        power_n = max(n, cs.MIN_SEEDS)
        if directional:
            power = float(cn.power_gain(ref, pooled_sd, var_image, power_n))
            needed = cn.seeds_needed(cn.power_gain, ref, pooled_sd, var_image)
            at = f"gain {ref:g} nat ({ref_source})"
        else:
            power = float(cn.power_equivalence(margin, pooled_sd, var_image, power_n))
            needed = cn.seeds_needed(cn.power_equivalence, margin, pooled_sd, var_image)
            at = f"equivalence within ±{margin:g} nat at a true difference 0"
        at += (f"; {power_n} seeds, seed sd {pooled_sd:.3g} pooled over the family "
               f"(df {pooled_df}), test-image variance {var_image:.3g}")
        found_pairs = int((found[c.pairs["row_a"].to_numpy()]
                           & found[c.pairs["row_b"].to_numpy()]).sum())
        budget, run = _budget(frame, c.pairs["row_a"].to_numpy())
        se_seed = float(se_only[i]) if n >= 2 else None
        rows.append(row(
            c.claim, c.scope, c.name, budget=budget, epochs_run=run, seeds=n,
            difference=float(res["mean"][i]) if n else None,
            ci_low=float(di.min() if descriptive else low[i]) if n else None,
            ci_high=float(di.max() if descriptive else high[i]) if n else None,
            p="" if descriptive or not n else p_text[i], method=method, verdict=verdict,
            paper_effect=effect, paper_source=source,
            reference=ref if directional else None,
            reference_source=ref_source if directional else "",
            min_effect=_min_effect_text(int(res["min_code"][i]), ref, ref_source)
            if "min_code" in res else "",
            se=float(res["se"][i]) if n >= 2 else None, se_seeds=se_seed,
            se_images=math.sqrt(var_image) if has_images and n >= 2 else None,
            df=float(res["df"][i]) if n >= 2 else None,
            seed_sd=se_seed * math.sqrt(n) if se_seed is not None else None,
            image_sd=float(comp["image_sd"][i]) if has_images else None,
            image_effect_sd=float(comp["effect_sd"][i]) if has_images else None,
            power=power if math.isfinite(power) else None, power_at=at,
            seeds_needed="" if not math.isfinite(pooled_sd) else
            (str(needed) if needed else f"> {cn.MOST_SEEDS}"),
            smallest_margin=None if directional or n < cs.MIN_SEEDS
            else float(res["smallest_margin"][i]),
            pairs=f"{found_pairs} of {c.pairs.height} found", missing=", ".join(c.missing(frame)),
            rows=", ".join(c.trial_keys())))
    return rows


def claim_d(frame: pl.DataFrame) -> list[dict]:
    rows = []
    bound = frame["test_elbo_bound"].to_numpy().astype(float)
    ll = frame["test_ll"].to_numpy().astype(float)
    ok = frame["found"].to_numpy() & np.isfinite(bound)
    for rd in cd.rank_design(frame):
        idx = np.where(rd.rows >= 0, rd.rows, 0)
        present = (rd.rows >= 0) & ok[idx]
        x = np.where(present, bound[idx], np.nan).T  # (seeds, models)
        y = np.where(present, ll[idx], np.nan).T
        rho = cs.spearman_rows(x, y)
        res = cs.rank_agreement(rho, RANK_AGREEMENT)
        n = int(res["n"])
        finite = rho[np.isfinite(rho)]
        descriptive = 0 < n < cs.MIN_SEEDS
        keys = frame.filter(pl.col("row").is_in(rd.rows[rd.rows >= 0].tolist()))
        lost = keys.filter(~pl.col("found"))
        budget, run = _budget(frame, rd.rows[rd.rows >= 0])
        ours = " (ours: not the paper's objective)" if rd.claim == "d*" else ""
        rows.append(row(
            rd.claim, rd.scope,
            f"ρ(bound, IS LL) over {len(rd.models)} pseudo-mixture models{ours}",
            budget=budget, epochs_run=run, seeds=n,
            difference=float(res["rho"]) if n else None,
            ci_low=float(finite.min() if descriptive else res["low"]) if n else None,
            ci_high=float(finite.max() if descriptive else res["high"]) if n else None,
            method=("descriptive (n seeds < 3): mean and range of the per-seed ρ" if descriptive
                    else f"Spearman ρ within each seed; t over {n} seeds of Fisher z, 95%"),
            verdict=cs.VERDICTS[int(res["claim"])],
            pairs=f"{int(np.isfinite(rho).sum())} of {len(rd.seeds)} seeds complete",
            missing=", ".join(f"{k} ({s})" for k, s in lost.select("trial_key", "state")
                              .iter_rows()),
            rows=", ".join(sorted(keys["trial_key"].to_list()))))
    return rows


def claim_f(t: pl.DataFrame) -> list[dict]:
    """Claim (f) per estimator and budget from ``collapse_state`` (`analysis.load`)."""
    rows = []
    mixtures = t.filter(pl.col("prior") == "pseudo_mixture")
    for scope, part in cd.scopes(mixtures, [*cd.SCOPE, "kl_estimator"]):
        judged = part.filter(pl.col("collapse_state").is_in([COLLAPSED, HEALTHY]))
        not_yet = int((part["collapse_state"] == NOT_YET_SPREAD).sum())
        early = int((part["collapse_state"].is_null() & part["spread_ratio"].is_not_null()).sum())
        if judged.is_empty() and not not_yet:
            continue
        per_seed = judged.group_by("seed").agg(
            (pl.col("collapse_state") == COLLAPSED).sum().alias("k"), pl.len().alias("n"))
        k, n = int(per_seed["k"].sum()), int(per_seed["n"].sum())
        rate, deff, low, high = cs.clustered_rate(per_seed["k"].to_numpy(),
                                                  per_seed["n"].to_numpy())
        iid = cs.wilson(k, n)
        spread = judged["spread_ratio"].median()
        perplexity = judged["resp_perplexity"].median()
        budget, run = _budget(part, part["row"].to_numpy())
        rows.append(row(
            "f", scope, f"{k} of {n} collapsed"
            + (f" (median spread ratio {spread:.3g}, perplexity/K {perplexity:.3g})"
               if n else "")
            + (f"; {not_yet} not yet spread (small spread that never fell: neither)"
               if not_yet else "")
            + (f"; {early} undecided (best epoch before the warm-up ended)" if early else ""),
            budget=budget, epochs_run=run, seeds=per_seed.height,
            difference=rate if n else None, ci_low=low if n else None,
            ci_high=high if n else None,
            method=f"Wilson 95% interval of the rate over training runs, clustered by seed "
                   f"(the {per_seed.height} seeds are the sample: design effect {deff:.3g}; "
                   f"were the {n} runs independent: [{iid[0]:.3g}, {iid[1]:.3g}]); supported "
                   f"when its upper end < {cs.LOW_RATE:.0%}, contradicted when its lower end > "
                   f"{cs.LOW_RATE:.0%}",
            verdict=cs.VERDICTS[int(cs.fraction_verdict(low, high))], pairs=f"{n} trials",
            rows=", ".join(sorted(judged["trial_key"].to_list()))))
    return rows
