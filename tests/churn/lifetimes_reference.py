"""The reference figures for rapport's lifetime-value models, from the Python
`lifetimes` package (pinned in tests/churn/requirements.txt).

Reads purchases as `rapport export --type purchase_completed --format csv`
writes them, summarises them with lifetimes' own conventions as of --as-of,
fits BG/NBD over every customer and Gamma-Gamma per currency over repeat
customers, and prints JSON: parameters, log-likelihoods and, per customer,
P(alive) and expected purchases over --horizon periods.

Used by tests/integration/churn_model_test.cc.
"""
import argparse
import json
import sys
import warnings

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

warnings.simplefilter("ignore")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("purchases_csv")
    parser.add_argument("--as-of", required=True, help="observation end, e.g. 2026-01-01")
    parser.add_argument("--period", choices=["day", "week"], default="day")
    parser.add_argument("--horizon", type=float, default=30.0, help="periods for expected purchases")
    parser.add_argument("--min-spend-customers", type=int, default=20)
    args = parser.parse_args()

    freq = {"day": "D", "week": "W"}[args.period]
    raw = pd.read_csv(args.purchases_csv, dtype=str, keep_default_na=False)
    purchases = pd.DataFrame({
        "customer_id": raw["customer_id"],
        # UTC days, naive, as rapport counts them
        "date": pd.to_datetime(raw["occurred_at"], utc=True, format="ISO8601").dt.tz_localize(None),
        "amount": raw["purchase_completed.total.amount"].astype(float),
        "currency": raw["purchase_completed.total.currency"],
    })
    end = pd.Timestamp(args.as_of)
    purchases = purchases[purchases["date"] <= end]
    summary = summary_data_from_transaction_data(
        purchases, "customer_id", "date", monetary_value_col="amount", observation_period_end=end, freq=freq)

    bgf = BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(summary["frequency"], summary["recency"], summary["T"], tol=1e-8)
    params = bgf.params_
    # lifetimes minimises a mean over customers on rescaled time; the total
    # log-likelihood on the data's own time is its formula at the fitted parameters.
    ll = -BetaGeoFitter._negative_log_likelihood(
        np.log(params[["r", "alpha", "a", "b"]].values), summary["frequency"].values, summary["recency"].values,
        summary["T"].values, np.ones(len(summary)), 0.0) * len(summary)

    p_alive = bgf.conditional_probability_alive(summary["frequency"], summary["recency"], summary["T"])
    expected = bgf.conditional_expected_number_of_purchases_up_to_time(
        args.horizon, summary["frequency"], summary["recency"], summary["T"])

    currency = purchases.sort_values("date").groupby("customer_id")["currency"].first()
    spend = {}
    for code in sorted(currency.unique()):
        ids = currency[currency == code].index
        repeat = summary.loc[summary.index.isin(ids)]
        repeat = repeat[(repeat["frequency"] > 0) & (repeat["monetary_value"] > 0)]
        if len(repeat) < args.min_spend_customers:
            continue
        ggf = GammaGammaFitter(penalizer_coef=0.0)
        ggf.fit(repeat["frequency"], repeat["monetary_value"])
        g = ggf.params_
        gll = -GammaGammaFitter._negative_log_likelihood(
            np.log(g[["p", "q", "v"]].values), repeat["frequency"].values, repeat["monetary_value"].values,
            np.ones(len(repeat)), 0.0) * len(repeat)
        spend[code] = {"p": g["p"], "q": g["q"], "v": g["v"], "log_likelihood": float(gll), "customers": len(repeat)}

    json.dump({
        "purchases": {"r": params["r"], "alpha": params["alpha"], "a": params["a"], "b": params["b"],
                      "log_likelihood": float(ll), "customers": len(summary)},
        "spend": spend,
        "customers": {cid: {"frequency": float(summary.at[cid, "frequency"]), "recency": float(summary.at[cid, "recency"]),
                            "T": float(summary.at[cid, "T"]), "p_alive": float(p_alive[i]),
                            "expected_purchases": float(expected.iloc[i])}
                      for i, cid in enumerate(summary.index)},
    }, sys.stdout)


if __name__ == "__main__":
    main()
