// registry.cpp — the op table and the shared validation helpers.
#include <algorithm>

#include "ops.h"

namespace dvl {

// Registration order (what op_names lists), and the same defs indexed by OpId.
static const std::vector<OpDef>& table() {
  static const std::vector<OpDef> t = [] {
    std::vector<OpDef> v;
    ops_register_basic(v);
    ops_register_matmul(v);
    ops_register_io(v);
    ops_register_norm(v);
    ops_register_rope(v);
    ops_register_act(v);
    ops_register_attention(v);
    ops_register_kv(v);
    ops_register_shape(v);
    ops_register_sample(v);
    ops_register_probe(v);
    ops_register_image(v);
    ops_register_bilinear(v);
    return v;
  }();
  return t;
}

static const std::vector<const OpDef*>& by_id() {
  static const std::vector<const OpDef*> ix = [] {
    std::vector<const OpDef*> v(size_t(kOpCount), nullptr);
    for (const OpDef& d : table()) v[size_t(d.id)] = &d;
    for (int i = 0; i < kOpCount; ++i)
      if (!v[size_t(i)]) throw Error(DVL_ERR_INTERNAL, std::string("op '") + op_name(OpId(i)) + "' has no CPU op");
    return v;
  }();
  return ix;
}

const OpDef& op_find(OpId id) { return *by_id().at(size_t(id)); }

const OpDef* op_find(const std::string& name) {
  OpId id;
  return op_lookup(name.c_str(), &id) ? &op_find(id) : nullptr;
}

std::vector<std::string> op_names() {
  std::vector<std::string> r;
  for (const OpDef& d : table()) r.push_back(d.name());
  return r;
}

void op_fail(const char* code, const std::string& op, const std::string& what, const Tensors& in) {
  std::string msg = op + ": " + what + " (inputs:";
  for (size_t i = 0; i < in.size(); ++i) msg += std::string(i ? ", " : " ") + (in[i] ? in[i]->describe() : "null");
  throw Error(code, msg + ")");
}

void op_need_inputs(const std::string& op, const Tensors& in, size_t min, size_t max) {
  if (in.size() < min || in.size() > max)
    op_fail(DVL_ERR_ARG, op, "expected " + std::to_string(min) + (max != min ? ".." + std::to_string(max) : "") +
                                 " inputs, got " + std::to_string(in.size()), in);
  for (size_t i = 0; i < min; ++i)
    if (!in[i]) op_fail(DVL_ERR_ARG, op, "input " + std::to_string(i) + " is missing", in);
}

void op_need_dtype(const std::string& op, const Tensors& in, size_t i, std::initializer_list<DType> ok) {
  if (std::find(ok.begin(), ok.end(), in[i]->dtype) == ok.end()) {
    std::string names;
    for (DType d : ok) names += std::string(names.empty() ? "" : "|") + dtype_name(d);
    op_fail(DVL_ERR_DTYPE, op, "input " + std::to_string(i) + " must be " + names + ", got " + dtype_name(in[i]->dtype), in);
  }
}

void op_need_rank(const std::string& op, const Tensors& in, size_t i, int rank) {
  if (in[i]->rank() != rank)
    op_fail(DVL_ERR_SHAPE, op, "input " + std::to_string(i) + " must have rank " + std::to_string(rank), in);
}

int64_t rows_of(const Tensor& t) {
  int64_t r = 1;
  for (int i = 0; i + 1 < t.rank(); ++i) r *= t.shape[i];
  return r;
}

}  // namespace dvl
