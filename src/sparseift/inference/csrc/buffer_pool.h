// A caching CPU allocator for sparseift.inference: large buffers are kept for reuse.
//
// At batch 64 a ResNet's activations are hundreds of MB per layer. The default CPU
// allocator hands such blocks back to the OS on free (glibc mmaps every block over 32 MB),
// so each forward pass page-faults every activation in again: on a 2-core machine that cost
// more than the convolutions themselves. While installed (pool_install / pool_uninstall,
// reference-counted), this allocator serves every CPU tensor of PyTorch and of the kernels:
// blocks of at least LARGE bytes are rounded up to 2 MiB, advised to use transparent huge
// pages, and kept on free (up to a cap, $SPARSEIFT_POOL_MB, default 4096, the least recently
// returned blocks making room) for the next request of the same rounded size; smaller requests
// go to the allocator that was active before. A block stays valid after uninstalling: its deleter returns it to the pool.
#pragma once

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace sparseift {

class BufferPool final : public c10::Allocator {
 public:
  static constexpr size_t LARGE = size_t(1) << 20;   // smaller requests: the previous allocator
  static constexpr size_t ALIGN = size_t(2) << 20;   // huge-page size and alignment

  static BufferPool& instance() {
    static BufferPool* pool = new BufferPool();  // never destroyed: blocks may outlive main()
    return *pool;
  }

  c10::DataPtr allocate(size_t n) override {
    if (n < LARGE) return previous_->allocate(n);
    const size_t bytes = (n + ALIGN - 1) / ALIGN * ALIGN;
    void* ptr = take(bytes);
    if (ptr == nullptr) {
      ptr = std::aligned_alloc(ALIGN, bytes);
      if (ptr == nullptr) {
        release();
        ptr = std::aligned_alloc(ALIGN, bytes);
      }
      TORCH_CHECK(ptr != nullptr, "sparseift buffer pool: out of memory allocating ", bytes, " bytes");
      madvise(ptr, bytes, MADV_HUGEPAGE);  // a hint: fewer page faults when it is first touched
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      live_[ptr] = bytes;
    }
    // Context == data (a "simple" pointer): oneDNN's raw_allocate/raw_deallocate need it.
    return {ptr, ptr, &BufferPool::give_back, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &BufferPool::give_back; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  // Install as PyTorch's CPU allocator (nested calls count); false if another allocator of
  // higher priority is installed, in which case nothing changes.
  bool install() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (users_ == 0) {
      previous_ = c10::GetCPUAllocator();
      c10::SetCPUAllocator(this, 0);
      if (c10::GetCPUAllocator() != this) return false;
    }
    ++users_;
    return true;
  }

  void uninstall() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (users_ > 0 && --users_ == 0) c10::SetCPUAllocator(previous_, 0);
  }

  // Free every cached block; returns the bytes freed.
  int64_t release() {
    std::lock_guard<std::mutex> lock(mutex_);
    int64_t freed = 0;
    for (auto& [bytes, blocks] : free_) {
      for (const Cached& block : blocks) std::free(block.ptr);
      freed += static_cast<int64_t>(bytes * blocks.size());
    }
    free_.clear();
    cached_ = 0;
    return freed;
  }

  int64_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int64_t>(cached_);
  }

 private:
  BufferPool() : previous_(c10::GetCPUAllocator()) {
    const char* mb = std::getenv("SPARSEIFT_POOL_MB");
    limit_ = (mb != nullptr ? std::strtoull(mb, nullptr, 10) : 4096ull) << 20;
  }

  void* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(bytes);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* ptr = it->second.back().ptr;
    it->second.pop_back();
    cached_ -= bytes;
    return ptr;
  }

  // Deleter of every block; a small block (served by the previous allocator, reached here
  // through raw_deallocate) goes back to that allocator.
  static void give_back(void* ptr) {
    if (ptr == nullptr) return;
    BufferPool& pool = instance();
    bool previous = true;      // a small block of the allocator that was active before
    std::vector<void*> freed;  // blocks of ours to hand back to the OS, outside the lock
    {
      std::lock_guard<std::mutex> lock(pool.mutex_);
      auto it = pool.live_.find(ptr);
      if (it != pool.live_.end()) {
        const size_t bytes = it->second;
        pool.live_.erase(it);
        previous = false;
        if (bytes <= pool.limit_) {
          freed = pool.make_room(bytes);
          pool.free_[bytes].push_back({ptr, ++pool.clock_});
          pool.cached_ += bytes;
        } else {
          freed.push_back(ptr);  // larger than the cap
        }
      }
    }
    for (void* block : freed) std::free(block);
    if (previous) pool.previous_->raw_deleter()(ptr);
  }

  // Take the least recently returned cached blocks out of the cache until `bytes` more fit
  // under the cap (caller holds the lock and frees them). A block just returned is the likeliest
  // to be asked for again: the model running now, not one compiled earlier for other sizes,
  // whose blocks would otherwise fill the cap and leave every block of the current model to be
  // page-faulted in again on each forward pass.
  std::vector<void*> make_room(size_t bytes) {
    std::vector<void*> evicted;
    while (cached_ + bytes > limit_) {
      std::vector<Cached>* oldest = nullptr;
      size_t oldest_size = 0;
      for (auto& [size, blocks] : free_) {
        if (!blocks.empty() && (oldest == nullptr || blocks.front().stamp < oldest->front().stamp)) {
          oldest = &blocks;
          oldest_size = size;
        }
      }
      if (oldest == nullptr) break;
      evicted.push_back(oldest->front().ptr);
      oldest->erase(oldest->begin());
      cached_ -= oldest_size;
    }
    return evicted;
  }

  struct Cached {
    void* ptr;
    uint64_t stamp;  // when it was returned: blocks of one size are in increasing stamp order
  };

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<Cached>> free_;  // rounded size -> cached blocks
  std::unordered_map<void*, size_t> live_;                // blocks in use -> rounded size
  size_t cached_ = 0;
  uint64_t clock_ = 0;
  size_t limit_;
  int users_ = 0;
  c10::Allocator* previous_;
};

}  // namespace sparseift
