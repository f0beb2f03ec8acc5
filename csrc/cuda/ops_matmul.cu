#include "plugin.h"
namespace dvl_cuda { void register_matmul(std::vector<OpEntry>&) {} }
