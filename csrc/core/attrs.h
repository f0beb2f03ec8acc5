// attrs.h — op parameters copied from a JS object on the JS thread.
//
// Work threads never touch napi values: csrc/napi copies every attribute into this plain
// struct before an op is enqueued.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "error.h"

namespace dvl {

struct Attrs {
  std::map<std::string, double> num;
  std::map<std::string, std::string> str;
  std::map<std::string, std::vector<double>> arr;

  bool has(const std::string& k) const { return num.count(k) || str.count(k) || arr.count(k); }
  double get(const std::string& k, double def) const {
    auto it = num.find(k);
    return it == num.end() ? def : it->second;
  }
  int64_t geti(const std::string& k, int64_t def) const { return int64_t(get(k, double(def))); }
  std::string gets(const std::string& k, const std::string& def) const {
    auto it = str.find(k);
    return it == str.end() ? def : it->second;
  }
  const std::vector<double>* geta(const std::string& k) const {
    auto it = arr.find(k);
    return it == arr.end() ? nullptr : &it->second;
  }
  double need(const std::string& op, const std::string& k) const {
    auto it = num.find(k);
    if (it == num.end()) throw Error(DVL_ERR_ARG, op + ": missing numeric attribute '" + k + "'");
    return it->second;
  }
  int64_t needi(const std::string& op, const std::string& k) const {
    double v = need(op, k);
    if (v != double(int64_t(v))) throw Error(DVL_ERR_ARG, op + ": attribute '" + k + "' must be an integer");
    return int64_t(v);
  }
};

}  // namespace dvl
