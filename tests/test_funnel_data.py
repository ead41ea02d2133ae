"""The funnel generator (``synthetic-funnel``) and declared funnels: rates as set, conversions only after clicks, the
stored truth the labels were drawn from."""

import math

import pytest
import torch

from bench import datasets
from bench.datasets import Funnel, MTLData, Split, Task
from bench.errors import UserError


@pytest.fixture(scope="module")
def data():
    return datasets.load("synthetic-funnel", n_samples=20_000, rho=0.6, click_rate=0.25, conversion_rate=0.15, seed=4)


def all_rows(data):
    return torch.cat([data.train.y, data.val.y, data.test.y])


def within(observed: float, expected: float, n: int, sigmas: float = 4.0) -> bool:
    """|observed - expected| below ``sigmas`` binomial standard errors of a rate ``expected`` over ``n`` rows."""
    return abs(observed - expected) < sigmas * math.sqrt(expected * (1 - expected) / n)


def test_click_and_conversion_rates_match_the_settings_within_sampling_error(data):
    y = all_rows(data)
    assert within(y[:, 0].mean().item(), 0.25, len(y))
    # the conversion rate over every impression: the test split's counterfactual draws (4,000 impressions)
    outcome = data.truth.outcome["cvr"]
    assert within(outcome.mean().item(), 0.15, len(outcome))
    # among clicks the logged rate is E[pCVR | click] = E[pCTR pCVR] / E[pCTR], higher than 0.15 when rho > 0
    p_ctr, p_cvr = data.truth.prob["ctr"], data.truth.prob["cvr"]
    expected = ((p_ctr * p_cvr).mean() / p_ctr.mean()).item()
    logged = data.test.y[:, 1][~torch.isnan(data.test.y[:, 1])]
    assert expected > 0.17 and within(logged.mean().item(), expected, len(logged))


def test_conversions_are_observed_on_clicked_rows_only_and_on_every_one(data):
    for split in (data.train, data.val, data.test):
        click, conversion = split.y[:, 0], split.y[:, 1]
        assert bool((~torch.isnan(conversion) == (click == 1)).all())
    assert data.partial == [False, True]
    assert data.funnel == Funnel(("ctr", "cvr"), (False, True)) and data.funnel_steps == [("ctr", False), ("cvr", True)]


def test_the_stored_truth_is_what_the_labels_were_drawn_from(data):
    truth = data.truth
    assert torch.equal(truth.x, data.test.x) and torch.equal(truth.cat, data.test.cat)  # every test impression
    assert torch.equal(truth.outcome["ctr"].float(), data.test.y[:, 0])  # the logged click is the drawn one
    clicked = data.test.y[:, 0] == 1
    assert torch.equal(truth.outcome["cvr"][clicked].float(), data.test.y[clicked, 1])  # logged where clicked
    # the draws are calibrated against the stored probabilities: per decile of the true pCVR (400 impressions each)
    # the rate of drawn conversions is within 4 binomial standard errors of the decile's mean probability
    p, outcome = truth.prob["cvr"], truth.outcome["cvr"]
    order = p.argsort()
    for part in order.chunk(10):
        assert within(outcome[part].mean().item(), p[part].mean().item(), len(part))
    same = datasets.load("synthetic-funnel", n_samples=20_000, rho=0.6, click_rate=0.25, conversion_rate=0.15, seed=4)
    assert torch.equal(same.truth.prob["cvr"], p)  # the same seed draws the same truth and labels
    assert torch.equal(same.train.y.nan_to_num(-1), data.train.y.nan_to_num(-1))


def test_rho_is_the_correlation_of_the_click_and_conversion_signals():
    for rho in (0.0, 0.9):
        d = datasets.load("synthetic-funnel", n_samples=20_000, rho=rho, test_fraction=0.5, seed=1)
        logit = {t: torch.logit(d.truth.prob[t]) for t in ("ctr", "cvr")}  # a + scale s: a linear map of s
        r = torch.corrcoef(torch.stack([logit["ctr"], logit["cvr"]]))[0, 1].item()
        assert abs(r - rho) < 0.05, (rho, r)


def test_fields_and_encoding_describe_the_users_and_items(data):
    assert [f.name for f in data.fields] == ["user", "item"] and data.field_sizes == [201, 101]
    assert data.train.cat.min() >= 1 and bool((data.train.cat < torch.tensor([201, 101])).all())
    assert [c["name"] for c in data.info["encoding"]["categorical"]] == ["user", "item"]


def test_a_single_task_keeps_its_truth_but_no_funnel(data):
    cvr = data.select_tasks(["cvr"])
    assert cvr.funnel is None and list(cvr.truth.prob) == ["cvr"] and len(cvr.truth.x) == len(data.test)
    assert len(cvr.test) == int((data.test.y[:, 0] == 1).sum())  # the clicked rows only
    assert data.select_tasks(["ctr", "cvr"]).funnel == data.funnel


@pytest.mark.parametrize("options, message", [
    ({"rho": 1.5}, "rho .* must be in \\[-1, 1\\]"),
    ({"click_rate": 0.0}, "click_rate must be in \\(0, 1\\)"),
    ({"n_users": 8}, "n_items >= 2 rank \\+ 1 \\(two uncorrelated signals\\), got rank=4, d=8, n_users=8"),
    ({"n_samples": 10**9}, "n_samples must be in"),
    ({"test_fraction": 0.95}, "sum below 1"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(UserError, match=message) as err:
        datasets.load("synthetic-funnel", **options)
    assert len(str(err.value).splitlines()) == 1


def split(y) -> Split:
    return Split(torch.zeros(len(y), 1), torch.tensor(y, dtype=torch.float32))


def test_labels_that_contradict_a_declared_funnel_are_refused():
    nan = math.nan
    tasks = [Task("ctr", "binary"), Task("cvr", "binary")]
    good = split([[1, 1], [1, 0], [0, nan], [0, nan]])
    MTLData("f", tasks, good, good, good, funnel=Funnel(("ctr", "cvr"), (False, True)))
    seen = split([[1, 1], [1, 0], [0, 1], [0, nan]])  # a conversion logged without a click
    with pytest.raises(UserError, match="funnel ctr -> cvr: cvr is observed where ctr is 0 in 1 rows of the train"):
        MTLData("f", tasks, seen, good, good, funnel=Funnel(("ctr", "cvr"), (False, True)))
    joint = split([[1, 1], [1, 0], [0, 1], [0, 0]])  # ctcvr = 1 without a click
    with pytest.raises(UserError, match="ctcvr is 1 where ctr is 0"):
        MTLData("f", [Task("ctr", "binary"), Task("ctcvr", "binary")], joint, joint, joint,
                funnel=Funnel(("ctr", "ctcvr"), (False, False)))
    with pytest.raises(UserError, match="funnel step 'buy' is not a task"):
        MTLData("f", tasks, good, good, good, funnel=Funnel(("ctr", "buy"), (False, True)))
    with pytest.raises(UserError, match="at least two distinct steps"):
        Funnel(("ctr",), (False,))
