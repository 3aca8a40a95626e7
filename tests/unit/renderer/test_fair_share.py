"""The fair-share scheduling policy: fairness between users, model affinity within its bound, never idle."""

from __future__ import annotations

import random

from services.renderer.fair_share import Backend, Job, Shares, UserShare, best_backend, places, plan

URLS = ("http://a", "http://b", "http://c")


def jobs_of(user: str, count: int, start: float, model: str = "qwen", urls=URLS) -> list[Job]:
    return [Job(f"{user}-{i}", user, model, start + i, frozenset(urls)) for i in range(count)]


def rounds(waiting: list[Job], backends: list[Backend], *, affinity_skips: int = 2) -> list[list[str]]:
    """Every backend takes one job, all of them finish, again: the job ids started in each round."""
    shares, started = Shares(), []
    loaded = {b.url: b.loaded for b in backends}
    while waiting:
        free = [Backend(b.url, loaded=loaded[b.url]) for b in backends]
        grants, shares = plan(waiting, free, shares, affinity_skips=affinity_skips)
        assert grants, "a backend stayed idle with jobs waiting"
        by_id = {j.id: j for j in waiting}
        for grant in grants:
            loaded[grant.url] = by_id[grant.job].model
        started.append([g.job for g in grants])
        done = {g.job for g in grants}
        waiting = [j for j in waiting if j.id not in done]
        users = {u: UserShare(0, s.served, s.skips) for u, s in shares.users.items()}  # all finished
        shares = Shares(users, shares.grants)
    return started


def test_five_light_users_start_in_the_first_two_rounds_despite_a_batch_of_fifty_ahead() -> None:
    heavy = jobs_of("heavy", 50, 0)
    light = [job for n in range(5) for job in jobs_of(f"light{n}", 1, 100 + n)]
    started = rounds(heavy + light, [Backend(url) for url in URLS])
    first_two = started[0] + started[1]
    assert {f"light{n}-0" for n in range(5)} <= set(first_two)
    # The heavy user keeps one backend meanwhile (never idle), and has them all once the others are done.
    assert [s.split("-")[0] for s in started[0]].count("heavy") == 1
    assert all(s.startswith("heavy") for s in started[2])
    # In arrival order (today's FIFO), the first light job would start in round 17.


def test_a_user_never_gets_a_slot_while_another_waiting_user_runs_fewer() -> None:
    rng = random.Random(16)
    waiting = [Job(i, f"u{rng.randrange(6)}", rng.choice(["qwen", "flux"]), i, frozenset(rng.sample(URLS, 2)))
               for i in range(80)]
    shares = Shares({"u0": UserShare(running=2), "u1": UserShare(running=1)})
    grants, after = plan(waiting, [Backend(u, free=2, loaded="flux") for u in URLS], shares)
    running = {u: s.running for u, s in shares.users.items()}
    left = list(waiting)
    for grant in grants:
        job = next(j for j in left if j.id == grant.job)
        left.remove(job)
        # Users with a job that could have had this slot (same backend) ran no fewer jobs.
        rivals = {j.user for j in left if grant.url in j.backends}
        assert all(running.get(job.user, 0) <= running.get(r, 0) for r in rivals)
        running[job.user] = running.get(job.user, 0) + 1
    assert len(grants) == 6 and after.grants == 6


def test_a_free_backend_is_never_left_idle_while_a_waiting_job_can_run_there() -> None:
    rng = random.Random(7)
    for _ in range(200):
        backends = [Backend(u, free=rng.randrange(3), healthy=rng.random() > 0.2,
                            loaded=rng.choice([None, "qwen", "flux"]), load=rng.randrange(4)) for u in URLS]
        waiting = [Job(i, f"u{rng.randrange(4)}", rng.choice(["qwen", "flux", "sdxl"]), i,
                       frozenset(rng.sample(URLS, rng.randrange(1, 4)))) for i in range(rng.randrange(12))]
        grants, _ = plan(waiting, backends, Shares(), affinity_skips=rng.randrange(4))
        used = {u: sum(g.url == u for g in grants) for u in URLS}
        left = [j for j in waiting if j.id not in {g.job for g in grants}]
        for b in backends:
            assert used[b.url] <= b.free
            if used[b.url] < b.free:
                # Still free: no job left could run there (serves it, and healthy or its only hope).
                for job in left:
                    mine = [x for x in backends if x.url in job.backends]
                    runnable = b.url in job.backends and (b.healthy or not any(x.healthy for x in mine))
                    assert not runnable


def test_affinity_runs_the_loaded_model_and_passes_the_head_over_at_most_the_bound() -> None:
    # One backend with qwen loaded, free again and again; alice (first in fair order) wants flux, the
    # others bring qwen jobs: alice waits for at most 2 grants, then gets her turn at the cost of a swap.
    waiting = jobs_of("alice", 1, 0, "flux", ["http://a"]) + [
        job for n in range(4) for job in jobs_of(f"q{n}", 1, 10 + n, "qwen", ["http://a"])]
    started = rounds(waiting, [Backend("http://a", loaded="qwen")])
    assert [s[0] for s in started][:3] == ["q0-0", "q1-0", "alice-0"]
    strict = rounds(waiting, [Backend("http://a", loaded="qwen")], affinity_skips=0)
    assert strict[0] == ["alice-0"]


def swaps(affinity_skips: int) -> int:
    rng = random.Random(3)
    waiting = [Job(i, f"u{i % 5}", rng.choice(["qwen", "flux"]), i, frozenset(URLS)) for i in range(60)]
    backends = [Backend(u) for u in URLS]
    shares, loaded, count = Shares(), {u: None for u in URLS}, 0
    while waiting:
        grants, shares = plan(waiting, [Backend(b.url, loaded=loaded[b.url]) for b in backends], shares,
                              affinity_skips=affinity_skips)
        by_id = {j.id: j for j in waiting}
        for grant in grants:
            count += grant.swap
            loaded[grant.url] = by_id[grant.job].model
        waiting = [j for j in waiting if j.id not in {g.job for g in grants}]
        shares = Shares({u: UserShare(0, s.served, s.skips) for u, s in shares.users.items()}, shares.grants)
    return count


def test_affinity_swaps_models_less_often_than_strict_fair_order() -> None:
    assert swaps(2) < swaps(0)


def test_a_job_takes_the_healthy_backend_with_its_model_then_an_empty_one_then_the_least_loaded() -> None:
    job = Job(1, "u", "qwen", 0, frozenset(URLS))
    assert best_backend(job, [Backend("http://a", loaded="flux"), Backend("http://b", loaded="qwen", load=3)]).url \
        == "http://b"
    assert best_backend(job, [Backend("http://a", loaded="flux"), Backend("http://b")]).url == "http://b"
    assert best_backend(job, [Backend("http://a", load=2), Backend("http://b", load=1)]).url == "http://b"
    assert best_backend(job, [Backend("http://a", loaded="qwen", healthy=False), Backend("http://b")]).url \
        == "http://b"


def test_an_unhealthy_backend_is_tried_only_by_a_job_with_no_healthy_one() -> None:
    down = Backend("http://a", healthy=False)
    busy_up = Backend("http://b", free=0)
    waiting = [Job("both", "u1", "qwen", 0, frozenset({"http://a", "http://b"})),
               Job("only-a", "u2", "qwen", 1, frozenset({"http://a"}))]
    grants, _ = plan(waiting, [down, busy_up], Shares())
    # "both" waits for b (up, busy); "only-a" has nothing better than a stale probe, so it tries a.
    assert [(g.job, g.url) for g in grants] == [("only-a", "http://a")]


def test_a_users_own_newer_jobs_on_the_loaded_model_pass_its_oldest_over_at_most_the_bound() -> None:
    waiting = jobs_of("u", 1, 0, "flux", ["http://a"]) + [
        Job(f"u-q{i}", "u", "qwen", 1 + i, frozenset({"http://a"})) for i in range(5)]
    started = rounds(waiting, [Backend("http://a", loaded="qwen")])
    assert [s[0] for s in started][:3] == ["u-q0", "u-q1", "u-0"]


def test_a_waiting_jobs_place_is_its_round_robin_turn() -> None:
    waiting = jobs_of("heavy", 4, 0) + jobs_of("light", 2, 10)
    shares = Shares({"heavy": UserShare(running=1, served=5)}, grants=6)
    # light runs nothing: first; then heavy (served before light's grant), then turn by turn.
    assert places(waiting, shares) == {"light-0": 0, "heavy-0": 1, "light-1": 2, "heavy-1": 3, "heavy-2": 4,
                                       "heavy-3": 5}
    # The same order as the grants on one slot freed one at a time.
    order, state = [], shares
    left = list(waiting)
    while left:
        (grant,), state = plan(left, [Backend("http://a")], state)
        order.append(grant.job)
        left = [j for j in left if j.id != grant.job]
    assert order == sorted(places(waiting, shares), key=places(waiting, shares).get)
