// kv_cache.cpp — kv_cache_append (not written yet).
#include "ops.h"

namespace dvl {

void ops_register_kv(std::vector<OpDef>& t) { (void)t; }

}  // namespace dvl
