#!/usr/bin/env python3
"""A discrete-event model of the continuous engine on one GPU, used to choose the step ladder and
the rule for a second batch in flight before spending device time (docs/notes/modernbert.md,
session 7). It reproduced run 16 within about 20%; it assumed a step's fixed GPU cost of 0.47 ms
where run 19 then measured about 1.2 ms, so its small-step figures are optimistic.

Model: MS MARCO-like lengths (lognormal, mean about 78 tokens, at most 218); packed rows of 256
at 96% occupancy; a step's GPU time 1.2 ms + 0.59 us a slot (run 40's full steps; run 19 had
0.67 us, session 7 assumed 0.47 ms fixed), host time before (0.3 ms) and after it (0.7 ms +
0.04 us a slot); two workers; a busy replica starts its second batch once the queue holds
`frac` of the tokens in flight and at least `min_second`, or, with `lead` (session 10's device
clock), lead before the device is free, with whatever waits (the sim knows the device's end
exactly; session 10's engine had to predict it from Run's landings, which left the H200 idle
between steps, and was dropped: runs 30-32); clients add 0.4 ms of round trip. Prints
requests/s, p50, p99, mean step occupancy, GPU busy share and tokens a step for closed loops
of 256, 8 and 1 clients and open loops at 50% and 70% of an 18,300 passages/s peak. With run
19's costs it reproduced run 27 (256 clients 13.2 k req/s against 13.6-13.9 k; open loop at 70%
p50 14.4 ms against 14.3, p99 31.8 against 26.7-30.0). With run 40's it puts 256 clients at
14.6 k where run 46 measured 15.6 k, and overstates the open loop's tail (p99 27 ms at 70%
against 13.9).

Session 14's rows: a second batch at 0.9, 1.0 and 1.1 of the tokens in flight. 1.0 gives 16.4 k
at 256 clients and its neighbours 14.3 k and 13.8 k: the closed loop's clients come back
together with their batch, and only a threshold of exactly one batch waits for all of them.
Real traffic does not return in batches, so that is a resonance, not a rule to build.

Usage: python3 scripts/model/engine_sim.py
"""
import heapq
import math
import random

LADDER_DENSE = [4, 8, 12, 16, 24, 32, 40, 48, 56, 64]  # rows of 256, today's default
LADDER_OLD = [4, 16, 64]                                # 1,024, 4,096 and 16,384 slots
MAX_TOKENS = 16384


GPU_FIXED_MS = 1.2  # a step's fixed GPU cost with two in flight (run 19; session 7 assumed 0.47)


GPU_MS_A_SLOT = 0.59e-3  # run 40, full steps with two in flight (run 19: 0.667e-3)


def gpu_ms(slots):
    return GPU_FIXED_MS + GPU_MS_A_SLOT * slots


def pre_ms(slots):
    return 0.3 + 0.01e-3 * slots


def post_ms(slots):
    return 0.7 + 0.04e-3 * slots


def length():
    return max(8, min(218, int(random.lognormvariate(math.log(70), 0.45))))


def slots_for(tokens, ladder):
    if tokens <= 64:
        return 64
    if tokens <= 128:
        return 128
    rows = math.ceil(tokens / (256 * 0.96))
    return next((r for r in ladder if r >= rows), ladder[-1]) * 256


def run(ladder, frac, clients=256, batch=1, rate=None, horizon_ms=8000.0, rtt_ms=0.4, warm_ms=500.0,
        round_down=0.0, min_second=2048, lead=None):
    """round_down: a busy replica's batch is cut to the largest rung it fills when what that
    leaves to the next batch is at most this share of its tokens (1.0: always), instead of
    running on the rung above; min_second is the floor of queued tokens under a second batch in
    flight (MinPipelineTokens); lead (ms), when set, is the device clock of session 10: a busy
    replica sends its next batch lead before the device is free, with whatever waits, instead of
    at frac of the tokens in flight."""
    events, seq = [], 0

    def push(t, kind, data=None):
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, data))

    queue, requests, latencies, occupancy, steps = [], {}, [], [], []
    gpu_free, idle_workers, busy_tokens, busy_batches, next_id = 0.0, 2, 0, 0, 0

    def new_request(t):
        nonlocal next_id
        next_id += 1
        requests[next_id] = [t, batch]
        queue.extend((t, length(), next_id) for _ in range(batch))

    def try_start(t):
        nonlocal idle_workers, busy_tokens, busy_batches, gpu_free
        while idle_workers and queue:
            if busy_batches and lead is not None:
                queued = sum(x for _, x, _ in queue)
                send_at = gpu_free - pre_ms(slots_for(queued, ladder)) - lead
                if queued < MAX_TOKENS * 0.96 and t < send_at - 1e-9:
                    push(send_at, "wake")
                    return
            elif busy_batches:
                threshold = MAX_TOKENS if frac is None else min(MAX_TOKENS, max(min_second, int(busy_tokens * frac)))
                if sum(x for _, x, _ in queue) < threshold:
                    return
            budget, taken, rest = MAX_TOKENS, [], []
            for q in queue:
                if q[1] <= budget:
                    budget -= q[1]
                    taken.append(q)
                else:
                    rest.append(q)
            tokens = sum(x for _, x, _ in taken)
            rows = tokens / (256 * 0.96)
            below = max((r for r in ladder if r <= rows), default=0)
            if round_down and busy_batches and rows > ladder[0] and rows - below <= round_down * rows:
                cap = below * 256 * 0.96
                kept, tokens = [], 0
                for q in taken:
                    if tokens + q[1] <= cap:
                        tokens += q[1]
                        kept.append(q)
                    else:
                        rest.append(q)
                rest.sort(key=lambda q: q[0])
                taken = kept
            queue[:] = rest
            slots = slots_for(tokens, ladder)
            occupancy.append(tokens / slots)
            idle_workers -= 1
            busy_tokens += tokens
            busy_batches += 1
            start = max(t + pre_ms(slots), gpu_free)
            gpu_free = start + gpu_ms(slots)
            if t > warm_ms:
                steps.append((tokens, gpu_ms(slots)))
            push(gpu_free + post_ms(slots), "done", (taken, tokens))

    if rate is None:
        for _ in range(clients):
            new_request(random.random())
    else:
        t = 0.0
        while t < horizon_ms:
            t += random.expovariate(rate / 1000.0)
            push(t, "arrive")
    push(1.0, "kick")
    while events:
        t, _, kind, data = heapq.heappop(events)
        if t > horizon_ms:
            break
        if kind in ("arrive", "client"):
            new_request(t)
        elif kind == "done":
            taken, tokens = data
            idle_workers += 1
            busy_tokens -= tokens
            busy_batches -= 1
            for _, _, rid in taken:
                requests[rid][1] -= 1
                if requests[rid][1] == 0:
                    sent = requests.pop(rid)[0]
                    if t > warm_ms:
                        latencies.append(t - sent + rtt_ms)
                    if rate is None:
                        push(t + rtt_ms, "client")
        try_start(t)
    latencies.sort()
    n = len(latencies)
    if not n:
        return "no requests"
    return (f"{n / ((horizon_ms - warm_ms) / 1000):7.0f} req/s p50 {latencies[n // 2]:5.1f} p99 {latencies[int(n * 0.99)]:5.1f} ms"
            f" occupancy {sum(occupancy) / len(occupancy):.2f} GPU busy {sum(g for _, g in steps) / (horizon_ms - warm_ms):.2f}"
            f" tokens a step {sum(x for x, _ in steps) / max(1, len(steps)):5.0f}")


def main():
    for name, ladder, kw in (
            ("session 9's engine: second batch at half the tokens in flight", LADDER_DENSE, dict(frac=0.5)),
            ("  and busy batches always cut to the rung below", LADDER_DENSE, dict(frac=0.5, round_down=1.0)),
            ("  second batch at 0.9 of the tokens in flight", LADDER_DENSE, dict(frac=0.9)),
            ("  second batch at a full one", LADDER_DENSE, dict(frac=1.0)),
            ("  second batch at 1.1 of the tokens in flight", LADDER_DENSE, dict(frac=1.1)),
            ("  the old three-rung ladder", LADDER_OLD, dict(frac=0.5)),
            ("session 10: the device clock (lead 0.3 ms)", LADDER_DENSE, dict(frac=0.5, lead=0.3)),
            ("  lead 1 ms", LADDER_DENSE, dict(frac=0.5, lead=1.0)),
            ("  clock and busy batches cut when at most 15% waits", LADDER_DENSE,
             dict(frac=0.5, lead=0.3, round_down=0.15)),
            ("  clock and busy batches always cut", LADDER_DENSE, dict(frac=0.5, lead=0.3, round_down=1.0))):
        cases = [dict(clients=256), dict(clients=8), dict(clients=1, batch=32),
                 dict(batch=32, rate=0.5 * 18300 / 32), dict(batch=32, rate=0.7 * 18300 / 32)]
        cells = []
        for case in cases:
            random.seed(7)
            cells.append(run(ladder, **kw, **case))
        print(f"{name}:")
        for label, cell in zip(("256 clients", "8 clients", "32 passages, 1 client", "open 50%", "open 70%"), cells):
            print(f"  {label:22s} {cell}")


if __name__ == "__main__":
    main()
