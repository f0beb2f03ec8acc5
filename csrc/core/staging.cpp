// staging.cpp — see staging.h.
#include "staging.h"

#include <cstring>
#include <mutex>

namespace dvl {

namespace {
constexpr size_t kStagingMinBytes = size_t(64) << 10;
constexpr size_t kStagingKeepBytes = size_t(64) << 20;
constexpr size_t kStagingKeepCount = 16;

std::mutex g_mu;
std::vector<std::vector<char>>& pool() {
  static auto* p = new std::vector<std::vector<char>>();  // never destroyed: used until exit
  return *p;
}
size_t g_kept = 0;
}  // namespace

std::vector<char> staging_copy(const void* src, size_t n) {
  std::vector<char> v;
  if (n >= kStagingMinBytes) {
    std::lock_guard<std::mutex> lk(g_mu);
    auto& p = pool();
    size_t best = p.size();
    for (size_t i = 0; i < p.size(); ++i)  // the smallest that fits
      if (p[i].capacity() >= n && (best == p.size() || p[i].capacity() < p[best].capacity())) best = i;
    if (best < p.size()) {
      v = std::move(p[best]);
      p.erase(p.begin() + std::ptrdiff_t(best));
      g_kept -= v.capacity();
    }
  }
  const char* s = static_cast<const char*>(src);
  v.assign(s, s + n);  // within the capacity: no allocation, no zero fill
  return v;
}

void staging_give(std::vector<char>& v) {
  std::vector<char> mine = std::move(v);
  v = std::vector<char>();
  if (mine.capacity() < kStagingMinBytes) return;
  std::lock_guard<std::mutex> lk(g_mu);
  auto& p = pool();
  // Full: drop the smallest kept buffer if this one is larger (sizes of recent work win).
  while (!p.empty() && (g_kept + mine.capacity() > kStagingKeepBytes || p.size() >= kStagingKeepCount)) {
    size_t smallest = 0;
    for (size_t i = 1; i < p.size(); ++i)
      if (p[i].capacity() < p[smallest].capacity()) smallest = i;
    if (p[smallest].capacity() > mine.capacity()) return;
    g_kept -= p[smallest].capacity();
    p.erase(p.begin() + std::ptrdiff_t(smallest));
  }
  if (mine.capacity() > kStagingKeepBytes) return;
  g_kept += mine.capacity();
  p.push_back(std::move(mine));
}

}  // namespace dvl
