/* stream_pool.pml — the StreamPool's lock-free bitmask free list and its wait policies.
 *
 * Mirrors (checked by specs/check_mirrors.py; update the hashes with --update only after
 * re-reading the model against the code):
 *   mirrors src/runtime/stream.cpp StreamPool::try_claim sha256:68e95fcf7b24ce4b
 *   mirrors src/runtime/stream.cpp StreamPool::release sha256:0da90fcbb50f81fc
 *   mirrors src/runtime/stream.cpp StreamPool::lease sha256:2b742eebb9c169ae
 *   mirrors src/runtime/device.cpp Device::current_stream sha256:d857dbed76122a27
 *   mirrors src/runtime/stream.cpp StreamLease::reset sha256:6d0c907145b33dd3
 *
 * Runs (specs/check.sh; each is an exhaustive search of the whole state space):
 *   check: -DWAIT=2 -DNTHREADS=3 -DNSTREAMS=3
 *   check: -DWAIT=2 -DNTHREADS=3 -DNSTREAMS=2
 *   check: -DWAIT=1 -DNTHREADS=3 -DNSTREAMS=2
 *   check: -DWAIT=0 -DNTHREADS=3 -DNSTREAMS=2
 *   check: -DWAIT=2 -DNTHREADS=4 -DNSTREAMS=3
 *   violation: -DWAIT=2 -DNTHREADS=3 -DNSTREAMS=2 -DBUG_CHECK_WAITERS_FIRST
 *
 * What is modelled, line by line with the C++:
 *   free_      std::atomic<uint64_t> free_   bit i set <=> worker stream i free
 *   waiters_   std::atomic<int> waiters_     threads inside the wait branch of lease()
 *   mu         Mutex wait_mu_                (a test-and-set lock)
 *   cv_gen     CondVar wait_cv_              notify_all bumps the generation; a waiter that read
 *                                            the generation under mu and then released mu wakes
 *                                            when it changes — exactly a condition variable's
 *                                            "unlock and enter the wait set atomically".
 * try_claim: one load of free_, pick the lowest set bit, compare-and-swap; on CAS failure the
 * CAS's reload is the new value (compare_exchange_weak's spurious failure is a retry, covered
 * by the failure branch).
 * Thread-local caching and thread-exit return (Device::current_stream, ThreadStreams): each
 * thread leases once on its first device call, uses the stream ROUNDS times, and releases at
 * exit (after clearing its ownership mark, as the StreamLease destructor does after synchronize).
 *
 * Memory-order assumption: spin's interleaving semantics are sequentially consistent. The code
 * uses seq_cst for the pair that needs it (release's fetch_or then load of waiters_; the waiter's
 * fetch_add of waiters_ then its load of free_ under the mutex — the store-buffering / Dekker
 * pattern) and acq_rel on the CAS, which is enough for a single-location read-modify-write.
 * The model is therefore exact for the orderings the code relies on; it would NOT catch a
 * weakening of those seq_cst operations to acquire/release (which would allow the lost wake-up
 * that the seq_cst pair rules out).
 *
 * Properties:
 *   - exclusive ownership: no two threads hold the same worker stream (assert at every claim);
 *   - every lease is returned and a returned stream is leasable again (end-state assert);
 *   - no lost wake-up and no deadlock: with WAIT=2 (wait forever) every thread finishes; a
 *     waiter that slept through the release of the last stream would be an invalid end state.
 *   - WAIT=0 (fail at once) and WAIT=1 (timeout, firing at any moment) never deadlock either.
 * Not covered: the pool's lazy stream creation (create_mu_, double-checked), Device::close, and
 * the work on the streams themselves (tested by tests/runtime/).
 *
 * Fault injection: -DBUG_CHECK_WAITERS_FIRST makes release() read waiters_ before publishing the
 * bit (the wrong order); spin then finds the lost wake-up (see docs/verification.md).
 */

#ifndef NTHREADS
#define NTHREADS 3
#endif
#ifndef NSTREAMS
#define NSTREAMS 2      /* worker streams (bits 0..NSTREAMS-1 here; bit 0 of the code is stream 0) */
#endif
#ifndef ROUNDS
#define ROUNDS 2
#endif
#ifndef WAIT
#define WAIT 2          /* 0: fail at once; 1: wait up to a timeout; 2: wait forever */
#endif
#define NONE 255
#define ALL ((1 << NSTREAMS) - 1)

byte free_ = ALL;
byte waiters_ = 0;
bool mu = false;
byte cv_gen = 0;
byte owner[NSTREAMS];
byte finished = 0;

inline lock_mu() { atomic { !mu -> mu = true } }
inline unlock_mu() { mu = false }

/* StreamPool::try_claim */
inline try_claim(idx, f, b) {
  idx = NONE;
  f = free_;                                   /* free_.load(acquire) */
  do
  :: f == 0 -> break
  :: else ->
     d_step { b = 0; do :: (f & (1 << b)) == 0 -> b++ :: else -> break od }   /* countr_zero */
     atomic {
       if
       :: free_ == f -> free_ = f & ~(1 << b); idx = b        /* CAS succeeds */
       :: else -> f = free_                                   /* CAS fails: reloads */
       fi
     }
     if :: idx != NONE -> break :: else -> skip fi
  od
}

/* StreamPool::release */
inline release(i) {
#ifdef BUG_CHECK_WAITERS_FIRST
  if
  :: waiters_ > 0 -> free_ = free_ | (1 << i); lock_mu(); cv_gen++; unlock_mu()
  :: else -> free_ = free_ | (1 << i)
  fi
#else
  free_ = free_ | (1 << i);                    /* fetch_or(seq_cst) */
  if
  :: waiters_ > 0 -> lock_mu(); cv_gen++; unlock_mu()   /* notify_all under wait_mu_ */
  :: else -> skip
  fi
#endif
}

/* StreamPool::lease; idx == NONE afterwards means Error(kPoolExhausted) */
inline lease(idx, f, b, g, timed_out) {
  try_claim(idx, f, b);
  if
  :: idx == NONE && WAIT != 0 ->
     waiters_++;                                /* fetch_add(seq_cst) */
     lock_mu();
     do
     :: try_claim(idx, f, b);                   /* the wait predicate, under wait_mu_ */
        if :: idx != NONE -> break :: else -> skip fi;
        if :: timed_out -> break :: else -> skip fi;
        g = cv_gen; unlock_mu();                /* cv wait: release mu, enter the wait set */
        if
        :: cv_gen != g -> skip                  /* notified */
        :: WAIT == 1 -> timed_out = true        /* the deadline passes (any time) */
        fi;
        lock_mu()                               /* wait returns holding mu; predicate again */
     od;
     unlock_mu();
     waiters_--
  :: else -> skip
  fi
}

proctype Thread(byte id) {
  byte idx, f, b, g, round;
  bool timed_out = false;
  lease(idx, f, b, g, timed_out);              /* first device call: lease and cache */
  if
  :: idx != NONE ->
     d_step { assert(owner[idx] == 0); owner[idx] = id }      /* exclusive ownership */
     round = 0;
     do
     :: round < ROUNDS -> assert(owner[idx] == id); round++   /* uses its cached stream */
     :: else -> break
     od;
     owner[idx] = 0;                            /* thread exit: synchronize, then return */
     release(idx)
  :: else -> skip                               /* kPoolExhausted: the thread gives up */
  fi;
  finished++
}

init {
  byte i;
  atomic { i = 1; do :: i <= NTHREADS -> run Thread(i); i++ :: else -> break od }
  finished == NTHREADS;
  assert(free_ == ALL);                         /* every lease returned */
  assert(waiters_ == 0);
  /* a returned stream is leasable again */
  byte idx, f, b;
  try_claim(idx, f, b);
  assert(idx == 0)
}
