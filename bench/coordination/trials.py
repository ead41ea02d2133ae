"""Many workers on one study: storage, locks, liveness, crash recovery and the search loop with an exact budget.

Every ``bench run`` process is a *worker*. Workers of one study share its Optuna storage: the embedded
journal file ``runs/<study>/optuna.journal`` (processes on one machine), or a database URL
(``--storage postgresql://...``: processes on many machines). What keeps them honest:

- **An exact budget.** Counting a unit's trials and creating the next one happen under one lock per unit
  (``Coordinator.lock``): a file lock next to the journal (``runs/<study>/locks/``), a PostgreSQL
  session-level advisory lock for a PostgreSQL URL, a file lock next to the database file for SQLite. A trial
  is created only while (counted + running + waiting) < budget, so N workers never overshoot.
- **Liveness.** Every trial carries its worker's id (user attribute ``worker``). The journal storage has no
  heartbeat in Optuna 5, so each worker holds an exclusive ``flock`` on its own lease file
  ``runs/<study>/workers/<id>.lease`` for its whole life: the kernel releases it when the process dies, by
  SIGKILL or the OOM killer included, so a RUNNING trial whose lease can be locked by someone else belongs to
  a dead worker, with no grace period. On a database, Optuna's heartbeat (``heartbeat_interval``,
  ``grace_period``) marks a trial stale once its worker stops beating.
- **Recovery.** A stale trial (and a trial interrupted by SIGTERM or Ctrl-C, which the worker fails itself
  before exiting) is marked FAIL with the reason in user attribute ``interrupted``; it does not count toward
  the budget. It is retried once with the same parameters: a WAITING trial with the system attributes of
  Optuna's ``RetryHeartbeatStaleTrialCallback`` (``failed_trial``, ``retry_history``), which the next
  ``ask()`` of any worker picks up. A retry that is interrupted again is not retried: the budget's slot goes
  to a newly sampled trial.
- **Failures** of a configuration (an exception in a model, out of memory, a non-finite loss) are FAIL trials
  with user attribute ``error``; they count toward the budget. More than ``max_failure_rate`` of a unit's
  counted trials failing (at least ``MIN_FAILURES`` of them) stops the worker with one clear line.
- **Claims.** The final run of one (unit, seed) is claimed with a non-blocking lock held for the run's
  length (``Coordinator.claim``), so two workers never train the same seed; a lock dies with its process.
- **Shared runs.** On a database, the worker that stores a final (or repeated) run also keeps its result file
  in the database's ``bench_results`` table (``Coordinator.publish``, ``shared``), from which workers on other
  machines copy it into their own ``runs/<study>/``; journal workers share ``runs/<study>/`` itself. Optuna's
  study user attributes never hold result rows (older versions kept them in ``final:seed-<k>``; still read).
- **Sampler seeds.** The sampler is re-created before every ``ask()`` with seed ``stream + k`` (the unit's own
  stream, ``bench.study.units.sampler_stream``), k the
  ordinal of the configuration about to be drawn (``next_ordinal``: the unit's trials that hold a
  configuration, interrupted ones not counted), not the number of trials: every configuration draws from its
  own stream whichever worker asks, two workers started at the same moment never draw the same configurations,
  and an interrupted and resumed study draws the same configurations as an uninterrupted one. The ordinal
  (user attribute ``ordinal``, kept by a retry) is also the ``trial`` number of the results store.

Signals: SIGTERM sets a flag; inside training Lightning turns it into ``SIGTERMException`` (a ``SystemExit``,
which Optuna does not catch) at the next batch; between trials the loop checks the flag. Either way the
running trial is failed (``interrupted``), its retry queued, and the worker exits with status 143.
"""

from __future__ import annotations

import signal
import time
import warnings
from collections.abc import Callable
from typing import Any

from bench.errors import UserError, is_environment_error

from .coordinator import Coordinator
from .signals import StopFlag, Terminated

MIN_FAILURES = 3  # a failure rate is judged only once this many trials failed
MAX_RETRY = 1
POLL_SECONDS = 0.5  # how often a worker with nothing to do looks again for work or for others' trials
GRID_ATTRS = ("grid_id", "search_space")  # system attributes of optuna.samplers.GridSampler


def grid_sampler(search_space: dict[str, list], seed: int | None = None):
    """Optuna's ``GridSampler`` for this ask/tell loop. Optuna's calls ``Study.stop()`` once its grid is
    exhausted, which only works inside ``Study.optimize``; here the budget (the grid's size, checked by the
    spec) ends the search, so nothing needs stopping."""
    import optuna

    class BudgetedGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            pass  # the base class only calls study.stop() here

    return BudgetedGridSampler(search_space, seed=seed)


class TooManyFailures(UserError):
    """Too many trials of a unit failed: the study stops (exit status 2, one line)."""


def counted(trial) -> bool:
    """Trials that count toward the budget: finished ones, and failures of the configuration itself (user
    attribute ``error``); not an interruption, not a spec mistake."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "error" in trial.user_attrs


def interrupted(trial) -> bool:
    """A trial failed by an interruption (its worker stopped or died), not by its configuration."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and "interrupted" in trial.user_attrs


def next_ordinal(all_trials) -> int:
    """The ordinal of the configuration the unit's next new trial draws: its trials that hold a configuration
    (all but the interrupted ones, whose configuration a retry holds, or, when no retry was queued, the next
    new trial draws again from the same seed)."""
    return sum(1 for t in all_trials if not interrupted(t))


def ordinals(all_trials) -> dict[int, int]:
    """``{trial number: ordinal of its configuration}`` for the trials that hold one: user attribute
    ``ordinal``, set when the trial was drawn (a retry keeps its trial's); for trials stored without it, their
    position among those trials in number order."""
    out: dict[int, int] = {}
    position = 0
    for t in sorted(all_trials, key=lambda t: t.number):
        if interrupted(t):
            continue
        out[t.number] = t.user_attrs.get("ordinal", position)
        position += 1
    return out


def fail_and_retry(opt, trial, reason: str) -> bool:
    """Fail a RUNNING ``trial`` (``interrupted`` = reason) and queue one retry with the same parameters.
    Returns whether a retry was queued. Call under the unit's lock."""
    import optuna
    from optuna.trial import TrialState

    storage = opt._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "interrupted", reason)
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # finished meanwhile
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > MAX_RETRY:
        return False
    # the system attributes of optuna.storages.RetryHeartbeatStaleTrialCallback, without copying the failed
    # trial's user attributes (its partial curve and the interruption are not the retry's)
    opt.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={"retry_of": trial.number,  # the ordinal of its configuration is the failed trial's
                    **{k: trial.user_attrs[k] for k in ("ordinal", "drawn_by") if k in trial.user_attrs}},
        system_attrs={"failed_trial": trial.system_attrs.get("failed_trial", trial.number), "retry_history": history,
                      # a grid sampler's point stays the retry's (else the grid would skip one and repeat another)
                      **{k: trial.system_attrs[k] for k in GRID_ATTRS if k in trial.system_attrs}},
    ))
    return True


def failure_check(unit: str, trials: list, max_failure_rate: float) -> None:
    done = [t for t in trials if counted(t)]
    failed = [t for t in done if "error" in t.user_attrs]
    if len(failed) >= MIN_FAILURES and len(failed) > max_failure_rate * len(done):
        last = failed[-1].user_attrs["error"]
        raise TooManyFailures(f"{unit}: {len(failed)} of {len(done)} trials failed (more than "
                              f"{max_failure_rate:.0%}); stopping. Last error: {last}")


def search(
    opt,
    objective: Callable,
    *,
    unit: str,
    lock_name: str,
    trials: int,
    coordinator: Coordinator,
    new_sampler: Callable[[int], Any],
    timeout: float | None = None,
    max_failure_rate: float = 0.5,
    stop: StopFlag | None = None,
    report: Callable | None = None,
    out: Callable[[str], None] = print,
    wait: bool = False,
) -> int:
    """Run trials of ``opt`` until its budget of ``trials`` is taken (counted + running + waiting), with the
    other workers of the study. With ``wait``, return only once no trial of the unit is running anywhere (the
    final stage needs them all). Returns the number of trials this worker ran."""
    from optuna.trial import TrialState

    ran = 0
    stop = stop or StopFlag()
    while True:
        stop.check()
        trial = None
        with coordinator.lock(lock_name):
            for t, reason in coordinator.stale(opt):
                retried = fail_and_retry(opt, t, reason)
                number = t.user_attrs.get("ordinal", t.number) + 1  # as the log lines and the page number it
                out(f"[{unit}] trial {number} failed: {reason}; " + ("retrying it" if retried else "not retried"))
            all_trials = opt.get_trials(deepcopy=False)
            failure_check(unit, all_trials, max_failure_rate)
            done = [t for t in all_trials if counted(t)]
            running = [t for t in all_trials if t.state == TrialState.RUNNING]
            waiting = [t for t in all_trials if t.state == TrialState.WAITING]
            spent = sum(t.user_attrs.get("seconds", 0.0) for t in done)
            in_time = timeout is None or spent < timeout
            if waiting or (in_time and len(done) + len(running) + len(waiting) < trials):
                ordinal = next_ordinal(all_trials)
                opt.sampler = new_sampler(ordinal)
                with warnings.catch_warnings():
                    # Optuna warns that heartbeats are meant for Study.optimize: this loop beats itself
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    trial = opt.ask()
                if "retry_of" not in trial.user_attrs:  # a new draw (a retry keeps its trial's ordinal)
                    trial.set_user_attr("ordinal", ordinal)
                coordinator.begin(trial)
            elif not running or not wait:
                return ran
        if trial is None:
            time.sleep(POLL_SECONDS)  # others' trials still run: look again (they may fail and need a retry)
            continue
        run_trial(opt, trial, objective, coordinator=coordinator, lock_name=lock_name, unit=unit, stop=stop)
        ran += 1
        if report is not None:
            report(opt, opt._storage.get_trial(trial._trial_id))


def run_trial(opt, trial, objective: Callable, *, coordinator: Coordinator, lock_name: str, unit: str,
              stop: StopFlag) -> None:
    """One trial: the objective's value, PRUNED, or FAIL (its error kept by the objective); an interruption, or
    an error of the machine (``bench.errors.is_environment_error``: a full disk...), fails it for a retry and
    re-raises; a ``UserError`` fails it and re-raises."""
    import optuna
    from optuna.trial import TrialState

    with coordinator.beating(trial):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            opt.tell(trial, state=TrialState.PRUNED)
            return
        except (SystemExit, KeyboardInterrupt) as err:
            # SIGTERM sets the flag (Lightning raises SIGTERMException); Ctrl-C ends a fit with sys.exit(1)
            signum = stop.signum or signal.SIGINT
            reason = f"interrupted by {signal.Signals(signum).name}" if stop.signum else f"interrupted ({err!r})"
            with coordinator.lock(lock_name):
                frozen = opt._storage.get_trial(trial._trial_id)
                if frozen.state == TrialState.RUNNING:
                    fail_and_retry(opt, frozen, reason)
            raise Terminated(signum) from None
        except UserError:
            opt.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as err:
            if is_environment_error(err):  # the machine failed, not the configuration: retried, not counted
                with coordinator.lock(lock_name):
                    frozen = opt._storage.get_trial(trial._trial_id)
                    if frozen.state == TrialState.RUNNING:
                        fail_and_retry(opt, frozen, f"interrupted by {type(err).__name__}: {err}")
                raise
            opt.tell(trial, state=TrialState.FAIL)
            return
    opt.tell(trial, value)
