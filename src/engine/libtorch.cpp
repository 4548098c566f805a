// What burn-tch does not reach in libtorch: a count of the operations dispatched to it, and
// the choice of fused attention kernels. Built only with the `tch` feature (see build.rs).

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <cstdint>
#include <memory>
#include <mutex>

namespace {

// Per thread: a decoding loop dispatches from one thread, and what other threads dispatch at
// the same time (other tests, say) is not its work.
thread_local int64_t dispatched = 0;
// Operations an operation calls in turn are its own business: only the outermost count.
thread_local int depth = 0;

std::unique_ptr<at::ObserverContext> enter(const at::RecordFunction&) {
  // A kernel's worker threads may dispatch too; their work belongs to the operation that
  // started them.
  if (depth++ == 0 && !at::in_parallel_region()) {
    ++dispatched;
  }
  return nullptr;
}

void leave(const at::RecordFunction&, at::ObserverContext*) { --depth; }

}  // namespace

extern "C" {

// Count outermost operations while at least one caller asks to (`on`), and stop when the
// last one is done: the callback costs every operation a call.
void sweep_libtorch_count_ops(bool on) {
  static std::mutex mutex;
  static int users = 0;
  static at::CallbackHandle handle = 0;
  std::lock_guard<std::mutex> lock(mutex);
  if (on && users++ == 0) {
    handle = at::addGlobalCallback(at::RecordFunctionCallback(enter, leave)
                                       .needsInputs(false)
                                       .needsOutputs(false)
                                       .scopes({at::RecordScope::FUNCTION}));
  } else if (!on && users > 0 && --users == 0) {
    at::removeCallback(handle);
  }
}

int64_t sweep_libtorch_ops_dispatched() {
  return dispatched;
}

// Leave out the fused attention kernels whose work split depends on the batch: FlashAttention
// and cuDNN split a short query's keys across blocks by how many rows and heads there are, so
// a row's output would change with the rows beside it. The memory-efficient and math kernels
// compute each (row, head) alone.
void sweep_libtorch_batch_invariant_attention(bool on) {
  at::globalContext().setSDPUseFlash(!on);
  at::globalContext().setSDPUseCuDNN(!on);
}

}  // extern "C"
