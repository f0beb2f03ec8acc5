// attention.cpp — flash-style attention (not written yet).
#include "ops.h"

namespace dvl {

void ops_register_attention(std::vector<OpDef>& t) { (void)t; }

}  // namespace dvl
