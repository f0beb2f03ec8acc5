// staging.h — reusable host buffers for the copies the JS thread takes of caller data (a plan
// replay's data inputs, Queue.write): the caller may change its array once the call returns,
// so the bytes travel to the queue thread in a copy.
//
// Why a pool: a fresh buffer of a few hundred KiB comes from mmap, and every page of it faults
// on first touch — ≈ 10 µs a page on a VM, 1.6 ms for one picture's 660 KB of patch rows, more
// than the vision tower of the bundled model computes. Buffers from 64 KiB up are kept (at most
// kStagingKeepBytes in all) and handed out again; smaller ones come from the heap as before.
#pragma once
#include <cstddef>
#include <vector>

namespace dvl {

// A buffer holding a copy of src[0, n): a pooled one when n is large enough.
std::vector<char> staging_copy(const void* src, size_t n);
// Returns a buffer from staging_copy to the pool (it may be dropped instead); leaves it empty.
void staging_give(std::vector<char>& v);

}  // namespace dvl
