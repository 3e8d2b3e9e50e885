"""The CPU thread policy: what the process may use, the overrides, and the measurement."""
import os

import pytest
import torch

from cs231n_gen import threads


@pytest.fixture(autouse=True)
def keep_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


def test_usable_cpus_is_bounded_by_affinity_and_cores():
    n = threads.usable_cpus()
    assert 1 <= n <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert n <= len(os.sched_getaffinity(0))


def test_cgroup_quota_caps_the_count(monkeypatch):
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 1.5)
    assert threads.usable_cpus() == 1
    assert threads.choose_threads() == threads.ThreadChoice(1, 1, "one usable CPU")


def test_overrides(monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    assert threads.apply_thread_policy().threads == 3 and torch.get_num_threads() == 3
    for bad in ("zero", "0"):
        monkeypatch.setenv(threads.THREADS_ENV, bad)
        with pytest.raises(ValueError, match=threads.THREADS_ENV):
            threads.choose_threads()
    monkeypatch.delenv(threads.THREADS_ENV)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.choose_threads().threads == 1
    with pytest.raises(ValueError, match="max_threads"):
        threads.choose_threads(max_threads=0)


def test_measured_choice_keeps_the_random_state_and_picks_the_fewest_near_fastest(monkeypatch):
    torch.manual_seed(5)
    want = torch.rand(3)
    torch.manual_seed(5)
    choice = threads.choose_threads()
    assert torch.equal(torch.rand(3), want)  # measuring draws no numbers from the lecture's stream
    assert 1 <= choice.threads <= choice.usable and choice.reason.startswith(("measured", "one usable"))
    monkeypatch.setattr(threads, "usable_cpus", lambda: 4)
    idle = {1: {"mlp": 5.0, "conv": 10.0}, 2: {"mlp": 5.0, "conv": 5.4}, 4: {"mlp": 5.2, "conv": 5.0}}
    monkeypatch.setattr(threads, "_step_seconds", lambda c: idle)
    assert threads.choose_threads().threads == 2  # within 15% of the best on every step, with fewer threads
    busy = {1: {"mlp": 3.0, "conv": 12.0}, 2: {"mlp": 6.0, "conv": 10.0}, 4: {"mlp": 30.0, "conv": 9.0}}
    monkeypatch.setattr(threads, "_step_seconds", lambda c: busy)
    # worst slowdowns: 1 thread 12/9 = 1.33 (conv), 2 threads 6/3 = 2 (mlp), 4 threads 10 (mlp):
    # the total step time (15, 16, 39) would not be fooled here, but the small model decides.
    assert threads._worst_slowdown(busy) == pytest.approx({1: 12 / 9, 2: 2.0, 4: 10.0})
    assert threads.choose_threads().threads == 1
    # The total would pick 2 threads here and cost the 2D MLP 2x; the worst step does not.
    mixed = {1: {"mlp": 3.0, "conv": 20.0}, 2: {"mlp": 6.0, "conv": 12.0}}
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(threads, "_step_seconds", lambda c: mixed)
    assert threads.choose_threads().threads == 1


# ------------------------------------------------------------------ following the load mid-run
class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture(autouse=True)
def no_policy_yet(monkeypatch):
    """Loops start at the count the test sets, not at a policy another test measured."""
    monkeypatch.setattr(threads, "_policy_threads", None)


@pytest.fixture
def follower_at_2():
    """A follower over 2 usable CPUs at 2 threads, and the fake clock it reads."""
    torch.set_num_threads(2)
    clock = FakeClock()
    return threads.LoadFollower(2, clock=clock), clock


def drive(follower, clock, steps, tick, seconds_at):
    """``steps`` steps, ``tick`` seconds of clock apart, each taking ``seconds_at[thread count]``;
    proposals are switched to at once (as the engine does for a run that computes the same
    numbers at any count)."""
    for _ in range(steps):
        clock.now += tick
        follower.step_done(seconds_at[torch.get_num_threads()])
        if follower.proposal is not None:
            follower.switch()


def test_the_follower_moves_down_when_the_load_comes_and_up_when_it_goes(follower_at_2):
    f, clock = follower_at_2
    # Idle: one look at 1 thread (slower), back to 2, and nothing more.
    drive(f, clock, 2000, 0.003, {2: 0.003, 1: 0.004})
    assert torch.get_num_threads() == 2 and f.note is None and f.fastest[2] == pytest.approx(0.003)
    assert f.fastest[1] == pytest.approx(0.004)
    drive(f, clock, 300, 0.004, {2: 0.004})  # a little slower (under CHANGE): still nothing
    assert torch.get_num_threads() == 2
    # The load arrives: two slow windows in a row, and it tries 1 thread; 1 thread is faster: kept.
    under_load = {2: 0.05, 1: 0.006}
    drive(f, clock, 80, 0.05, under_load)
    assert torch.get_num_threads() == 1 and f.note == "1 (was 2: load)" and threads.switches()[-1] == f.note
    # Under load one thread stays (nothing below it); after RECHECK_S it tries 2 again, which is
    # slower under load: back to 1, and the next recheck waits twice as long.
    drive(f, clock, 100, 0.006, under_load)
    clock.now += f.RECHECK_S
    drive(f, clock, 200, 0.006, under_load)
    assert torch.get_num_threads() == 1 and f.schedule.recheck_s == 2 * f.RECHECK_S
    # The load leaves: the next recheck finds 2 threads faster and keeps them.
    clock.now += f.schedule.recheck_s
    drive(f, clock, 400, 0.004, {2: 0.003, 1: 0.004})
    assert torch.get_num_threads() == 2 and f.note == "2 (was 1: load gone)"


def test_under_load_more_threads_that_are_fast_now_and_then_do_not_count_as_the_load_gone(follower_at_2):
    """Measured next to two busy processes (a DiT step): 1 thread 95 ms; 2 threads now 97 ms,
    now 2.3 s. A recheck whose windows happen to be a little faster than 1 thread's is not the
    load gone (2 threads ran 36 ms idle); a recheck that meets a 2.3 s step ends at that step."""
    f, clock = follower_at_2
    drive(f, clock, 400, 0.036, {2: 0.036, 1: 0.058})  # idle: the first look finds 1 thread slower
    while torch.get_num_threads() == 2:  # the load: two slow windows, then 1 thread, kept
        drive(f, clock, 1, 2.3, {2: 2.3})
    drive(f, clock, 60, 0.095, {1: 0.095})
    assert torch.get_num_threads() == 1 and f.note == "1 (was 2: load)" and f.schedule.recheck_s == f.RECHECK_S
    clock.now += f.schedule.recheck_s
    drive(f, clock, 200, 0.095, {2: 0.08, 1: 0.095})  # 2 threads 1.19x faster, but 2.2x their idle time
    assert torch.get_num_threads() == 1 and f.note == "1 (was 2: load)"
    assert f.schedule.recheck_s == 2 * f.RECHECK_S
    clock.now += f.schedule.recheck_s
    slow_steps = []

    def two_threads_stall(n):
        slow_steps.append(n == 2)
        return 2.3 if n == 2 else 0.095
    for _ in range(200):
        clock.now += 0.095
        f.step_done(two_threads_stall(torch.get_num_threads()))
        if f.proposal is not None:
            f.switch()
    assert torch.get_num_threads() == 1 and sum(slow_steps) == 1, "the try waited for two windows of 2.3 s steps"
    # The load leaves: 2 threads are back at their idle speed, and kept.
    clock.now += f.schedule.recheck_s
    drive(f, clock, 300, 0.04, {2: 0.038, 1: 0.058})
    assert torch.get_num_threads() == 2 and f.note == "2 (was 1: load gone)"


def test_a_window_of_very_slow_steps_closes_after_two_of_them(follower_at_2):
    f, clock = follower_at_2
    drive(f, clock, 400, 0.036, {2: 0.036, 1: 0.058})
    went_down_after = None
    for k in range(1, 20):
        clock.now += 2.3
        f.step_done(2.3)
        if f.proposal is not None:
            went_down_after = k
            break
    assert went_down_after <= 5, "two windows of five 2.3 s steps each (about 23 s)"


def test_a_try_that_is_no_faster_goes_back_and_backs_off(follower_at_2):
    f, clock = follower_at_2
    drive(f, clock, 2000, 0.003, {2: 0.003, 1: 0.004})  # (its first look: 1 thread no faster)
    gap = f.gap_s
    drive(f, clock, 250, 0.01, {2: 0.01, 1: 0.01})  # slow at either count (a slower phase of training, not load)
    assert torch.get_num_threads() == 2 and f.note is None and f.gap_s == 2 * gap


def test_a_loop_that_starts_under_load_finds_it_at_its_first_look(follower_at_2):
    """The load came after the policy's choice, before the loop: no idle speed to compare with."""
    f, clock = follower_at_2
    drive(f, clock, 100, 0.05, {2: 0.05, 1: 0.006})
    assert torch.get_num_threads() == 1 and f.note == "1 (was 2: load)"


def test_loops_share_when_to_look_but_not_when_the_load_shows(follower_at_2):
    """A lecture of many short loops looks for a load on no evidence only as often as one long
    loop would; a loop whose steps slow down sharply still tries fewer threads at once."""
    first, clock = follower_at_2
    idle = {2: 0.003, 1: 0.004}
    drive(first, clock, 700, 0.003, idle)  # its first look: 1 thread no faster, back to 2
    assert first.fastest.get(1) == pytest.approx(0.004) and torch.get_num_threads() == 2
    second = threads.LoadFollower(2, clock=clock, schedule=first.schedule)
    drive(second, clock, 700, 0.003, idle)
    assert 1 not in second.fastest, "the next loop looked again right away"
    third = threads.LoadFollower(2, clock=clock, schedule=first.schedule)
    drive(third, clock, 60, 0.003, idle)  # a baseline of its own, then the load
    drive(third, clock, 80, 0.05, {2: 0.05, 1: 0.006})
    assert torch.get_num_threads() == 1 and third.note == "1 (was 2: load)"


def test_a_try_still_running_when_the_loop_ends_is_judged_on_the_steps_it_ran(follower_at_2):
    f, clock = follower_at_2
    drive(f, clock, 2000, 0.003, {2: 0.003, 1: 0.004})
    drive(f, clock, 28, 0.05, {2: 0.05, 1: 0.006})  # two slow windows: trying 1 thread
    assert f.trying is not None and torch.get_num_threads() == 1
    f.since_switch.clear()  # (as if the loop ended right at the switch)
    f.finish()  # nothing ran at 1 thread: back to the count it came from
    assert torch.get_num_threads() == 2 and f.trying is None and f.proposal is None
    for at_one, stays in ((0.006, 1), (0.06, 2)):  # the load is there / it was a slow phase, not load
        torch.set_num_threads(2)
        g = threads.LoadFollower(2, clock=clock)
        drive(g, clock, 2000, 0.003, {2: 0.003, 1: 0.004})
        drive(g, clock, 28, 0.05, {2: 0.05, 1: 0.006})
        assert g.trying is not None and torch.get_num_threads() == 1
        g.since_switch[:] = [at_one] * 3  # three steps at 1 thread, then the loop ends
        g.finish()
        assert torch.get_num_threads() == stays and g.trying is None and g.proposal is None
        assert (g.note == "1 (was 2: load)") == (stays == 1)


def test_the_policy_gives_numpy_one_blas_thread():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    threads.apply_thread_policy(max_threads=1)
    pools = threadpoolctl.threadpool_info()
    assert all(p["num_threads"] == 1 for p in pools if p["internal_api"] == "openblas")


def test_a_fixed_follower_stays_and_says_so(follower_at_2):
    f, clock = follower_at_2
    f.keep("this run's results depend on the count")
    drive(f, clock, 100, 0.05, {2: 0.05})
    assert f.proposal is None and torch.get_num_threads() == 2
    assert f.note == "2 kept (this run's results depend on the count)"


def test_no_follower_on_one_cpu_on_cuda_or_with_a_forced_count(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    assert isinstance(threads.LoadFollower.for_this_process("cpu"), threads.LoadFollower)
    assert threads.LoadFollower.for_this_process("cuda") is None
    monkeypatch.setenv(threads.THREADS_ENV, "2")
    assert threads.LoadFollower.for_this_process("cpu") is None
    monkeypatch.delenv(threads.THREADS_ENV)
    monkeypatch.setattr(threads, "usable_cpus", lambda: 1)
    assert threads.LoadFollower.for_this_process("cpu") is None
    with pytest.raises(ValueError, match="usable"):
        threads.LoadFollower(1)
    with pytest.raises(ValueError, match="proposal"):
        threads.LoadFollower(2).switch()
    with pytest.raises(ValueError, match="seconds"):
        threads.LoadFollower(2).step_done(float("nan"))


class SwitchAt(threads.LoadFollower):
    """A follower that proposes the other count at one step (as if the load had changed)."""

    def __init__(self, at: int):
        super().__init__(2)
        self.at, self.calls = at, 0

    def step_done(self, seconds):
        self.calls += 1
        if self.calls == self.at:
            self.proposal = 1 if torch.get_num_threads() > 1 else 2
            self.note = "switched"


def _train(kind, follower_at=None, monkeypatch=None, start=2):
    from cs231n_gen.autoencoding import train_autoencoder
    from cs231n_gen.data import eight_gaussians, shapes
    from cs231n_gen.gan import train_gan
    from cs231n_gen.nn.autoencoder import VAE, PatchDiscriminator
    from cs231n_gen.nn.mlp import TimeMLP
    from cs231n_gen.paths import rectified_flow_loss
    from cs231n_gen.train import fit

    if start is not None:
        torch.set_num_threads(start)
    made = []
    if follower_at is not None:
        monkeypatch.setattr(threads.LoadFollower, "for_this_process",
                            classmethod(lambda cls, device=None: made.append(SwitchAt(follower_at)) or made[-1]))
    torch.manual_seed(0)
    common = dict(steps=12, device="cpu", progress=False, cache=False, log_every=4)
    if kind == "rf":
        model = TimeMLP(hidden=64)
        data = eight_gaussians().sample(2048, generator=torch.Generator().manual_seed(0))
        history = fit(model, lambda m, b, g: rectified_flow_loss(m, b, generator=g), data, batch_size=256, **common)
        out = (list(model.parameters()), history.loss)
    elif kind == "threads in the loss":  # a loss whose value depends on the thread count
        model = TimeMLP(hidden=64)
        data = eight_gaussians().sample(2048, generator=torch.Generator().manual_seed(0))
        history = fit(model, lambda m, b, g: rectified_flow_loss(m, b, generator=g) * (1 + torch.get_num_threads()),
                      data, batch_size=256, **common)
        out = (list(model.parameters()), history.loss)
    elif kind == "gan":
        G = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
        G.z_dim = 2
        D = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(32, 1))
        data = eight_gaussians().sample(2048, generator=torch.Generator().manual_seed(0))
        history = train_gan(G, D, data, batch_size=64, snapshot_every=1, snapshot_n=8, **common)
        out = ([*G.parameters(), *D.parameters()], [*history.d_loss, *(s.samples for s in history.snapshots)])
    else:
        images = shapes(32, generator=torch.Generator().manual_seed(0)).images
        vae, critic = VAE(latent_channels=4, width=8, downsample=4), PatchDiscriminator(width=8)
        history = train_autoencoder(vae, images, discriminator=critic, batch_size=8, disc_start=4, **common)
        out = ([*vae.parameters(), *critic.parameters()], history.mse)
    return out, made


def _same(a, b):
    return all(torch.equal(torch.as_tensor(x), torch.as_tensor(y)) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("kind", ["rf", "gan", "autoencoder", "threads in the loss"])
def test_a_switch_mid_run_never_changes_the_results(kind, monkeypatch):
    (params, history), _ = _train(kind)
    (params_s, history_s), made = _train(kind, follower_at=5, monkeypatch=monkeypatch)
    follower = made[0]
    assert _same(params, params_s) and _same(history, history_s), "a switch changed the run's numbers"
    if kind == "threads in the loss":  # the trial step differs: the run keeps its count and says so
        assert follower.invariant is False and follower.fixed and torch.get_num_threads() == 2
        assert follower.note == "2 kept (this run's results depend on the count)"
    elif follower.invariant:  # the same numbers at either count: it switched
        assert torch.get_num_threads() == 1
    else:  # (a kernel of this model sums by thread on this machine: kept)
        assert torch.get_num_threads() == 2


def _sample(which, follower_at=None, monkeypatch=None):
    """A sampler's result and its model's call count, with a follower that proposes the other
    count at call ``follower_at`` (None: no switch)."""
    from cs231n_gen import sampling
    from cs231n_gen.paths import vp_cosine

    torch.set_num_threads(2)
    made = []
    if follower_at is not None:
        monkeypatch.setattr(threads.LoadFollower, "for_this_process",
                            classmethod(lambda cls, device=None: made.append(SwitchAt(follower_at)) or made[-1]))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.SiLU(), torch.nn.Linear(64, 2))
    if which == "threads in the model":  # a model whose output depends on the thread count
        def model(x, t):
            return net(torch.cat([x, t[:, None]], 1)) * (1 + torch.get_num_threads())
    else:
        def model(x, t):
            return net(torch.cat([x, t[:, None]], 1))
    counted = sampling.CountCalls(model)

    def wrapper(x_t, t):  # the counter inside another callable (as under sampling.Guided)
        return counted(x_t, t)

    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(1))
    if which == "ddpm":
        out = sampling.ddpm(wrapper, x, 12, path=vp_cosine(), target="eps", generator=torch.Generator().manual_seed(2))
    else:
        out = sampling.euler(wrapper, x, 12)
    return out, counted.calls, made


@pytest.mark.parametrize("which", ["euler", "ddpm", "threads in the model"])
def test_a_sampler_follows_the_load_without_changing_its_samples(which, monkeypatch):
    out, calls, _ = _sample(which)
    out_s, calls_s, made = _sample(which, follower_at=5, monkeypatch=monkeypatch)
    follower = made[0]
    assert torch.equal(out, out_s), "a switch changed the samples"
    assert calls == calls_s == 12, "the trial run was counted as a model call"
    if which == "threads in the model":
        assert follower.invariant is False and torch.get_num_threads() == 2
        assert follower.note == "2 kept (this loop's results depend on the count)"
    else:
        assert follower.invariant is True and torch.get_num_threads() == 1


@pytest.mark.parametrize("kind", ["rf", "gan", "threads in the loss"])
def test_a_loop_begun_at_another_count_computes_the_policy_count_numbers(kind, monkeypatch):
    if threads.LoadFollower.for_this_process("cpu") is None:
        pytest.skip("one usable CPU or a forced count: no follower")
    monkeypatch.setattr(threads, "_policy_threads", 2)
    (params, history), _ = _train(kind)  # the count stays 2
    torch.set_num_threads(1)  # as an earlier loop leaves it when it found a load
    notes = len(threads.switches())
    (params_l, history_l), _ = _train(kind, start=None)
    assert _same(params, params_l) and _same(history, history_l), "the last loop's count changed this run's numbers"
    if kind == "threads in the loss":  # results depend on the count: started over at the policy's, and said so
        assert torch.get_num_threads() == 2
        assert threads.switches()[notes:] == ["2 kept (this run's results depend on the count)"]
    elif kind == "rf":  # the same bits at 1 thread: the whole run stayed at the count the load called for
        assert torch.get_num_threads() == 1 and threads.switches()[notes:] == []


def _sampled_with(model, x, start_threads):
    from cs231n_gen import sampling

    torch.set_num_threads(start_threads)
    return sampling.euler(model, x, 12)


@pytest.mark.parametrize("which", ["euler", "threads in the model"])
def test_a_sampler_begun_at_another_count_gives_the_policy_count_samples_and_checks_once(which, monkeypatch):
    if threads.LoadFollower.for_this_process("cpu") is None:
        pytest.skip("one usable CPU or a forced count: no follower")
    from cs231n_gen import sampling

    monkeypatch.setattr(threads, "_policy_threads", 2)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.SiLU(), torch.nn.Linear(64, 2))
    runs = []  # every run of the model, trials included

    def model(x, t):
        runs.append(torch.get_num_threads())
        out = net(torch.cat([x, t[:, None]], 1))
        return out * (1 + torch.get_num_threads()) if which == "threads in the model" else out

    counted = sampling.CountCalls(model)
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(1))
    want = _sampled_with(counted, x, 2)
    runs.clear()
    counted.reset()
    got = _sampled_with(counted, x, 1)
    assert torch.equal(want, got), "the last loop's count changed the samples"
    assert counted.calls == 12 and len(runs) == 13, "one extra run checks, and the counter leaves it out"
    if which == "threads in the model":
        assert torch.get_num_threads() == 2 and runs == [2, 1] + [2] * 11  # the policy's, the check, the policy's
    else:
        assert runs == [2] + [1] * 12  # the policy's, the check, and on at 1
        runs.clear()
        assert torch.equal(_sampled_with(counted, x, 1), want) and runs == [1] * 12, "a second call checked again"


def test_timed_code_does_not_follow_the_load(monkeypatch):
    from cs231n_gen.runtime import median_seconds

    monkeypatch.setattr(threads, "_policy_threads", 2)
    torch.set_num_threads(1)  # what an earlier loop left
    seen = []
    median_seconds(lambda: seen.append((threads.LoadFollower.for_this_process("cpu"), torch.get_num_threads())),
                   repeats=2, warmup=0)
    assert all(follower is None for follower, _ in seen)  # no follower inside what is timed
    assert torch.get_num_threads() == 1  # the count there was, put back (not the policy's)
    assert threads.LoadFollower.for_this_process("cpu") is not None or threads.usable_cpus() < 2
