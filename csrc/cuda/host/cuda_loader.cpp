// cuda_loader.cpp — run-time discovery of the CUDA plugin (see cuda_loader.h for the reasons)
// and device tensors backed by the plugin's allocator.
#include "cuda_loader.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "../../compat/glibc_compat.h"
#include "../../core/error.h"

namespace dvl {

static const char* kPluginFile = "libdiffusionvl_cuda.so";

namespace {

// The one plugin this process may load (dlopen is process-wide; never unloaded once its
// runtime has run, since static cudart registers exit handlers inside it).
struct Loaded {
  void* handle = nullptr;
  std::string path;
  dvl_backend_api api{};
  bool usable = false;  // set by the probe that found a working device
  int device = 0;
};

std::mutex g_mu;
Loaded g_plugin;
std::map<std::string, void*> g_drivers;  // driver library name → handle (kept open)
std::map<std::string, CudaProbe> g_cache;

bool is_file(const std::string& p) {
  struct stat st;
  return dvl_path_stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool is_dir(const std::string& p) {
  struct stat st;
  return dvl_path_stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The folder of the file holding this code (the addon .node, into which the engine is linked).
std::string addon_dir() {
  Dl_info info;
  if (!dladdr(reinterpret_cast<void*>(&cuda_probe), &info) || !info.dli_fname) return "";
  std::string f = info.dli_fname;
  size_t slash = f.rfind('/');
  return slash == std::string::npos ? "." : f.substr(0, slash);
}

std::string last_dlerror(const char* fallback) {
  const char* e = dlerror();
  return e ? e : fallback;
}

std::string cuda_version_str(int v) {
  return v > 0 ? std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10) : "unknown";
}

std::string cache_key(const CudaProbeOptions& o) {
  std::string k = std::string(o.plugin_override_set ? "1" : "0") + o.plugin_override + '\n' + o.driver_path +
                  '\n' + std::to_string(o.device);
  for (const std::string& s : o.search_paths) k += '\n' + s;
  return k;
}

CudaProbe fail(CudaProbe r, const std::string& reason, const std::string& detail) {
  r.available = false;
  r.reason = reason;
  r.detail = detail;
  return r;
}

// The driver's CUDA version through libcuda's own entry (no cuInit needed).
int driver_version(void* drv) {
  using Fn = int (*)(int*);
  auto fn = reinterpret_cast<Fn>(dlsym(drv, "cuDriverGetVersion"));
  int v = 0;
  if (fn && fn(&v) == 0) return v;
  return 0;
}

CudaProbe probe_uncached(const CudaProbeOptions& o) {
  CudaProbe r;
  r.device = o.device;
  // 1. An explicit plugin path that does not exist is a configuration mistake: say so first,
  //    whatever the host has.
  if (o.plugin_override_set) r.plugin_path = o.plugin_override;
  if (o.plugin_override_set && !is_file(o.plugin_override)) {
    r.tried.push_back(o.plugin_override);
    return fail(r, "plugin-missing",
                "DIFFUSIONVL_CUDA_PLUGIN=" + o.plugin_override + " is not a file; unset it or point it at " + kPluginFile);
  }

  // 2. The driver. RTLD_LOCAL: its symbols are only for the plugin's static runtime, which
  //    opens it again by name.
  std::string drv = o.driver_path.empty() ? "libcuda.so.1" : o.driver_path;
  void*& drv_handle = g_drivers[drv];
  if (!drv_handle) {
    dlerror();
    drv_handle = dlopen(drv.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!drv_handle)
      return fail(r, "no-driver", "the NVIDIA driver library does not load (" + last_dlerror(drv.c_str()) +
                                      "); install the NVIDIA driver to use the GPU");
  }
  r.driver_version = driver_version(drv_handle);

  // 3. Find the plugin: the override, else next to the addon, else the given places.
  std::string path;
  if (o.plugin_override_set) {
    path = o.plugin_override;
    r.tried.push_back(path);
  } else {
    std::vector<std::string> cand;
    std::string dir = addon_dir();
    if (!dir.empty()) cand.push_back(dir + "/" + kPluginFile);
    for (const std::string& s : o.search_paths) cand.push_back(is_dir(s) ? s + "/" + kPluginFile : s);
    for (const std::string& c : cand) {
      r.tried.push_back(c);
      if (is_file(c)) {
        path = c;
        break;
      }
    }
    if (path.empty()) {
      std::string where;
      for (const std::string& c : r.tried) where += (where.empty() ? "" : ", ") + c;
      return fail(r, "plugin-missing",
                  std::string("no ") + kPluginFile + " found (looked at: " + (where.empty() ? "nothing" : where) +
                      "); install the CUDA package or build it with npm run build:native:cuda");
    }
  }
  r.plugin_path = path;

  // 4. Load it (once per process).
  if (g_plugin.handle && g_plugin.path != path)
    return fail(r, "plugin-conflict", "another CUDA plugin is already loaded in this process: " + g_plugin.path);
  if (!g_plugin.handle) {
    dlerror();
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      std::string why = last_dlerror("dlopen failed");
      return fail(r, "plugin-load-failed: " + why, "the CUDA plugin " + path + " does not load: " + why);
    }
    auto init = reinterpret_cast<dvl_cuda_plugin_init_fn>(dlsym(h, "dvl_cuda_plugin_init"));
    if (!init) {
      dlclose(h);  // nothing of it has run yet
      return fail(r, "plugin-load-failed: no dvl_cuda_plugin_init",
                  path + " is not a diffusionvl CUDA plugin (no dvl_cuda_plugin_init symbol)");
    }
    dvl_backend_api api{};
    int rc = init(DVL_BACKEND_API_VERSION, &api);
    r.plugin_api_version = api.api_version;
    bool layout_ok = api.struct_size == int(sizeof(dvl_backend_api)) && api.tensor_size == int(sizeof(Tensor)) &&
                     api.storage_size == int(sizeof(Storage));
    if (rc != 0 || api.api_version != DVL_BACKEND_API_VERSION || !layout_ok) {
      dlclose(h);  // only the identity prefix was written; no CUDA call has run
      std::string d = "the CUDA plugin " + path + " implements backend API " + std::to_string(api.api_version) +
                      ", this addon needs " + std::to_string(DVL_BACKEND_API_VERSION);
      if (api.api_version == DVL_BACKEND_API_VERSION && !layout_ok)
        d = "the CUDA plugin " + path + " was built from a different tensor layout (same API version)";
      return fail(r, "version-mismatch", d + "; install the CUDA package of the same diffusionvl version or rebuild it");
    }
    g_plugin.handle = h;
    g_plugin.path = path;
    g_plugin.api = api;
  }
  const dvl_backend_api& api = g_plugin.api;
  r.plugin_api_version = api.api_version;
  r.runtime_version = api.runtime_version;
  r.archs = api.archs ? api.archs : "";
  if (api.driver_version && !r.driver_version) r.driver_version = api.driver_version();

  // 5. Devices.
  dvl_backend_error err{};
  if (!api.device_count || api.device_count(&r.device_count, &err) != 0) {
    std::string code = err.code;
    if (code == "driver-too-old")
      return fail(r, code, std::string(err.message) + " (driver " + cuda_version_str(r.driver_version) +
                               ", plugin runtime " + cuda_version_str(r.runtime_version) + "); update the NVIDIA driver");
    if (code == "no-device" || code == "no-driver") return fail(r, code, err.message);
    return fail(r, "cuda-error", std::string("probing devices failed: ") + err.message);
  }
  if (o.device < 0 || o.device >= r.device_count)
    return fail(r, "no-device", "device " + std::to_string(o.device) + " asked for, the driver sees " +
                                    std::to_string(r.device_count));
  if (api.device_props(o.device, &r.props, &err) != 0)
    return fail(r, "cuda-error", std::string("reading device properties failed: ") + err.message);
  r.has_props = true;
  bool known = false;
  if (!cuda_archs_cover(r.archs, r.props.cc_major, r.props.cc_minor, &known) && known)
    return fail(r, "arch-unsupported",
                std::string(r.props.name) + " has compute capability " + std::to_string(r.props.cc_major) + "." +
                    std::to_string(r.props.cc_minor) + ", which this plugin (built for " + r.archs +
                    ") cannot run; rebuild with --CDCMAKE_CUDA_ARCHITECTURES=" + std::to_string(r.props.cc_major) +
                    std::to_string(r.props.cc_minor) + "-real if the CUDA toolkit still supports it");
  if (api.device_check && api.device_check(o.device, &err) != 0) {
    std::string code = err.code;
    return fail(r, code == "arch-unsupported" ? code : "cuda-error", err.message);
  }
  r.available = true;
  g_plugin.usable = true;
  g_plugin.device = o.device;
  set_device_storage_fn(make_device_storage);  // Tensor::alloc on a CUDA queue's plan()
  return r;
}

const dvl_backend_api& need_api() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_plugin.handle || !g_plugin.usable)
    throw Error(DVL_ERR_BACKEND, "the CUDA backend is not available (call getBackendInfo for the reason)");
  return g_plugin.api;
}

[[noreturn]] void throw_backend(const dvl_backend_error& e, const std::string& what) {
  std::string code = e.code;
  if (code.rfind("DVL_", 0) != 0) code = DVL_ERR_BACKEND;
  throw Error(code, what + ": " + e.message);
}

// Device memory: a Storage whose data is a device pointer the plugin allocated and frees (a
// slot-style Storage: the base class neither owns nor frees it).
struct DeviceStorage : Storage {
  const dvl_backend_api* api;
  int dev;
  DeviceStorage(const dvl_backend_api& a, int device, size_t nbytes)
      : Storage(SlotTag{}, nbytes, Device::Cuda), api(&a), dev(device) {
    dvl_backend_error err{};
    void* p = nullptr;
    if (a.alloc(device, nbytes, &p, &err) != 0) throw_backend(err, "cuda alloc of " + std::to_string(nbytes) + " bytes");
    data = p;
  }
  ~DeviceStorage() {
    if (data) api->free(dev, data);
    data = nullptr;
  }
};

int64_t numel_of(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

}  // namespace

CudaProbe cuda_probe(const CudaProbeOptions& given) {
  CudaProbeOptions opts = given;
  if (!opts.plugin_override_set && opts.read_c_env) {
    const char* env = std::getenv("DIFFUSIONVL_CUDA_PLUGIN");
    if (env && *env) {
      opts.plugin_override_set = true;
      opts.plugin_override = env;
    }
  }
  std::lock_guard<std::mutex> lock(g_mu);
  std::string key = cache_key(opts);
  auto it = g_cache.find(key);
  if (it != g_cache.end()) return it->second;
  CudaProbe r;
  try {
    r = probe_uncached(opts);
  } catch (const std::exception& e) {  // e.g. bad_alloc; never escape as a crash
    r = CudaProbe{};
    r.reason = "cuda-error";
    r.detail = e.what();
  }
  g_cache.emplace(key, r);
  return r;
}

const dvl_backend_api* cuda_api() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_plugin.handle && g_plugin.usable ? &g_plugin.api : nullptr;
}

int cuda_probe_device() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_plugin.device;
}

bool cuda_archs_cover(const std::string& archs, int cc_major, int cc_minor, bool* known) {
  *known = false;
  int cc = cc_major * 10 + cc_minor;
  bool any = false;
  size_t i = 0;
  while (i <= archs.size()) {
    size_t j = archs.find_first_of(",;", i);
    if (j == std::string::npos) j = archs.size();
    std::string tok = archs.substr(i, j - i);
    i = j + 1;
    if (tok.empty()) continue;
    size_t k = 0;
    int num = 0;
    while (k < tok.size() && tok[k] >= '0' && tok[k] <= '9') num = num * 10 + (tok[k++] - '0');
    if (k == 0) return false;  // "native", "all", "all-major": unknown here
    char suffix = 0;           // 'a' (arch-specific, exact match only) or 'f' (family)
    if (k < tok.size() && (tok[k] == 'a' || tok[k] == 'f')) suffix = tok[k++];
    std::string kind = tok.substr(k);
    bool real = kind.empty() || kind == "-real";
    bool virt = kind.empty() || kind == "-virtual";
    if (!real && !virt) return false;
    any = true;
    // SASS runs on the same major with an equal or newer minor (exactly equal for 'a');
    // PTX JIT-compiles on any equal or newer device.
    if (real && (suffix == 'a' ? num == cc : num / 10 == cc_major && num % 10 <= cc_minor)) {
      *known = true;
      return true;
    }
    if (virt && suffix != 'a' && num <= cc) {
      *known = true;
      return true;
    }
  }
  *known = any;
  return false;
}

std::shared_ptr<Storage> make_device_storage(size_t bytes) {
  const dvl_backend_api& api = need_api();
  return std::make_shared<DeviceStorage>(api, g_plugin.device, bytes);
}

TensorP cuda_tensor(DType dt, const std::vector<int64_t>& shape) {
  for (int64_t d : shape)
    if (d < 0) throw Error(DVL_ERR_SHAPE, "negative dimension in shape " + shape_str(shape));
  if (dt == DType::Q8) throw Error(DVL_ERR_DTYPE, "q8 tensors live on the CPU only (no CUDA kernel reads them)");
  if (dt == DType::Q8P) throw Error(DVL_ERR_DTYPE, "q8p tensors live on the CPU only (no CUDA kernel reads them)");
  if (dt == DType::BF16P) throw Error(DVL_ERR_DTYPE, "bf16p tensors live on the CPU only (the CUDA kernels read plain bf16)");
  auto t = std::make_shared<Tensor>();
  t->dtype = dt;
  t->shape = shape;
  t->storage = make_device_storage(size_t(numel_of(shape)) * dtype_size(dt));
  return t;
}

TensorP cuda_upload(const Tensor& host) {
  if (!host.storage || host.storage->device != Device::Cpu)
    throw Error(DVL_ERR_ARG, "cuda_upload: " + host.describe() + " is not a host tensor");
  TensorP d = cuda_tensor(host.dtype, host.shape);
  const dvl_backend_api& api = need_api();
  dvl_backend_error err{};
  if (api.copy_h2d(g_plugin.device, d->raw(), host.raw(), host.nbytes(), &err) != 0)
    throw_backend(err, "cuda upload of " + host.describe());
  return d;
}

void cuda_download(const Tensor& dev, Tensor& host) {
  if (!dev.on_cuda())
    throw Error(DVL_ERR_ARG, "cuda_download: " + dev.describe() + " is not a device tensor");
  if (!host.storage || host.storage->device != Device::Cpu || host.dtype != dev.dtype || host.shape != dev.shape)
    throw Error(DVL_ERR_SHAPE, "cuda_download: " + dev.describe() + " into " + host.describe());
  const dvl_backend_api& api = need_api();
  dvl_backend_error err{};
  if (api.copy_d2h(g_plugin.device, host.raw(), dev.raw(), dev.nbytes(), &err) != 0)
    throw_backend(err, "cuda download of " + dev.describe());
}

void cuda_run(OpId op, const std::vector<TensorP>& in, const std::vector<TensorP>& out, const OpAttrs& attrs) {
  const dvl_backend_api& api = need_api();
  std::vector<const Tensor*> pin;
  std::vector<Tensor*> pout;
  for (const TensorP& t : in) pin.push_back(t.get());
  for (const TensorP& t : out) pout.push_back(t.get());
  dvl_backend_error err{};
  if (api.run(g_plugin.device, int(op), pin.data(), pin.size(), pout.data(), pout.size(), &attrs, &err) != 0)
    throw_backend(err, std::string("cuda ") + op_name(op));
}

bool cuda_supports(OpId op, DType dt) {
  const dvl_backend_api* api = cuda_api();
  return api && api->supports && api->supports(int(op), int(dt)) != 0;
}

void cuda_synchronize() {
  const dvl_backend_api& api = need_api();
  dvl_backend_error err{};
  if (api.synchronize(g_plugin.device, &err) != 0) throw_backend(err, "cuda synchronize");
}

}  // namespace dvl
