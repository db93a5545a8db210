// A caching CPU allocator for large blocks, installed as torch's CPU allocator by
// stylegan_core.ops.memory (STYLEGAN_CPU_CACHE_MB sets its limit; 0 leaves torch's allocator alone).
//
// Why: torch's CPU allocator takes every block from malloc, and glibc serves blocks above 32 MiB with a
// fresh mmap that is unmapped again on free. A generator at 128 px and batch 4 allocates a dozen 32 MiB
// activations per forward pass, and faulting their pages in, 4 KiB at a time, costs more than the
// memory-bound work done on them (`x + 1` on [4, 128, 128, 128]: 9.8 ms into a new tensor, 1.5 ms into
// an existing one, 2 cores). jemalloc or tcmalloc would keep such blocks too, but only when preloaded
// into the process, which a library cannot do for its users.
//
// Blocks of 1 MiB and more are rounded up to 2 MiB, aligned to 2 MiB and advised to use transparent huge
// pages (STYLEGAN_HUGEPAGES=0: not advised); on free they are kept, up to the limit, and reused for the
// next request of the same size class (best fit, at most a quarter larger). Smaller blocks go to torch's
// default allocator unchanged. When a new block cannot be had (an address-space limit, say), the cached
// blocks are released and the allocation retried once before failing as torch's allocator would.
#include "common.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#if defined(__linux__)
#include <pthread.h>
#include <sys/mman.h>
#endif

namespace sgc {
namespace {

constexpr size_t kLarge = size_t(1) << 20;  // blocks from this size are cached
constexpr size_t kGranule = size_t(2) << 20;  // their size class and alignment: one huge page

class CpuCache final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n < kLarge || !serving()) {
      void* p = fallback_->raw_allocate(n);
      return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
    }
    const size_t size = (n + kGranule - 1) / kGranule * kGranule;
    void* p = take(size);
    if (!p) p = fresh(size);
    if (!p) {
      trim(0);
      p = fresh(size);
    }
    if (!p) {
      // torch's allocator raises its out-of-memory error with the usual message
      void* q = fallback_->raw_allocate(n);
      return {q, q, &release, c10::Device(c10::DeviceType::CPU)};
    }
    return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  // Sets the limit of kept bytes (0: nothing is kept and everything goes to torch's allocator).
  void set_limit(size_t bytes) {
    {
      std::lock_guard<std::mutex> g(mu_);
      limit_ = bytes;
    }
    trim(bytes);
  }

  size_t limit() {
    std::lock_guard<std::mutex> g(mu_);
    return limit_;
  }

  // While bypassed, new blocks come from torch's allocator; blocks of ours still return to the cache.
  bool set_bypass(bool on) {
    std::lock_guard<std::mutex> g(mu_);
    const bool before = bypass_;
    bypass_ = on;
    return before;
  }

  bool serving() {
    std::lock_guard<std::mutex> g(mu_);
    return limit_ > 0 && !bypass_;
  }

  // [bytes kept for reuse, bytes of all live and kept blocks, blocks reused, blocks newly allocated]
  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> g(mu_);
    return {int64_t(cached_), int64_t(owned_), int64_t(hits_), int64_t(misses_)};
  }

  static CpuCache& get() {
    static CpuCache* c = new CpuCache();  // never destroyed: tensors may outlive static destructors
    return *c;
  }

 private:
  CpuCache() : fallback_(c10::GetDefaultCPUAllocator()) {
#if defined(__linux__)
    // a DataLoader worker forked while another thread holds the lock must not inherit it held
    pthread_atfork([] { get().mu_.lock(); }, [] { get().mu_.unlock(); }, [] { get().mu_.unlock(); });
#endif
  }

  void* take(size_t size) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = free_.lower_bound(size);
    if (it == free_.end() || it->first > size + size / 4) return nullptr;
    void* p = it->second;
    cached_ -= it->first;
    free_.erase(it);
    hits_++;
    return p;
  }

  void* fresh(size_t size) {
    void* p = nullptr;
    if (posix_memalign(&p, kGranule, size) != 0) return nullptr;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (hugepages_enabled()) (void)madvise(p, size, MADV_HUGEPAGE);
#endif
    std::lock_guard<std::mutex> g(mu_);
    sizes_[p] = size;
    owned_ += size;
    misses_++;
    return p;
  }

  // Releases kept blocks, largest first, until at most `keep` bytes are kept.
  void trim(size_t keep) {
    std::lock_guard<std::mutex> g(mu_);
    while (cached_ > keep && !free_.empty()) {
      auto it = std::prev(free_.end());
      cached_ -= it->first;
      owned_ -= it->first;
      sizes_.erase(it->second);
      std::free(it->second);
      free_.erase(it);
    }
  }

  static void release(void* p) {
    if (!p) return;
    CpuCache& c = get();
    if (reinterpret_cast<uintptr_t>(p) % kGranule == 0) {  // only large blocks are aligned to a granule
      std::lock_guard<std::mutex> g(c.mu_);
      auto it = c.sizes_.find(p);
      if (it != c.sizes_.end()) {
        if (c.cached_ + it->second <= c.limit_) {
          c.free_.emplace(it->second, p);
          c.cached_ += it->second;
        } else {
          c.owned_ -= it->second;
          c.sizes_.erase(it);
          std::free(p);
        }
        return;
      }
    }
    c.fallback_->raw_deleter()(p);
  }

  c10::Allocator* fallback_;
  std::mutex mu_;
  std::multimap<size_t, void*> free_;  // kept blocks by size
  std::unordered_map<void*, size_t> sizes_;  // every block of ours, live or kept
  size_t limit_ = 0, cached_ = 0, owned_ = 0, hits_ = 0, misses_ = 0;
  bool bypass_ = false;
};

bool installed = false;

// Sets the cache's limit in MiB, installing it as torch's CPU allocator on the first call with a limit
// above 0; returns the previous limit in MiB.
int64_t cpu_cache_limit(int64_t mib) {
  TORCH_CHECK(mib >= 0, "stylegan_core::_cpu_cache_limit: the limit must be >= 0 MiB, got ", mib);
  CpuCache& c = CpuCache::get();
  const int64_t before = int64_t(c.limit() >> 20);
  c.set_limit(size_t(mib) << 20);
  if (mib > 0 && !installed) {
    c10::SetCPUAllocator(&c, /*priority=*/1);
    installed = true;
  }
  return before;
}

std::vector<int64_t> cpu_cache_stats() { return CpuCache::get().stats(); }

// Sets whether new blocks bypass the cache (kept blocks stay kept); returns the previous setting.
bool cpu_cache_bypass(bool on) { return CpuCache::get().set_bypass(on); }

}  // namespace
}  // namespace sgc

TORCH_LIBRARY_FRAGMENT(stylegan_core, m) {
  m.def("_cpu_cache_limit(int mib) -> int", &sgc::cpu_cache_limit);
  m.def("_cpu_cache_stats() -> int[]", &sgc::cpu_cache_stats);
  m.def("_cpu_cache_bypass(bool on) -> bool", &sgc::cpu_cache_bypass);
}
