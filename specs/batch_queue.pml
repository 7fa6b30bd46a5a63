/* batch_queue.pml — the BatchQueue's scheduler: submit (reject or block when full), batch formation
 * with max_batch_size and max_queue_delay, deadlines (in the queue and while blocked), the timer
 * thread, executor threads, a failing batch, and stop() (drain or cancel) racing with submissions.
 *
 * Mirrors (checked by specs/check_mirrors.py; update the hashes with --update only after
 * re-reading the model against the code):
 *   mirrors src/serve/scheduler.cpp Scheduler::submit sha256:7cf7d5b93689275c
 *   mirrors src/serve/scheduler.cpp Scheduler::complete_now sha256:b1561dc0ee7ca391
 *   mirrors src/serve/scheduler.cpp Scheduler::place sha256:f0eab811b775e01d
 *   mirrors src/serve/scheduler.cpp Scheduler::drain_intake sha256:3c63c452b82e7104
 *   mirrors src/serve/scheduler.cpp Scheduler::settle_after_stop sha256:87e06d3dc1270d28
 *   mirrors src/serve/scheduler.cpp Scheduler::try_admit sha256:6c6bbc35223c7028
 *   mirrors src/serve/scheduler.cpp Scheduler::dequeued sha256:2ef4366b1a1c947a
 *   mirrors src/serve/scheduler.cpp Scheduler::take sha256:84cd99b8310719bd
 *   mirrors src/serve/scheduler.cpp Scheduler::next_batch sha256:88f7c10f5e35375c
 *   mirrors src/serve/scheduler.cpp Scheduler::executor_main sha256:ec7a21d061e0606c
 *   mirrors src/serve/scheduler.cpp Scheduler::timer_main sha256:9184d118e1eb3b8e
 *   mirrors src/serve/scheduler.cpp Scheduler::stop sha256:ea5fbbc7f76c3e04
 *   mirrors src/serve/scheduler.cpp Scheduler::begin_stop sha256:3b54da35d51e078f
 *   mirrors src/serve/scheduler.cpp Scheduler::join sha256:ebd8c7aaae6e4cdb
 *   mirrors src/serve/scheduler.cpp Scheduler::cancel_queued sha256:97987e0d75e853ba
 *   mirrors src/serve/scheduler.cpp Scheduler::finish sha256:eed7d46185bb1f03
 * (and Request::transition in src/serve/request.h: a compare-and-swap of the request's state,
 * modelled as one atomic test-and-set of st[i]; a one-line function, not hashed.)
 *
 * Runs (specs/check.sh; each is an exhaustive search of the whole state space):
 *   check: -DNSUB=3 -DOVERFLOW=BLOCK -DMODE=DRAIN -DDEADLINES=5
 *   check: -DNSUB=3 -DOVERFLOW=BLOCK -DMODE=CANCEL -DDEADLINES=6
 *   check: -DNSUB=3 -DOVERFLOW=REJECT -DMODE=CANCEL -DDEADLINES=7 -DROWS2=2
 *   check: -DNSUB=3 -DOVERFLOW=REJECT -DMODE=DRAIN -DMAXQ=2 -DDEADLINES=3 -DINVALID=4
 *   check: -DNSUB=3 -DNSTOP=2 -DOVERFLOW=BLOCK -DMODE=DRAIN -DDEADLINES=5
 *   check: -DNSUB=3 -DNEXEC=2 -DOVERFLOW=BLOCK -DMODE=CANCEL -DDEADLINES=7 -DROWS2=4
 *   check: -DNSUB=3 -DNEXEC=2 -DOVERFLOW=BLOCK -DMODE=DRAIN -DSTOP_LAST
 *   check: -DNSUB=4 -DOVERFLOW=BLOCK -DMODE=CANCEL -DDEADLINES=5
 *   check: -DNSUB=4 -DOVERFLOW=BLOCK -DMODE=DRAIN -DDEADLINES=15 -DROWS2=2
 *   check: -DNSUB=4 -DNEXEC=2 -DOVERFLOW=BLOCK -DMODE=CANCEL -DSTOP_LAST -DDEADLINES=1
 *   violation: -DNSUB=2 -DOVERFLOW=REJECT -DDEADLINES=3 -DBUG_FULL_CHECK_OUTSIDE_LOCK
 *   violation: -DNSUB=2 -DMODE=DRAIN -DBUG_INTAKE_NO_STOP_RECHECK
 *   violation: -DNSUB=2 -DMODE=DRAIN -DSTOP_LAST -DBUG_INTAKE_NO_IDLE_WAKE
 *   violation: -DNSUB=2 -DMODE=DRAIN -DSTOP_LAST -DBUG_WAKE_TOKEN_NOT_CLEARED
 *   violation: -DNSUB=3 -DNEXEC=2 -DOVERFLOW=BLOCK -DMODE=DRAIN -DSTOP_LAST -DBUG_WAKE_TOKEN_KEPT_ON_REWAIT
 *   violation: -DNSUB=2 -DMODE=DRAIN -DBUG_DRAIN_DROPS_QUEUED
 *   violation: -DNSUB=2 -DMODE=CANCEL -DDEADLINES=3 -DBUG_CANCEL_WITHOUT_CAS
 *   violation: -DNSUB=2 -DMODE=DRAIN -DBUG_EXIT_WITHOUT_TIMER_NOTIFY
 *   violation: -DNSUB=2 -DOVERFLOW=BLOCK -DSTOP_LAST -DBUG_NO_SPACE_NOTIFY
 *
 * Shards (BatchQueueOptions::shards, Note [Batch queue shards]): a sharded BatchQueue is that
 * many Schedulers, each with its own mu_, intake, deque, executors and timer; they share only
 * the relaxed statistics counters, and BatchQueue::stop() runs every shard's begin_stop before
 * any join. So each shard is one instance of this model, and the properties hold per shard.
 *
 * Parameters: NSUB (2..4) submitting threads, one request each (request i belongs to submitter
 * i); NEXEC (1..2) executors (BatchQueueOptions::instances); NSTOP (1..2) threads calling stop():
 * the second one stop(kCancel), during or after the first; STOP_LAST: stop() only after every
 * submitter has its result (the queue's destructor at the end of a program), else at any moment,
 * racing with every submit. MAXQ = max_queue_size (default 1); MAXB = max_batch_size (default 2;
 * no preferred_batch_sizes: dispatch_rows_ = MAXB); OVERFLOW = REJECT | BLOCK; MODE = the first
 * stop()'s mode, DRAIN | CANCEL; DELAY = 1: max_queue_delay > 0 (0: zero delay; DELAY=1 already
 * contains every behaviour of 0); FAIL = 1: any batch may fail (the forward throws). Bit masks
 * over the requests: DEADLINES (the request has a timeout), ROWS2 (it has 2 rows, else 1),
 * INVALID (not runnable: rejected with kInvalidArgument before the lock, e.g. more rows than
 * max_batch_size).
 * Why these runs: deadlines make every wait timed, and a timed wait can always time out, so lost
 * wake-ups are only visible to waits without a deadline (the masks leave some requests without
 * one, and the STOP_LAST runs have no stop() to wake everybody up); NEXEC=2 exercises
 * notify_one on work_cv_ reaching an executor that waits for a batch's delay instead of the idle
 * one.
 *
 * The intake (Note [Batch queue intake] in scheduler.h): a request without a deadline is
 * admitted by a CAS on `admitted` (admitted_) and pushed on the intake without mu_, each of
 * these, and the submitter's later reads of the stop flag and of idle_executors_, one atomic
 * step of its own; the intake is an array in push order (the code's LIFO stack, reversed when
 * drained); every critical section that drains it (next_batch, stop, a locked submit, a
 * settle after stop) moves it into the deque in one step. The idle count changes in the
 * executor's critical sections (before a wait, after it). A submitter that reads a non-zero idle
 * count notifies only when it takes the wake token `wtoken` (wake_pending_; the code's load and
 * exchange are one test-and-set here), which every executor clears at the start of each
 * next_batch round, before its drain, and in its wait predicates (here in the idle wait's; the
 * delay wait returns to a new round at once, which clears it). place() (enqueue) does not
 * notify: a locked submit notifies after placing, and an executor that takes a batch and leaves
 * requests queued notifies one other (the hand-off). spin's interleavings are sequentially consistent, as the
 * code's seq_cst atomics of this protocol are.
 *
 * What is modelled, with the C++:
 *   mu_          every critical section of Scheduler (from MutexLock to its end, or to a wait)
 *                is one atomic step: mu_ is a leaf lock, and nothing is done under it but reads
 *                and writes of the fields below. No mutex variable is needed.
 *   st[i]        Request::state_ (RequestState), changed only by a compare-and-swap (transition)
 *   q[], qlen    the deque of the one (sample shape, priority level) key: request ids + 1, in
 *                enqueue (seq) order, tombstones (requests no longer kQueued) included.
 *                queues_.clear() in cancel_queued is qlen = 0. (With one key, the map lookup
 *                and place()'s cached pointer to the last key's queue, last_q_, are not
 *                modelled; nor are reference counts: executor_main moves a finished request's
 *                pointer out of its batch.)
 *   queued       queued_
 *   dl           deadlines_: bit i set <=> an entry for request i is in the heap (entries stay
 *                after the request leaves the queue, until the timer pops them).
 *   stopping     stopping_;   running_ex: running_executors_
 *   ew, sw, tw   the waiters of work_cv_, space_cv_, timer_cv_ (bit per thread). A wait sets the
 *                thread's bit and releases mu_ in the same step; notify_all clears all bits,
 *                notify_one one of them (any waiter, also one in a timed wait); a waiter goes on
 *                when its bit is clear (notified) or, for a timed wait (wait_until), at any
 *                moment. It then re-evaluates the wait's predicate under mu_ and waits again
 *                when it is false: the predicate loop of the code. (Spurious wake-ups are not
 *                modelled: with that loop they cannot be told from staying asleep.) A waiter
 *                without a timeout whose notification never comes stays blocked forever,
 *                which spin reports as an invalid end state: a lost wake-up.
 *   timer_wake   enqueue() sets timer_wake_ and notifies the timer when the new deadline is the
 *                earliest; the model does so when the heap was empty, the one case where the
 *                timer's wait has no timeout (with entries it may wake at any moment anyway).
 *   time         not a counter: every comparison of Clock::now() with a deadline or a due time
 *                is a nondeterministic choice (passed or not) made where the code makes it, and
 *                a timed wait may return at any moment. Every behaviour a monotonic clock allows
 *                is among them (and some it does not: a request whose deadline passed while it
 *                was blocked may still run; deadlines of different requests are unordered, so
 *                the timer pops any subset of the heap). More behaviours, never fewer: sound
 *                for the properties below, which do not depend on timeliness.
 *   finish()     counting an outcome and delivering the result happen outside mu_ in the code
 *                (finish_all after the lock is released); here they happen in the step that won
 *                the terminal transition. That is a reduction, not a change: once a request is
 *                terminal, only its winner touches it, counters are independent relaxed
 *                increments, and delivery only enables the submitter's future.get(), so moving
 *                them next to the transition commutes with every step of every other thread.
 *   run_         running a batch (forward + copies + synchronize) is one step outside mu_ that
 *                completes (or, with FAIL, fails) every request of the batch.
 *                (The executor completes a batch's requests grouped by submitting thread and
 *                counts a successful batch's completions with one increment before delivering
 *                any: orders and counts inside this one step, so the step models them as is.)
 *   submitters   submit() one request, then future.get() (block until delivered), then exit.
 *   stopper      the main thread: stop(MODE) at any moment (or, with STOP_LAST, after the last
 *                result), racing with every submit (stop = begin_stop, the critical section,
 *                then join, the wait for the queue's threads); then it joins the submitting
 *                threads and
 *                checks the end-state properties. The executor's wait for work releases mu_
 *                between the wake-up and its next round of next_batch (the code keeps it):
 *                that round re-reads everything, so the gap only adds interleavings that a later
 *                wake-up would give anyway.
 *
 * Properties (a violation of any is an assertion failure or an invalid end state):
 *   - every request completes exactly once: deliver() asserts it has not delivered request i
 *     before; every submitter blocks in future.get() until its request is delivered, so a lost
 *     request is a submitter blocked forever (invalid end state); at the end all are delivered;
 *   - a transition only leaves the state the code expects (assert on each CAS the code ignores
 *     the result of), and a running request is never timed out or cancelled (the CAS from
 *     kQueued fails for it; asserted when its batch completes);
 *   - the counts add up: submitted == completed + rejected + timed_out + failed + cancelled
 *     (checked at the end), and each request is counted in the outcome it ended in;
 *   - queued_ never exceeds max_queue_size (asserted at every enqueue), and queued_ equals the
 *     number of requests in state kQueued at the end of every critical section that changes it;
 *   - stop() returns only when no request is queued or running and every thread of the queue
 *     has left;
 *   - no deadlock: no invalid end state (every process at its end, or the queue's threads gone).
 *
 * Not covered (see docs/verification.md): priority levels and several sample shapes (one key and
 * one level here; the head search across keys and levels orders requests, it does not decide
 * whether they complete: tested in tests/serve/); preferred batch sizes; compact_deadlines()
 * (runs only when deadlines_ holds >= 2 * queued_ + 1024 entries); the constructor and its
 * startup failure path; metrics(); several requests in flight from one thread (the callback
 * form: to the scheduler that is more submitters); more than 4 submitters and instances > 2;
 * timeliness (when a deadline or a delay fires; a request whose deadline passed while it was
 * blocked may run here); liveness beyond deadlock freedom (a timed wait may time out forever
 * without progress); the memory orderings (spin is sequentially consistent; the shared state
 * is under mu_ or in acq_rel CASes of Request::state_, and the counters are relaxed); what
 * run_ and deliver() do inside (tensors, streams, callbacks and their exceptions).
 *
 * Fault injection (each must be caught; see docs/verification.md):
 *   BUG_FULL_CHECK_OUTSIDE_LOCK   submit() tests queued_ >= max_queue_size before taking mu_ and
 *                                 enqueues without testing again: the queue overflows.
 *   BUG_DRAIN_DROPS_QUEUED        next_batch() lets the executor leave on stopping_ alone, not
 *                                 stopping_ && queued_ == 0: a drain loses queued requests.
 *   BUG_CANCEL_WITHOUT_CAS        cancel_queued() cancels everything in the deque without the
 *                                 kQueued -> kCancelled CAS: a timed-out tombstone is completed
 *                                 a second time.
 *   BUG_EXIT_WITHOUT_TIMER_NOTIFY the last executor leaves without notifying timer_cv_: the
 *                                 timer sleeps forever and stop() never returns.
 *   BUG_NO_SPACE_NOTIFY           next_batch() takes a batch without notifying space_cv_: a
 *                                 submitter blocked on a full queue sleeps forever (lost wake-up).
 *   BUG_INTAKE_NO_STOP_RECHECK    a fast-path submitter does not re-read the stop flag after its
 *                                 push: a push after the last executor left is never run or
 *                                 cancelled (its submitter blocks forever).
 *   BUG_INTAKE_NO_IDLE_WAKE       a fast-path submitter never wakes an idle executor: its request
 *                                 sits in the intake while every executor sleeps.
 *   BUG_WAKE_TOKEN_NOT_CLEARED    executors never clear the wake token: after the first wake-up
 *                                 no fast-path submitter notifies again (lost wake-up).
 *   BUG_WAKE_TOKEN_KEPT_ON_REWAIT an executor clears the token only at the top of a round, not in
 *                                 its wait predicate: woken by a late token holder (whose request
 *                                 already ran), it finds nothing, sleeps again holding the token,
 *                                 and the next push wakes nobody (lost wake-up; the first version
 *                                 of the token, caught by this model).
 */

#ifndef NSUB
#define NSUB 3
#endif
#ifndef NEXEC
#define NEXEC 1
#endif
#ifndef MAXQ
#define MAXQ 1
#endif
#ifndef MAXB
#define MAXB 2
#endif
#define REJECT 0
#define BLOCK 1
#ifndef OVERFLOW
#define OVERFLOW BLOCK
#endif
#define DRAIN 0
#define CANCEL 1
#ifndef MODE
#define MODE DRAIN
#endif
#ifndef DELAY
#define DELAY 1
#endif
#ifndef FAIL
#define FAIL 1
#endif
#ifndef DEADLINES
#define DEADLINES 0
#endif
#ifndef ROWS2
#define ROWS2 0
#endif
#ifndef INVALID
#define INVALID 0
#endif
#ifndef NSTOP
#define NSTOP 1
#endif
/* STOP_LAST: stop() only after every submitter has its result (else: at any moment) */

#define NR NSUB                       /* requests: one per submitter */
#if NSUB < 2 || NSUB > 4 || NEXEC < 1 || NEXEC > 2 || NSTOP < 1 || NSTOP > 2
#error "batch_queue.pml: NSUB must be 2..4, NEXEC 1..2, NSTOP 1..2"
#endif
#define ALL ((1 << NR) - 1)
#define BIT(i) (1 << (i))
#define HAS_DEADLINE(i) (((DEADLINES) >> (i)) & 1)
#define ROWS(i) (1 + (((ROWS2) >> (i)) & 1))
#define IS_INVALID(i) (((INVALID) >> (i)) & 1)

/* RequestState */
#define NEW 0
#define BLOCKED 1
#define QUEUED 2
#define RUNNING 3
#define COMPLETED 4
#define FAILED 5
#define TIMEDOUT 6
#define CANCELLED 7
#define REJECTED 8

byte st[NR];
byte delivered;                       /* bit i: request i's future/callback completed */
byte q[NR];                           /* the deque: request id + 1, 0 = empty slot */
byte qlen;
byte queued;
byte dl;
bool timer_wake;
bool stopping;
byte running_ex = NEXEC;
byte ew, sw;                          /* work_cv_ (bit per executor), space_cv_ (bit per submitter) */
bool tw;                              /* timer_cv_ */
byte n_submitted, n_completed, n_rejected, n_timed_out, n_failed, n_cancelled;
byte admitted;                        /* admitted_: queued + in the intake + reserved for a push */
byte iq[NR];                          /* intake_, in push order: request id + 1 */
byte ilen;
byte n_idle;                          /* idle_executors_ */
bool wtoken;                          /* wake_pending_: the wake token */
bool stop_cancel;                     /* stop_mode_ == kCancel */
byte finished;                        /* submitting threads that returned from future.get() */
byte left;                            /* threads of the queue (executors, timer) that returned */

/* Scheduler::finish: count the outcome, deliver the result (exactly once). */
inline deliver(i, to) {
  assert((delivered & BIT(i)) == 0);
  assert(st[i] == to);
  delivered = delivered | BIT(i);
  if
  :: to == COMPLETED -> n_completed++
  :: to == FAILED -> n_failed++
  :: to == TIMEDOUT -> n_timed_out++
  :: to == CANCELLED -> n_cancelled++
  :: to == REJECTED -> n_rejected++
  fi
}

inline pop_front() {
  q[0] = q[1];
#if NR > 2
  q[1] = q[2];
#endif
#if NR > 3
  q[2] = q[3];
#endif
  q[NR - 1] = 0;
  qlen--
}

/* queued_ == the number of requests in state kQueued (checked where a critical section ends). */
inline check_queued(k, n) {
  n = 0; k = 0;
  do :: k < NR -> n = n + (st[k] == QUEUED); k++ :: else -> break od;
  assert(n == queued);
  k = 0; n = 0
}

/* notify_one on work_cv_: wakes one waiting executor, if any */
inline notify_one_work() {
  if
  :: ew == 0 -> skip
  :: ew & 1 -> ew = ew & ~1
  :: ew & 2 -> ew = ew & ~2
  fi
}

/* Scheduler::place (under mu_): an admitted request into the deque */
inline enqueue(i) {
  q[qlen] = i + 1; qlen++;
  assert(st[i] == NEW || st[i] == BLOCKED);
  st[i] = QUEUED;                                /* (void)r->transition(r->state(), kQueued) */
  queued++;
  assert(queued <= MAXQ);                        /* the queue never exceeds max_queue_size */
  if
  :: HAS_DEADLINE(i) ->
     /* earliest: deadlines_ empty or this deadline before the front's. Only an empty heap
      * matters: with entries the timer waits with a timeout, which the model lets fire at any
      * moment anyway. */
     if :: dl == 0 -> timer_wake = true; tw = false :: else -> skip fi;
     dl = dl | BIT(i)
  :: else -> skip
  fi
  /* no notify: place() leaves that to its caller */
}

/* Scheduler::drain_intake (under mu_): every pushed request into the deque, in push order */
inline drain_intake(k, j) {
  j = 0;
  do
  :: j < ilen -> k = iq[j] - 1; iq[j] = 0; enqueue(k); j++
  :: else -> break
  od;
  ilen = 0; j = 0; k = 0
}

/* Scheduler::cancel_queued (under mu_) */
inline cancel_queued(k, j) {
  j = 0;
  do
  :: j < qlen ->
     k = q[j] - 1;
#ifdef BUG_CANCEL_WITHOUT_CAS
     if :: st[k] == QUEUED -> queued--; admitted-- :: else -> skip fi;
     st[k] = CANCELLED; deliver(k, CANCELLED);
#else
     if
     :: st[k] == QUEUED -> st[k] = CANCELLED; queued--; admitted--; deliver(k, CANCELLED)
     :: else -> skip
     fi;
#endif
     q[j] = 0; j++
  :: else -> break
  od;
  qlen = 0; j = 0; k = 0
}

/* Scheduler::drain_intake_settled (under mu_): drain; when stopping and no executor will run
 * what was drained (none left, or the stop cancels), cancel the queue */
inline drain_intake_settled(k, j) {
  drain_intake(k, j);
  if
  :: stopping && (running_ex == 0 || stop_cancel) -> cancel_queued(k, j)
  :: else -> skip
  fi
}

/* ---- the submitting threads: Scheduler::submit, then future.get() ------------------------- */
active [NSUB] proctype submitter() {
  byte k, n;
  bool res;                                      /* a place in admitted_ is reserved */
#ifdef BUG_FULL_CHECK_OUTSIDE_LOCK
  bool was_full;
#endif
  atomic {
    n_submitted++;                               /* counters_.submitted.fetch_add */
    if
    :: IS_INVALID(_pid) ->                       /* not runnable: complete_now(kRejected) */
       st[_pid] = REJECTED; deliver(_pid, REJECTED); goto get
    :: else -> skip
    fi;
#ifdef BUG_FULL_CHECK_OUTSIDE_LOCK
    was_full = (admitted >= MAXQ);               /* the bug: tested before taking mu_ */
#endif
    /* the fast path: no deadline, and stopping_flag_ reads false */
    if :: !HAS_DEADLINE(_pid) && !stopping -> goto fast :: else -> skip fi
  };
slow:
  atomic {
    /* MutexLock lock(mu_); drain_intake_settled(); admitted = !stopping_ && try_admit() */
    drain_intake_settled(k, n);
    res = false;
#ifdef BUG_FULL_CHECK_OUTSIDE_LOCK
    if :: !stopping && !was_full -> admitted++; res = true :: else -> skip fi;
#else
    if :: !stopping && admitted < MAXQ -> admitted++; res = true :: else -> skip fi;
#endif
    if
    :: !res && !stopping && OVERFLOW == BLOCK ->
       st[_pid] = BLOCKED;                       /* (void)r->transition(kNew, kBlocked) */
       sw = sw | BIT(_pid);                      /* space_cv_.wait(_until)(mu_, room) */
       goto blocked
    :: else -> skip
    fi;
decide:
    if
    :: stopping ->                               /* complete_now(r, kCancelled) */
       if :: res -> admitted--; res = false :: else -> skip fi;
       st[_pid] = CANCELLED; deliver(_pid, CANCELLED)
    :: !stopping && !res && OVERFLOW == REJECT ->
       st[_pid] = REJECTED; deliver(_pid, REJECTED)
    :: !stopping && !res && OVERFLOW == BLOCK -> /* blocked until the deadline */
       assert(HAS_DEADLINE(_pid));
       st[_pid] = TIMEDOUT; deliver(_pid, TIMEDOUT)
    :: !stopping && res ->
       enqueue(_pid);                            /* place(r, now) */
       notify_one_work()                         /* work_cv_.notify_one() */
    fi;
    check_queued(k, n);
    goto get
  };
blocked:
  /* Woken by notify_all (bit cleared), or, with a deadline, at any moment (wait_until's
   * timeout). The predicate room: stopping_, or try_admit() succeeds (reserving), under mu_. */
  atomic {
    ((sw & BIT(_pid)) == 0 || HAS_DEADLINE(_pid)) ->
    sw = sw & ~BIT(_pid);
    if
    :: stopping -> goto decide
    :: !stopping && admitted < MAXQ -> admitted++; res = true; goto decide
    :: else ->
       if
       :: sw = sw | BIT(_pid); goto blocked       /* not room: wait again */
       :: HAS_DEADLINE(_pid) -> goto decide       /* the deadline passed: wait_until returns */
       fi
    fi
  };
fast:
  atomic {                                       /* try_admit(): the CAS below the limit */
    if :: admitted < MAXQ -> admitted++ :: else -> goto slow fi
  };
  atomic { iq[ilen] = _pid + 1; ilen++ };        /* the push (CAS on intake_) */
#ifndef BUG_INTAKE_NO_STOP_RECHECK
  atomic { if :: stopping -> goto settle :: else -> skip fi };   /* stopping_flag_ again */
#endif
#ifndef BUG_INTAKE_NO_IDLE_WAKE
  atomic { if :: n_idle > 0 -> goto token :: else -> goto get fi }; /* idle_executors_ */
token:
  /* wake_pending_: load, then exchange(true): one test-and-set (a load that reads true skips
   * exactly as an exchange that returns true would) */
  atomic { if :: wtoken -> goto get :: else -> wtoken = true fi };
wake:
  atomic { notify_one_work(); goto get };        /* MutexLock lock(mu_); notify_one */
#endif
  goto get;
settle:
  atomic {                                       /* settle_after_stop(), under mu_ */
    drain_intake_settled(k, n);
    ew = 0;                                      /* work_cv_.notify_all() */
    check_queued(k, n);
    goto get
  };
get:
  atomic { (delivered & BIT(_pid)) -> finished++ }   /* future.get() returns */
}

/* the exit of an executor, inside next_batch's critical section */
#ifndef BUG_EXIT_WITHOUT_TIMER_NOTIFY
#define leave_now() running_ex--; tw = false; goto leave   /* + timer_cv_.notify_all() */
#else
#define leave_now() running_ex--; goto leave
#endif

/* ---- the executors: Scheduler::executor_main with next_batch and take ---------------------- */
active [NEXEC] proctype executor() {
  byte me = _pid - NSUB;
  byte batch;                                    /* bit mask of the batch being run */
  byte k, rows, target, n;
next:
  atomic {                                       /* MutexLock lock(mu_); next_batch(done, exit) */
#ifndef BUG_WAKE_TOKEN_NOT_CLEARED
    wtoken = false;                              /* wake_pending_.store(false), before the drain */
#endif
    drain_intake(k, n);
    /* Leaving: the code decrements running_executors_ and notifies the timer in the same
     * critical section as the exit decision (executor_main, under the lock of next_batch). */
#ifdef BUG_DRAIN_DROPS_QUEUED
    if :: stopping -> leave_now() :: else -> skip fi;
#else
    if :: stopping && queued == 0 -> leave_now() :: else -> skip fi;
#endif
    /* the head: drop tombstones at the front */
    do :: qlen > 0 && st[q[0] - 1] != QUEUED -> pop_front() :: else -> break od;
    if
    :: qlen == 0 ->
       assert(queued == 0);                      /* every queued request is in the deque */
       n_idle++;                                 /* idle_executors_.fetch_add, then the wait */
       ew = ew | BIT(me);                        /* work_cv_.wait(queued_ > 0 || stopping_ || intake) */
       goto idle
    :: else -> skip
    fi;
    /* avail: rows in take() order, up to dispatch_rows_ */
    k = 0; n = 0;
    do
    :: k < qlen ->
       if
       :: st[q[k] - 1] != QUEUED -> k++
       :: st[q[k] - 1] == QUEUED && n + ROWS(q[k] - 1) > MAXB -> break
       :: st[q[k] - 1] == QUEUED && n + ROWS(q[k] - 1) <= MAXB ->
          n = n + ROWS(q[k] - 1); k++;
          if :: n == MAXB -> break :: else -> skip fi
       fi
    :: else -> break
    od;
    /* The code returns KeyQueue::rows (the rows of the kQueued requests) without this walk when
     * it is below dispatch_rows_: check that the walk gives the same then. */
    k = 0; rows = 0;
    do :: k < NR -> if :: st[k] == QUEUED -> rows = rows + ROWS(k) :: else -> skip fi; k++
       :: else -> break od;
    assert(rows >= MAXB || n == rows);
    k = 0; rows = 0;
    /* full || max_queue_delay == 0 || now >= due || stopping_: dispatch; else wait until due */
    if
    :: skip
    :: DELAY && n < MAXB && !stopping ->
       n = 0;
       n_idle++;
       ew = ew | BIT(me);                        /* work_cv_.wait_until(due, ...) */
       goto delay
    fi;
    /* take(head_q, target = avail) */
    target = n; n = 0; rows = 0;
    do
    :: qlen == 0 -> break
    :: qlen > 0 ->
       k = q[0] - 1;
       if
       :: st[k] != QUEUED -> pop_front()         /* already timed out or cancelled */
       :: st[k] == QUEUED && rows + ROWS(k) > target -> break
       :: st[k] == QUEUED && rows + ROWS(k) <= target ->
          if
          :: HAS_DEADLINE(k) ->                  /* *r->deadline <= now */
             st[k] = TIMEDOUT; queued--; admitted--; deliver(k, TIMEDOUT); pop_front()
          :: true ->
             st[k] = RUNNING; queued--; admitted--; rows = rows + ROWS(k); batch = batch | BIT(k);
             pop_front();
             if :: rows == target -> break :: else -> skip fi
          fi
       fi
    od;
    k = 0; rows = 0; target = 0;
#ifndef BUG_NO_SPACE_NOTIFY
    if :: admitted < MAXQ -> sw = 0 :: else -> skip fi;   /* space_cv_.notify_all() */
#endif
    if :: queued > 0 -> notify_one_work() :: else -> skip fi;   /* the hand-off */
    check_queued(k, n);
    if :: batch == 0 -> goto next :: else -> skip fi   /* empty: look again */
  };
  /* run_(*stream, batch) outside mu_, then complete every request of the batch */
  atomic {
    k = 0;
    if
    :: FAIL -> n = FAILED
    :: true -> n = COMPLETED
    fi;
    do
    :: k < NR ->
       if
       :: batch & BIT(k) ->
          assert(st[k] == RUNNING);              /* nobody else moved a running request */
          st[k] = n; deliver(k, n)
       :: else -> skip
       fi;
       k++
    :: else -> break
    od;
    k = 0; n = 0; batch = 0;
    goto next
  };
idle:
  /* notified: re-evaluate the predicate queued_ > 0 || stopping_ || intake under mu_ */
  atomic {
    (ew & BIT(me)) == 0 ->
#if !defined(BUG_WAKE_TOKEN_NOT_CLEARED) && !defined(BUG_WAKE_TOKEN_KEPT_ON_REWAIT)
    wtoken = false;                              /* wake_pending_.store(false) in the predicate */
#endif
    if
    :: queued > 0 || stopping || ilen > 0 -> n_idle--; goto next   /* next round of the loop */
    :: else -> ew = ew | BIT(me); goto idle      /* wait again */
    fi
  };
delay:
  atomic { ew = ew & ~BIT(me); n_idle--; goto next };   /* notified or due: return {} */
leave:
  atomic { left++ }                              /* the thread returns */
}

/* ---- the timer thread: Scheduler::timer_main ----------------------------------------------- */
active proctype timer() {
  byte k, n;
  bool done;
top:
  atomic {                                       /* MutexLock lock(mu_) */
    if :: stopping && running_ex == 0 -> goto leave :: else -> skip fi;
    /* pop the entries whose deadline has passed: any subset of the heap */
    k = 0;
    do
    :: k < NR ->
       if
       :: dl & BIT(k) ->
          if
          :: dl = dl & ~BIT(k);
             if
             :: st[k] == QUEUED -> st[k] = TIMEDOUT; queued--; admitted--; deliver(k, TIMEDOUT); done = true
             :: else -> skip
             fi
          :: skip                                /* not yet */
          fi
       :: else -> skip
       fi;
       k++
    :: else -> break
    od;
    k = 0;
    check_queued(k, n);
    if
    :: done ->                                   /* space_cv_, work_cv_ .notify_all() */
       sw = 0; ew = 0; done = false; goto top    /* unlock, finish_all, next round */
    :: else ->
       timer_wake = false;
       tw = true;                                /* timer_cv_.wait / wait_until(front) */
       goto sleep
    fi
  };
sleep:
  /* Notified (tw cleared) or, with entries in the heap, wait_until(front)'s timeout at any moment.
   * Then the predicate woken = timer_wake_ || (stopping_ && running_executors_ == 0) under mu_.
   * (Entries appear during a wait only through enqueue, which wakes an untimed wait.) */
  atomic {
    (!tw || dl != 0) ->
    tw = false;
    if
    :: timer_wake || (stopping && running_ex == 0) -> goto top
    :: else ->
       if
       :: dl != 0 -> goto top                    /* the front's deadline came */
       :: tw = true; goto sleep                  /* not woken: wait again */
       fi
    fi
  };
leave:
  left++
}

/* ---- the main thread: stop(MODE) at any moment, then joins the submitters ------------------
 * With NSTOP = 2 a second thread calls stop(kCancel) at any moment too (during a drain, it
 * cancels what is still queued; join_mu_ makes the later caller wait for the joins). */
active [NSTOP] proctype stopper() {
  byte k, n;
#ifdef STOP_LAST
  finished == NSUB;                              /* the queue is destroyed after the last result */
#endif
  atomic {                                 /* Scheduler::begin_stop: MutexLock lock(mu_) */
    stopping = true;                             /* stopping_ and stopping_flag_ */
    if :: MODE == CANCEL || _pid != NSUB + NEXEC + 1 -> stop_cancel = true :: else -> skip fi;
    drain_intake(k, n);
    if                                           /* kCancel, or a stop after the executors left */
    :: MODE == CANCEL || _pid != NSUB + NEXEC + 1 || running_ex == 0 -> cancel_queued(k, n)
    :: else -> skip
    fi;
    check_queued(k, n);
    ew = 0; sw = 0; tw = false                   /* notify_all x3 */
  };
  left == NEXEC + 1;                             /* join (or joined_): the executors, the timer */
  atomic {
    assert(queued == 0);                         /* nothing queued or running is left behind */
    k = 0;
    do
    :: k < NR -> assert(st[k] != QUEUED && st[k] != RUNNING); k++
    :: else -> break
    od;
    k = 0
  };
  finished == NSUB;                              /* the submitting threads are joined */
  assert(delivered == ALL);
  assert(ilen == 0 && admitted == 0);            /* nothing left in the intake or admitted */
  assert(n_submitted == NR);
  assert(n_submitted == n_completed + n_rejected + n_timed_out + n_failed + n_cancelled)
}
