// SIMD vector type and thread helper shared by the kernels of sparseift.inference.
//
// Vector width follows the compiler's target (-march=native): 16 floats with AVX-512,
// 8 with AVX/AVX2, 4 otherwise.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>
#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace sparseift {

#if defined(__AVX512F__)
constexpr int VW = 16;
#elif defined(__AVX__)
constexpr int VW = 8;
#else
constexpr int VW = 4;
#endif

typedef float vec __attribute__((vector_size(VW * sizeof(float))));
typedef float vec_u __attribute__((vector_size(VW * sizeof(float)), aligned(sizeof(float))));

// Fully unrolled register loops (GCC would otherwise turn them into memset/memcpy through the stack).
#define UNROLL _Pragma("GCC unroll 16")

inline vec broadcast(float v) {
#if defined(__AVX512F__)
  return reinterpret_cast<vec>(_mm512_set1_ps(v));
#elif defined(__AVX__)
  return reinterpret_cast<vec>(_mm256_set1_ps(v));
#else
  vec w;
  for (int k = 0; k < VW; ++k) w[k] = v;
  return w;
#endif
}

// f(worker, begin, end) over [0, n) on `threads` threads (worker = 0 .. threads - 1, one
// index per thread, e.g. for its scratch buffer), chunks handed out dynamically.
// Built with -fopenmp, the threads are an OpenMP team of the libgomp that PyTorch loaded (the
// same soname, so one runtime): its idle threads spin for a while after every PyTorch op, and
// threads of our own competed with them for the cores (dense ResNet-18, batch 1, 2 Zen 3
// cores: 54 ms with std::threads, 26 ms with the shared team; both ~25 ms with
// OMP_WAIT_POLICY=PASSIVE). Without OpenMP, plain std::threads.
template <class F>
void parallel_workers(int64_t threads_wanted, int64_t n, const F& f) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(threads_wanted, n));
  if (threads == 1) {
    if (n > 0) f(0, 0, n);
    return;
  }
  const int64_t step = std::max<int64_t>(1, n / (threads * 16));
  std::atomic<int64_t> next{0};
  auto worker = [&](int64_t id) {
    for (int64_t begin = next.fetch_add(step); begin < n; begin = next.fetch_add(step)) f(id, begin, std::min(n, begin + step));
  };
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
  worker(omp_get_thread_num());
#else
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (auto& thread : pool) thread.join();
#endif
}

// f(begin, end) over [0, n) on `threads` threads (parallel_workers without the worker index).
template <class F>
void parallel_tasks(int64_t threads, int64_t n, const F& f) {
  parallel_workers(threads, n, [&](int64_t, int64_t begin, int64_t end) { f(begin, end); });
}

}  // namespace sparseift
