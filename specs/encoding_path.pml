/* encoding_path.pml — the agx_model backend's context table and encoder life cycle under each
 * encoding-lock policy: the race of Apple's AGX driver that the crash-timing experiment measures.
 *
 * Mirrors (checked by specs/check_mirrors.py):
 *   mirrors src/backends/agx_model/agx_context_table.cpp ContextTable::claim sha256:48ca298e86d1432e
 *   mirrors src/backends/agx_model/agx_context_table.cpp ContextTable::release sha256:6baa75bf5cc97139
 *   mirrors src/backends/agx_model/agx_stream.cpp AgxStream::begin_encoding sha256:c6894c730e930a70
 *   mirrors src/backends/agx_model/agx_stream.cpp AgxStream::dispatch sha256:b99c974c411e8ded
 *   mirrors src/backends/agx_model/agx_stream.cpp AgxStream::end_encoding sha256:46b5b4b6ab08a3e8
 *   mirrors src/runtime/encoder.cpp EncodingLockGuard::EncodingLockGuard sha256:c0cf250a5657ea1e
 *   mirrors src/runtime/encoder.cpp Encoder::commit sha256:0f956be9c145950c
 *
 * Runs (specs/check.sh):
 *   check: -DPOLICY=GLOBAL -DNTHREADS=3 -DROUNDS=2
 *   check: -DPOLICY=GLOBAL -DNTHREADS=4 -DROUNDS=2
 *   violation: -DPOLICY=NONE -DNTHREADS=2 -DROUNDS=2
 *   violation: -DPOLICY=STREAM -DNTHREADS=2 -DROUNDS=2
 *   violation: -DPOLICY=NONE -DNTHREADS=3 -DROUNDS=2
 *
 * The code, step by step (one Encoder = one iteration of the seed loop `y = t * 2.0`):
 *   Encoder::Encoder          EncodingLockGuard: GLOBAL locks the process mutex (lock_spinning:
 *                             try_lock for up to 20 us, then lock: the same acquisition); STREAM locks the
 *                             thread's own stream mutex (each thread leases its own stream, so
 *                             it never excludes another thread: modelled as no lock); NONE nothing.
 *   AgxStream::begin_encoding ContextTable::claim: under the table lock, pop the most recently
 *                             released context (LIFO) or create one; revive it if torn down
 *                             (resources == NULL). A context whose teardown is still pending
 *                             looks alive and is reused as it is.
 *   AgxStream::dispatch       use_resource_common(ctx): dereferences ctx->resources.
 *   AgxStream::end_encoding   prepare_for_enqueue(ctx) (dereferences), enqueue,
 *                             deferred_end_encoding(ctx) (dereferences), then ContextTable::release:
 *                             push ctx on the free list under the table lock, UNLOCK, then tear
 *                             down (resources = NULL) — the flaw.
 *   Encoder::commit           end_encoding, then the encoding lock is released.
 * `alive[c]` stands for ctx->resources != NULL. Each dereference asserts it: the property
 * "no encoder uses a destroyed context" (a NULL dereference, SIGSEGV, in the code).
 *
 * The phases of the crash-timing experiment: every thread sets up (phases 1-4), meets at barrier 1,
 * runs ROUNDS encoders (phase 5, "past barrier 1"), meets at barrier 2 (phase 6). The model
 * records each thread's phase; the assertion also checks that a dead context is only ever met in
 * phase 5, so a violation trail is a crash between barrier 1 and barrier 2.
 *
 * Counterexample under NONE (spin -t -p encoding_path.pml after a violating run; 2 threads):
 *   T1 claims context 0 (created), uses it, prepares, enqueues, releases: pushes 0 on the free
 *   list and drops the table lock — and is preempted before its teardown;
 *   T2 begins an encoder: claims context 0 (LIFO), sees it alive, does not revive it;
 *   T1 tears context 0 down (alive[0] = false);
 *   T2's use_resource_common dereferences the torn-down context: assertion violated, with both
 *   threads in phase 5 — the interleaving the experiment's phase markers attribute every agx_model
 *   crash to (docs/crash-timing.md). STREAM gives the same trail: per-stream locks never meet.
 * Under GLOBAL the process mutex is held from before claim until after the teardown, so no
 * claim can fall between another thread's push and teardown: the property holds.
 *
 * Not covered: the kernels' arithmetic (tests check results), the crash itself (the model stops at
 * the first use of a dead context), the number of contexts beyond NTHREADS (the LIFO free list never
 * needs more), Device::close.
 */

#define NONE 0
#define STREAM 1
#define GLOBAL 2
#ifndef POLICY
#define POLICY GLOBAL
#endif
#ifndef NTHREADS
#define NTHREADS 3
#endif
#ifndef ROUNDS
#define ROUNDS 2
#endif
#define NCTX NTHREADS

bool gm = false;             /* the process-wide encoding mutex (policy GLOBAL) */
bool tm = false;             /* ContextTable::mu_ */
bool alive[NCTX];            /* ctx->resources != NULL */
byte created = 0;            /* contexts_.size() */
byte freelist[NCTX];         /* free_ (LIFO stack) */
byte nfree = 0;
byte phase[NTHREADS + 1];    /* crash-timing phase of each thread */
byte at_barrier1 = 0, at_barrier2 = 0;

inline lock(m) { atomic { !m -> m = true } }
inline unlock(m) { m = false }

inline use(c, id) { assert(alive[c] && phase[id] == 5) }   /* a dereference of ctx->resources */

inline claim(c) {                                /* ContextTable::claim */
  lock(tm);
  if
  :: nfree > 0 -> nfree--; c = freelist[nfree]
  :: else -> c = created; created++
  fi;
  if :: !alive[c] -> alive[c] = true :: else -> skip fi;   /* revive, or reuse as it is */
  unlock(tm)
}

inline release(c) {                              /* ContextTable::release */
  lock(tm);
  freelist[nfree] = c; nfree++;
  unlock(tm);
  /* the window (TANDEM_AGX_MODEL_WINDOW_US): any interleaving may happen here */
  alive[c] = false                               /* teardown, outside the lock: the flaw */
}

proctype Thread(byte id) {
  byte c, round;
  phase[id] = 3;                                 /* [3] threads created: makes its tensors */
  phase[id] = 4; at_barrier1++;                  /* [4] waiting at barrier 1 */
  at_barrier1 == NTHREADS;
  phase[id] = 5;                                 /* [5] past barrier 1: the seed loop */
  round = 0;
  do
  :: round < ROUNDS ->
     if :: POLICY == GLOBAL -> lock(gm) :: else -> skip fi;   /* EncodingLockGuard */
     claim(c);                                   /* begin_encoding */
     use(c, id);                                 /* dispatch: use_resource_common */
     use(c, id);                                 /* end_encoding: prepare_for_enqueue */
     use(c, id);                                 /* end_encoding: deferred_end_encoding */
     release(c);                                 /* end_encoding: ~Release */
     if :: POLICY == GLOBAL -> unlock(gm) :: else -> skip fi; /* Encoder::commit: unlock */
     round++
  :: else -> break
  od;
  at_barrier2++;
  at_barrier2 == NTHREADS;
  phase[id] = 6                                  /* [6] past barrier 2 */
}

init {
  byte i;
  atomic { i = 1; do :: i <= NTHREADS -> run Thread(i); i++ :: else -> break od }
}
