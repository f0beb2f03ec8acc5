// rope.cpp — rope_cos_sin, rope (not written yet).
#include "ops.h"

namespace dvl {

void ops_register_rope(std::vector<OpDef>& t) { (void)t; }

}  // namespace dvl
