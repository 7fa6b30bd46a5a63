/* c_client.c — a workload written in C with <crashrate/phase.h>: two phases, then a wrong result
 * and a SIGSEGV-free exit; used to check the C client speaks the protocol. */
#include <crashrate/phase.h>
#include <stdio.h>

int main(void) {
  crashrate_phase("c start");
  crashrate_phase("c middle");
  crashrate_wrong("c says wrong");
  puts("c client done");
  return 0;
}
