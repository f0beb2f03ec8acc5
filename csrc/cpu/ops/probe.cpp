// probe.cpp — stream_read bandwidth probe (not written yet).
#include "ops.h"

namespace dvl {

void ops_register_probe(std::vector<OpDef>& t) { (void)t; }

}  // namespace dvl
