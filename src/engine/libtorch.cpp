// What burn-tch does not reach in libtorch: a count of the operations dispatched to it, and
// the choice of fused attention kernels. Built only with the `tch` feature (see build.rs).

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_set>

namespace {

// Per thread: a decoding loop dispatches from one thread, and what other threads dispatch at
// the same time (other tests, say) is not its work.
thread_local int64_t dispatched = 0;
thread_local int64_t views = 0;
// Operations an operation calls in turn are its own business: only the outermost count.
thread_local int depth = 0;

// Operations that make a view of their input: they launch nothing on a GPU, but cost as much
// host time to issue as any other. (A `reshape` of a tensor it cannot view copies it; the
// decoding step's never do.)
bool is_view(const char* name) {
  static const std::unordered_set<std::string_view> names = {
      "aten::view",      "aten::reshape",   "aten::_reshape_alias", "aten::slice",
      "aten::narrow",    "aten::transpose", "aten::permute",        "aten::expand",
      "aten::unsqueeze", "aten::squeeze",   "aten::select",         "aten::as_strided",
      "aten::alias",     "aten::t",         "aten::detach",         "aten::unflatten",
      "aten::split",     "aten::chunk",     "aten::unbind"};
  return names.count(name) > 0;
}

std::unique_ptr<at::ObserverContext> enter(const at::RecordFunction& fn) {
  // A kernel's worker threads may dispatch too; their work belongs to the operation that
  // started them.
  if (depth++ == 0 && !at::in_parallel_region()) {
    ++dispatched;
    if (is_view(fn.name())) {
      ++views;
    }
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

int64_t sweep_libtorch_ops_dispatched() { return dispatched; }

int64_t sweep_libtorch_views_dispatched() { return views; }

// Leave out the fused attention kernels whose work split may depend on the batch:
// FlashAttention splits a short query's keys into chunks by how many rows and heads there are
// (its split-KV heuristic), and cuDNN picks its plan by shape, so a row's output could change
// with the rows beside it. The memory-efficient and math kernels compute each (row, head) in
// one block of work; tests/device.rs checks the result on the device.
void sweep_libtorch_batch_invariant_attention(bool on) {
  at::globalContext().setSDPUseFlash(!on);
  at::globalContext().setSDPUseCuDNN(!on);
}

}  // extern "C"
